package notifier_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/notifier"
	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/endpoints"
	"github.com/hookstream/hookstream/shared/secretbox"
	"github.com/hookstream/hookstream/shared/webhook"
)

// An event goes to every enabled endpoint of its tenant subscribed to its
// type, each webhook signed with that endpoint's own secret.
func TestFanoutToSubscribedEndpoints(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		givenTenant string
		givenTypes  []string
		givenOff    bool
		wantGet     bool
	}{
		{name: "every event", givenTenant: "acme", wantGet: true},
		{name: "exact type", givenTenant: "acme", givenTypes: []string{"invoice.paid"}, wantGet: true},
		{name: "one-token wildcard", givenTenant: "acme", givenTypes: []string{"job.failed", "invoice.*"}, wantGet: true},
		{name: "tail wildcard", givenTenant: "acme", givenTypes: []string{"invoice.>"}, wantGet: true},
		{name: "other type", givenTenant: "acme", givenTypes: []string{"job.>", "invoice.paid.late"}},
		{name: "disabled", givenTenant: "acme", givenOff: true},
		{name: "other tenant", givenTenant: "other"},
	}
	var eps []endpoints.Endpoint
	rcvs := make([]*receiver, len(tests))
	for i, tt := range tests {
		rcvs[i] = newReceiver(t, nil)
		ep := newEndpoint(t, tt.givenTenant, "ep_"+string(rune('a'+i)), rcvs[i].URL, tt.givenTypes...)
		ep.Enabled = !tt.givenOff
		eps = append(eps, ep)
	}
	b := setup(t, notifier.Config{}, eps...)
	b.publishEvent(t, "acme", "invoice.paid", "evt_in_1", []byte(`{"invoice":"in_1"}`))
	for i, tt := range tests {
		if tt.wantGet {
			rcvs[i].wait(t, 1)
		}
	}
	b.waitIdle(t)

	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rcvs[i].all()
			if !tt.wantGet {
				require.Empty(t, got)
				return
			}
			require.Len(t, got, 1)
			ep := eps[i]
			require.Equal(t, contract.DeliveryID("evt_in_1", ep.ID), got[0].id())
			require.NoError(t, webhook.Verify(ep.Keyring.Current().Secret, got[0].header, got[0].body, time.Now(), webhook.DefaultTolerance))
			require.Equal(t, "invoice.paid", got[0].event.Type)
			require.JSONEq(t, `{"invoice":"in_1"}`, string(got[0].event.Data))
		})
	}
	recs := b.logs(t, "acme.*.evt_in_1.*")
	require.Len(t, recs, 4, "one logged delivery per subscribed endpoint")
	for _, rec := range recs {
		require.NotEmpty(t, rec.EndpointID)
		require.Equal(t, contract.DeliverySucceeded, rec.Status)
	}
}

// A job's callback URL and the tenant's endpoints both get the job event,
// as distinct deliveries.
func TestFanoutJobEventToCallbackAndEndpoint(t *testing.T) {
	t.Parallel()
	callback, endpoint := newReceiver(t, nil), newReceiver(t, nil)
	b := setup(t, notifier.Config{}, newEndpoint(t, "acme", "ep_jobs", endpoint.URL, "job.*"))
	b.publishJobEvent(t, "acme", "job_x", callback.URL)
	cb, ep := callback.wait(t, 1)[0], endpoint.wait(t, 1)[0]
	require.NotEqual(t, cb.id(), ep.id())
	require.Equal(t, string(cb.body), string(ep.body), "the same event")
	b.waitIdle(t)
	require.Len(t, b.logs(t, "acme.*.job_x.*"), 2)
}

// An endpoint's custom headers are sent, but cannot replace the headers
// that make the webhook, nor describe its transport (an endpoint stored
// before such headers were refused: a Content-Encoding over a plain body
// left the webhook unreadable).
func TestEndpointHeaders(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, nil)
	ep := newEndpoint(t, "acme", "ep_1", rcv.URL)
	ep.Headers = map[string]string{
		"X-Team":            "billing",
		"Content-Type":      "text/plain",
		"User-Agent":        "forged",
		"Webhook-Id":        "msg_forged",
		"Webhook-Signature": "v1,forged",
		"Content-Encoding":  "gzip",
	}
	b := setup(t, notifier.Config{}, ep)
	b.publishEvent(t, "acme", "invoice.paid", "evt_1", []byte(`{}`))
	got := rcv.wait(t, 1)[0]
	require.Equal(t, "billing", got.header.Get("X-Team"))
	require.Equal(t, "application/json", got.header.Get("Content-Type"))
	require.Equal(t, "hookstream/"+notifier.Version, got.header.Get("User-Agent"))
	require.Empty(t, got.header.Get("Content-Encoding"))
	require.Equal(t, contract.DeliveryID("evt_1", "ep_1"), got.id())
	require.NoError(t, webhook.Verify(ep.Keyring.Current().Secret, got.header, got.body, time.Now(), webhook.DefaultTolerance))
}

