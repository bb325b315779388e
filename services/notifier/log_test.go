package notifier_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/notifier"
	"github.com/hookstream/hookstream/shared/contract"
)

// Internal services choose their event ids (Nats-Msg-Id). Whatever the id,
// a dead-lettered delivery keeps its attempt log and body, to be replayed.
func TestDeliverLogsEventsWithAnyID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		givenEventID string
	}{
		{name: "colon", givenEventID: "order:42"},
		{name: "URN", givenEventID: "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"},
		{name: "space", givenEventID: "invoice 42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, notifier.Config{Schedule: []time.Duration{}})
			rcv := newReceiver(t, statuses(500))
			b.publishEvent(t, "acme", "job.succeeded", tt.givenEventID, []byte(`{"invoice":"in_42"}`), contract.HeaderCallbackURL, rcv.URL)
			got := rcv.wait(t, 1)[0]
			b.waitIdle(t)
			var recs []contract.DeliveryRecord
			require.Eventually(t, func() bool {
				recs = b.logs(t, "acme.>")
				return len(recs) == 1
			}, 5*time.Second, 10*time.Millisecond, "no delivery record")
			require.Equal(t, got.id(), recs[0].ID)
			require.Equal(t, tt.givenEventID, recs[0].EventID)
			require.Equal(t, contract.DeliveryFailed, recs[0].Status)
			require.JSONEq(t, string(got.body), string(recs[0].Body))
		})
	}
}

// Webhooks do not wait for the attempt logs of earlier ones: while every
// log write is held (as nats-server holds a bucket's writes while it saves
// its index), webhooks go on, beyond the endpoint's and fan-out's
// concurrency; each event is acknowledged only once its log is stored.
// The message waiting for a log is the event's (sent directly) or its
// queued delivery's. Deliveries put back for the endpoint's limits are not
// parked here, however slow the machine: a drain takes only as many as the
// endpoint's concurrency, and those wait for their logs.
func TestWebhooksGoOnWhileAttemptLogsWait(t *testing.T) {
	t.Parallel()
	const events = 20
	gate := make(chan struct{})
	cfg := notifier.Config{Concurrency: 2, EndpointConcurrency: 2, DirectAttempts: 2}
	notifier.HoldAttemptLogs(&cfg, gate)
	notifier.ParkAfter(&cfg, 1000)
	b := setup(t, cfg)
	opened := false
	t.Cleanup(func() {
		if !opened {
			close(gate) // let the notifier stop
		}
	})
	rcv := newReceiver(t, nil)
	for i := range events {
		b.publishJobEvent(t, "acme", fmt.Sprintf("job_%d", i), rcv.URL)
	}
	rcv.wait(t, events)
	require.Empty(t, b.logs(t, "acme.>"), "a log written through the gate")
	// A queued event's ack may still be on its way: wait for the counts to
	// settle, then the delivered events' messages must all be pending.
	var pending map[string]int
	require.Eventually(t, func() bool {
		pending = b.ackPending(t, contract.StreamEvents, contract.StreamDeliveries, contract.StreamParked)
		return pending[""] == events
	}, 10*time.Second, 10*time.Millisecond, "messages acknowledged before their logs were stored")
	time.Sleep(100 * time.Millisecond) // an ack sent by mistake would arrive by now
	pending = b.ackPending(t, contract.StreamEvents, contract.StreamDeliveries, contract.StreamParked)
	require.Equal(t, events, pending[""], "messages acknowledged before their logs were stored: %v", pending)

	close(gate)
	opened = true
	for i := range events {
		b.waitLog(t, "acme", fmt.Sprintf("job_%d", i), contract.DeliverySucceeded)
	}
	b.waitIdle(t)
	require.Len(t, rcv.all(), events, "webhooks sent twice")
}

// A retry scheduled before keys named their target finds its delivery's
// record under the key from before: dropped if that record says it was
// delivered since (found by review: it was sent again), and otherwise
// recorded under its new key, which stands for the old one. An old record
// of an earlier publication of the event id is not the retry's (found by
// review: the retry was dropped); a record under the new key, of a later
// publication, overtakes it.
func TestRetryOfADeliveryRecordedUnderItsOldKey(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		// old is the record as an older notifier left it under the old
		// key, from the one written under the new key after the first
		// attempt; later, when set, writes a later publication's record
		// under the new key once the second round is recorded.
		old       func(contract.DeliveryRecord) contract.DeliveryRecord
		later     bool
		wantSends int
		// wantNew is how many attempts the record under the new key
		// says in the end (0: none there).
		wantNew int
	}{
		{name: "delivered since", old: func(r contract.DeliveryRecord) contract.DeliveryRecord {
			r.Status, r.NextAttemptAt = contract.DeliverySucceeded, nil
			r.Attempts = append(r.Attempts, contract.Attempt{At: time.Now().UTC(), StatusCode: 200})
			return r
		}, wantSends: 1},
		{name: "still pending", old: func(r contract.DeliveryRecord) contract.DeliveryRecord { return r }, wantSends: 3, wantNew: 3},
		{name: "an earlier publication", old: func(r contract.DeliveryRecord) contract.DeliveryRecord {
			r.Status, r.NextAttemptAt, r.CreatedAt = contract.DeliverySucceeded, nil, r.CreatedAt.Add(-24*time.Hour)
			return r
		}, wantSends: 3, wantNew: 3},
		{name: "published again since", old: func(r contract.DeliveryRecord) contract.DeliveryRecord { return r }, later: true, wantSends: 2, wantNew: 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			js := startJetStream(t)
			rcv := newReceiver(t, statuses(500, 500))
			b := setupOn(t, js, notifier.Config{InProcessMax: durable, Schedule: []time.Duration{2 * time.Second, 2 * time.Second}, Jitter: 0.01},
				newEndpoint(t, "acme", "ep_1", rcv.URL, "order.paid"))
			b.publishEvent(t, "acme", "order.paid", "acme:evt_1", []byte(`{"v":1}`))
			rec := b.waitLog(t, "acme", "evt_1", contract.DeliveryPending)
			rcv.wait(t, 1)
			newKey, oldKey := "acme.ep_1.evt_1."+rec.ID, "acme.evt_1."+rec.ID
			put := func(key string, r contract.DeliveryRecord) {
				data, err := json.Marshal(r)
				require.NoError(t, err)
				_, err = b.log.Put(t.Context(), key, data)
				require.NoError(t, err)
			}
			read := func(key string) (contract.DeliveryRecord, error) {
				var r contract.DeliveryRecord
				entry, err := b.log.Get(t.Context(), key)
				if err == nil {
					require.NoError(t, json.Unmarshal(entry.Value(), &r))
				}
				return r, err
			}
			require.NoError(t, b.log.Delete(t.Context(), newKey))
			put(oldKey, tt.old(rec))
			if tt.later {
				require.Eventually(t, func() bool {
					r, err := read(newKey)
					return err == nil && len(r.Attempts) == 2
				}, 10*time.Second, 10*time.Millisecond, "the second round recorded under the new key")
				later := rec
				later.CreatedAt, later.Status, later.NextAttemptAt = rec.CreatedAt.Add(time.Hour), contract.DeliverySucceeded, nil
				put(newKey, later)
			}
			b.waitIdle(t) // every retry taken
			require.Len(t, rcv.all(), tt.wantSends)
			got, err := read(newKey)
			if tt.wantNew == 0 {
				require.ErrorIs(t, err, jetstream.ErrKeyNotFound, "a record under the new key")
				return
			}
			require.NoError(t, err)
			require.Len(t, got.Attempts, tt.wantNew)
		})
	}
}
