package notifier_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/notifier"
	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/embeddednats"
)

// smallServer is an embedded server that takes messages of 256 KiB at most.
func smallServer(t *testing.T) jetstream.JetStream {
	t.Helper()
	ns, err := embeddednats.Start(embeddednats.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", MaxPayload: 256 << 10}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, js, err := bus.Connect(bus.ConnectOptions{URL: ns.ClientURL(), Name: t.Name()}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	require.NoError(t, bus.Ensure(context.Background(), js, bus.Topology{}))
	return js
}

// A failed delivery of a large event, whose receiver answers with an HTML
// error page, keeps its schedule and its record: its retry no longer fit in
// a NATS message (the body, and each attempt's response with every "<"
// escaped to six bytes), and it was sent again every second, off schedule
// and never recorded.
func TestLargeDeliveryKeepsItsSchedule(t *testing.T) {
	t.Parallel()
	js := smallServer(t)
	rcv := newReceiver(t, func(_ int, w http.ResponseWriter) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(strings.Repeat("<b>", 1400)))
	})
	b := setupOn(t, js, notifier.Config{InProcessMax: durable, Schedule: []time.Duration{time.Hour}},
		newEndpoint(t, "acme", "ep_big", rcv.URL, "big.event"))
	b.publishEvent(t, "acme", "big.event", "acme:evt_big", []byte(`"`+strings.Repeat("a", 240<<10)+`"`))
	var logs []contract.DeliveryRecord
	require.Eventually(t, func() bool {
		logs = b.logs(t, "acme.>")
		return len(logs) == 1
	}, 10*time.Second, 20*time.Millisecond, "the attempt is recorded")
	require.Equal(t, contract.DeliveryPending, logs[0].Status)
	time.Sleep(3 * time.Second)
	require.Len(t, rcv.all(), 1, "retried in an hour, not at once")
}

// An event whose webhook body leaves no room for its delivery in a NATS
// message is dead-lettered with the reason, instead of put back for ever.
func TestEventTooLargeToDeliverIsDeadLettered(t *testing.T) {
	t.Parallel()
	js := smallServer(t)
	rcv := newReceiver(t, nil)
	b := setupOn(t, js, notifier.Config{}, newEndpoint(t, "acme", "ep_big", rcv.URL, "big.event"))
	// 250 KiB of "<" fits as an event, and is six times that in a body.
	b.publishEvent(t, "acme", "big.event", "acme:evt_big", []byte(`"`+strings.Repeat("<", 250<<10)+`"`))
	dead := b.firstDeadLetter(t)
	require.Contains(t, dead.Header.Get(contract.HeaderDeadReason), "no room")
	require.Empty(t, rcv.all())
}

// A job event of a processor outside hookstream whose result leaves no
// room for its delivery is sent without the result, its data saying so
// (omitted), as hookstream's processors publish such events; it was
// dead-lettered, and the job's callback never came.
func TestLargeJobEventIsSentWithoutItsResult(t *testing.T) {
	t.Parallel()
	js := smallServer(t)
	rcv := newReceiver(t, nil)
	setupOn(t, js, notifier.Config{}, newEndpoint(t, "acme", "ep_jobs", rcv.URL, contract.EventJobSucceeded))
	now := time.Now().UTC()
	job := contract.Job{ID: "job_big", Type: "resize", Status: contract.StatusSucceeded, Attempts: 1, CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)}
	data, err := json.Marshal(job)
	require.NoError(t, err)
	// 250 KiB of "<" fits as an event, and is six times that in a body.
	data = append(data[:len(data)-1], `,"result":"`+strings.Repeat("<", 250<<10)+`"}`...)
	msg := bus.EventMsg("acme", contract.EventJobSucceeded, "evt_big_succeeded", now, data)
	msg.Header.Set(contract.HeaderJobID, job.ID)
	_, err = js.PublishMsg(t.Context(), msg)
	require.NoError(t, err)
	got := rcv.wait(t, 1)[0]
	var sent contract.Job
	require.NoError(t, json.Unmarshal(got.event.Data, &sent))
	require.Equal(t, "job_big", sent.ID)
	require.Nil(t, sent.Result)
	require.Equal(t, []string{"result"}, sent.Omitted)
}

// An event near the NATS server's limit, too large for its dead letter's
// headers as well, is dead-lettered with a short reason, or without its
// data, not put back for ever.
func TestEventAtTheLimitIsDeadLettered(t *testing.T) {
	t.Parallel()
	js := smallServer(t)
	rcv := newReceiver(t, nil)
	b := setupOn(t, js, notifier.Config{}, newEndpoint(t, "acme", "ep_big", rcv.URL, "big.event"))
	b.publishEvent(t, "acme", "big.event", "acme:evt_big", []byte(`"`+strings.Repeat("a", 256<<10-200)+`"`))
	dead := b.firstDeadLetter(t)
	require.Contains(t, dead.Header.Get(contract.HeaderDeadReason), "too large")
	if dead.Data == nil { // the short reason was not enough
		require.Contains(t, dead.Header.Get(contract.HeaderDeadReason), "left out")
	}
	require.Empty(t, rcv.all())
}

// firstDeadLetter waits for the first dead-lettered event and returns it.
func (b *bundle) firstDeadLetter(t *testing.T) *jetstream.RawStreamMsg {
	t.Helper()
	stream, err := b.js.Stream(t.Context(), contract.StreamDeadLetters)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := stream.Info(t.Context())
		return err == nil && info.State.Msgs >= 1
	}, 10*time.Second, 20*time.Millisecond, "the event is dead-lettered")
	dead, err := stream.GetMsg(t.Context(), 1)
	require.NoError(t, err)
	return dead
}