// A delivery whose endpoint was deleted before its retry is dead-lettered
// without another request.
func TestEndpointDeletedBeforeRetry(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, statuses(500))
	b := setup(t, notifier.Config{InProcessMax: durable, Schedule: []time.Duration{2 * time.Second}},
		newEndpoint(t, "acme", "ep_1", rcv.URL))
	updates := b.watchLog(t, "acme", "evt_1")
	b.publishEvent(t, "acme", "invoice.paid", "evt_1", []byte(`{}`))
	nextLog(t, updates, contract.DeliveryPending)
	require.NoError(t, b.endpoints.Delete(t.Context(), "acme", "ep_1"))

	rec := nextLog(t, updates, contract.DeliveryFailed)
	require.Len(t, rec.Attempts, 2)
	require.Equal(t, http.StatusInternalServerError, rec.Attempts[0].StatusCode)
	require.Contains(t, rec.Attempts[1].Error, "deleted")
	b.waitIdle(t)
	require.Len(t, rcv.all(), 1)
}

// 410 Gone from an endpoint disables it (DESIGN.md, delivery rules): the
// delivery is dead-lettered after one attempt and later events are not
// sent to it.
func TestEndpointGoneIsDisabled(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, statuses(http.StatusGone))
	b := setup(t, notifier.Config{}, newEndpoint(t, "acme", "ep_1", rcv.URL))
	b.publishEvent(t, "acme", "invoice.paid", "evt_1", []byte(`{}`))
	rec := b.waitLog(t, "acme", "evt_1", contract.DeliveryFailed)
	require.Equal(t, []int{http.StatusGone}, attemptCodes(rec))

	require.Eventually(t, func() bool {
		ep, _, err := b.endpoints.Get(t.Context(), "acme", "ep_1")
		require.NoError(t, err)
		return !ep.Enabled && ep.DisabledReason != ""
	}, 5*time.Second, 10*time.Millisecond, "the endpoint is disabled")
	b.publishEvent(t, "acme", "invoice.paid", "evt_2", []byte(`{}`))
	b.waitIdle(t)
	require.Len(t, rcv.all(), 1)
}

// Several deliveries in flight that each get a 410 disable the endpoint
// once: one endpoint.disabled event, not one per 410.
func TestEndpointGoneManyTimesAtOnceIsAnnouncedOnce(t *testing.T) {
	t.Parallel()
	const n = 4
	var mu sync.Mutex
	arrived := sync.NewCond(&mu)
	waiting := 0
	rcv := newReceiver(t, func(i int, w http.ResponseWriter) {
		mu.Lock()
		waiting++
		arrived.Broadcast()
		for waiting < n { // all in flight before any answer
			arrived.Wait()
		}
		mu.Unlock()
		time.Sleep(time.Duration(i*20) * time.Millisecond) // answers a few ms apart
		w.WriteHeader(http.StatusGone)
	})
	ops := newReceiver(t, nil)
	b := setup(t, notifier.Config{}, newEndpoint(t, "acme", "ep_1", rcv.URL, "invoice.*"), newEndpoint(t, "acme", "ep_ops", ops.URL, "endpoint.*"))
	for i := range n {
		b.publishEvent(t, "acme", "invoice.paid", "evt_"+strconv.Itoa(i), []byte(`{}`))
	}
	rcv.wait(t, n)
	ops.wait(t, 1)
	b.waitIdle(t)
	require.Len(t, ops.all(), 1, "endpoint.disabled webhooks for one endpoint going away")
}

// A delivery that exhausts its schedule is announced to the endpoints
// subscribed to delivery.*, with the reason of its last attempt: for an
// answer without an error of its own, the status.
func TestExhaustedDeliveryIsAnnounced(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, statuses(500, 500, 500))
	ops := newReceiver(t, nil)
	b := setup(t, notifier.Config{}, newEndpoint(t, "acme", "ep_1", rcv.URL, "invoice.*"), newEndpoint(t, "acme", "ep_ops", ops.URL, "delivery.*"))
	b.publishEvent(t, "acme", "invoice.paid", "evt_1", []byte(`{}`))
	b.waitLog(t, "acme", "evt_1", contract.DeliveryFailed)
	ops.wait(t, 1)
	got := ops.all()[0]
	require.Equal(t, notifier.EventDeliveryExhausted, got.event.Type)
	var data struct {
		EndpointID string `json:"endpoint_id"`
		Attempts   int    `json:"attempts"`
		LastError  string `json:"last_error"`
	}
	require.NoError(t, json.Unmarshal(got.event.Data, &data))
	require.Equal(t, "ep_1", data.EndpointID)
	require.Equal(t, 3, data.Attempts)
	require.Equal(t, "receiver answered 500", data.LastError)
	var fields map[string]any
	require.NoError(t, json.Unmarshal(got.event.Data, &fields))
	require.NotContains(t, fields, "job_id", "an event of no job: left out, not empty")
}

// A 410 on fan-out's direct attempt whose dead letter cannot be stored at
// first is recorded once the log bucket takes writes again: the delivery is
// queued with its attempts, rather than the event fanned out again (which
// would find the endpoint disabled, no target, and leave no record).
func TestEndpointGoneRecordedAfterItsLogFailed(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, statuses(http.StatusGone))
	js := startJetStream(t)
	b := setupOn(t, js, notifier.Config{}, newEndpoint(t, "acme", "ep_1", rcv.URL))
	ctx := t.Context()
	require.NoError(t, js.DeleteKeyValue(ctx, contract.BucketDeliveries))
	b.publishEvent(t, "acme", "invoice.paid", "evt_1", []byte(`{}`))
	require.Eventually(t, func() bool { return len(rcv.all()) == 1 }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(8 * time.Second) // the dead letter's three writes fail, 1 s and 2 s apart
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))

	rec := b.waitLog(t, "acme", "evt_1", contract.DeliveryFailed)
	require.Len(t, rec.Attempts, 1, "recorded as it was given up on")
	require.Equal(t, http.StatusGone, rec.Attempts[0].StatusCode)
	require.Len(t, rcv.all(), 1, "sent once")
}

// A queued delivery given up on whose dead letter cannot be stored for a
// while is not sent again meanwhile: it is queued again for its record
// alone, which is stored once the log bucket takes writes.
func TestDeadLetterNotSentAgainWhileItsLogFails(t *testing.T) {
	t.Parallel()
	failing := newReceiver(t, func(_ int, w http.ResponseWriter) { w.WriteHeader(http.StatusInternalServerError) })
	js := startJetStream(t)
	b := setupOn(t, js, notifier.Config{Schedule: []time.Duration{}}, newEndpoint(t, "acme", "ep_1", failing.URL, "queued"))
	ctx := t.Context()
	require.NoError(t, js.DeleteKeyValue(ctx, contract.BucketDeliveries))
	b.queueDelivery(t, "acme", "ep_1", "evt_1")
	require.Eventually(t, func() bool { return len(failing.all()) == 1 }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(12 * time.Second) // the dead letter's three writes fail, twice
	require.Len(t, failing.all(), 1, "no new round of attempts while the log fails")
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))

	rec := b.waitLog(t, "acme", "evt_1", contract.DeliveryFailed)
	require.Len(t, rec.Attempts, 1)
	require.Equal(t, http.StatusInternalServerError, rec.Attempts[0].StatusCode)
	b.waitIdle(t)
	require.Len(t, failing.all(), 1, "sent once")
}

// A delivery queued for its dead letter alone does not overwrite a record
// that a later round of the same delivery wrote meanwhile (a replay, or the
// original message delivered again after a crash).
func TestDeadLetterDoesNotHideALaterRound(t *testing.T) {
	t.Parallel()
	js := startJetStream(t)
	b := setupOn(t, js, notifier.Config{})
	ctx := t.Context()
	d := contract.Delivery{
		ID: "msg_later", Tenant: "acme", EventID: "evt_1", EventType: "queued", EndpointID: "ep_1",
		Body: []byte(`{}`), CreatedAt: time.Now().UTC(),
		Attempts: []contract.Attempt{{At: time.Now().UTC(), StatusCode: http.StatusInternalServerError}},
	}
	later := contract.DeliveryRecord{
		ID: d.ID, EventID: d.EventID, EventType: d.EventType, EndpointID: d.EndpointID, Status: contract.DeliverySucceeded,
		Attempts: append(append([]contract.Attempt(nil), d.Attempts...), contract.Attempt{At: time.Now().UTC(), StatusCode: http.StatusOK}),
		Body:     d.Body, CreatedAt: d.CreatedAt, UpdatedAt: time.Now().UTC(),
	}
	data, err := json.Marshal(later)
	require.NoError(t, err)
	_, err = b.log.Put(ctx, d.LogKey(), data)
	require.NoError(t, err)

	msg := nats.NewMsg(contract.DeliverySubject("acme", "ep_1"))
	msg.Data, err = json.Marshal(d)
	require.NoError(t, err)
	msg.Header.Set(contract.HeaderDeadLetter, "1")
	_, err = js.PublishMsg(ctx, msg)
	require.NoError(t, err)
	b.waitIdle(t)

	rec := b.waitLog(t, "acme", "evt_1", contract.DeliverySucceeded)
	require.Len(t, rec.Attempts, 2, "the later round's record stands")
}

// A notifier whose endpoint bucket is gone stops with the error rather
// than fan out on a view that no longer changes.
func TestRunStopsWhenTheEndpointBucketIsGone(t *testing.T) {
	t.Parallel()
	js := startJetStream(t)
	ctx := context.Background()
	key := make([]byte, secretbox.KeySize)
	_, _ = rand.Read(key)
	box, err := secretbox.New(key)
	require.NoError(t, err)
	n, err := notifier.New(ctx, notifier.Config{Box: box, Guard: loopback, ShutdownGrace: time.Second}, js, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.Run(runCtx) }()
	time.Sleep(500 * time.Millisecond) // running, its index ready
	require.NoError(t, js.DeleteKeyValue(ctx, contract.BucketEndpoints))
	select {
	case err := <-done:
		require.ErrorContains(t, err, "endpoint index")
	case <-time.After(60 * time.Second):
		t.Fatal("the notifier kept running without its endpoint bucket")
	}
}
