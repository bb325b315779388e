package notifier_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/notifier"
	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/endpoints"
	"github.com/hookstream/hookstream/shared/natstest"
	"github.com/hookstream/hookstream/shared/secretbox"
)

// A notifier that dies after a failed direct attempt scheduled its retry,
// before the event was acknowledged: another notifier fans the event out
// again, and its attempt fails too. Its retry is a duplicate of the first
// one's (the same message id, within the de-duplication window) and is not
// stored, so the first one's schedule must go on as this delivery's. It
// was dropped as another event's (its delivery created at another time),
// and the delivery stayed pending for ever, neither sent nor dead-lettered.
func TestDeliveryFannedOutAgainAfterACrashKeepsItsRetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := natstest.Start(t)
	ncA, jsA := srv.Connect(t)
	require.NoError(t, bus.Ensure(ctx, jsA, bus.Topology{}))
	var up atomic.Bool
	rcv := newReceiver(t, func(n int, w http.ResponseWriter) {
		if !up.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	box, err := secretbox.New(make([]byte, secretbox.KeySize))
	require.NoError(t, err)
	store, err := endpoints.Open(ctx, jsA, box)
	require.NoError(t, err)
	require.NoError(t, store.Create(ctx, newEndpoint(t, "acme", "ep_1", rcv.URL, "invoice.*")))
	cfg := notifier.Config{
		Guard: loopback, Box: box, SlowDownWait: time.Nanosecond, ShutdownGrace: time.Second,
		// The second retry is due after the event comes back (fan-out's
		// AckWait, 30 s).
		Schedule: []time.Duration{2 * time.Second, 35 * time.Second}, Jitter: 0.001,
		InProcessMax: time.Nanosecond, BreakerFailures: 1000,
	}
	// Notifier A never stores its attempt logs, so the event is never
	// acknowledged; it is cut off once its retry is scheduled.
	cfgA := cfg
	held := make(chan struct{})
	notifier.HoldAttemptLogs(&cfgA, held)
	// Its log is dropped: it runs on, cut off, until the test's end.
	a, err := notifier.New(ctx, cfgA, jsA, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	runA, stopA := context.WithCancel(ctx)
	ranA := make(chan struct{})
	go func() { defer close(ranA); _ = a.Run(runA) }()
	t.Cleanup(func() {
		stopA()
		close(held) // its held writes fail on the closed connection, and it stops
		select {
		case <-ranA:
		case <-time.After(10 * time.Second):
			t.Error("notifier A did not stop")
		}
	})
	(&bundle{js: jsA}).publishEvent(t, "acme", "invoice.paid", "acme:in_1", []byte(`{}`))
	rcv.wait(t, 1)
	deliveries, err := jsA.Stream(ctx, contract.StreamDeliveries)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := deliveries.Info(ctx, jetstream.WithSubjectFilter(contract.SubjectRetries+".>"))
		return err == nil && info.State.Msgs > 0
	}, 5*time.Second, 10*time.Millisecond, "no retry scheduled")
	ncA.Close()

	_, jsB := srv.Connect(t)
	b := setupOn(t, jsB, cfg)
	// The first retry, then the event fanned out again: both fail.
	require.Eventually(t, func() bool { return len(rcv.all()) >= 3 }, 45*time.Second, 50*time.Millisecond)
	up.Store(true)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		recs := b.logs(t, "acme.>")
		if assert.Len(c, recs, 1) {
			assert.Equal(c, contract.DeliverySucceeded, recs[0].Status)
		}
	}, 60*time.Second, 100*time.Millisecond, "the delivery was never sent again")
	got := rcv.all()
	require.Equal(t, got[0].id(), got[len(got)-1].id(), "one delivery, one webhook-id")
}

// An endpoint that fails every other request is not announced recovered
// at every flip: only a failing period of RecoveryAfter (a minute) or more
// is. Each flip was an endpoint.recovered webhook to whoever subscribed.
func TestFlakyEndpointIsNotAnnouncedRecoveredAtEveryFlip(t *testing.T) {
	t.Parallel()
	flaky := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n%2 == 1 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	ops := newReceiver(t, nil)
	b := setup(t, notifier.Config{Schedule: []time.Duration{}, Concurrency: 1, EndpointConcurrency: 1},
		newEndpoint(t, "acme", "ep_flaky", flaky.URL, "invoice.*"), newEndpoint(t, "acme", "ep_ops", ops.URL, "endpoint.*"))
	const events = 20
	for i := range events {
		b.publishEvent(t, "acme", "invoice.paid", fmt.Sprintf("evt_%d", i), []byte(`{}`))
	}
	flaky.wait(t, events)
	b.waitIdle(t)
	require.Zero(t, len(ops.all()), "no endpoint.* event for a flaky endpoint")
}

// An endpoint's rate_limit bounds its retries made in process too: with
// no token left, the round ends and its schedule goes on in JetStream.
// Such retries were sent without a token, past the limit.
func TestInProcessRetriesKeepTheEndpointsRate(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, func(n int, w http.ResponseWriter) { w.WriteHeader(http.StatusInternalServerError) })
	ep := newEndpoint(t, "acme", "ep_rl", rcv.URL, "invoice.*")
	ep.RateLimit = 1
	ep.RetrySchedule = []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond}
	b := setup(t, notifier.Config{InProcessMax: time.Second, BreakerFailures: 1000}, ep)
	b.publishEvent(t, "acme", "invoice.paid", "evt_1", []byte(`{}`))
	var recs []contract.DeliveryRecord
	require.Eventually(t, func() bool {
		recs = b.logs(t, "acme.*.evt_1.*")
		return len(recs) == 1
	}, 10*time.Second, 10*time.Millisecond)
	// One attempt, or (a first attempt that took a second on a slow
	// machine) attempts a token apart.
	attempts := recs[0].Attempts
	for i := 1; i < len(attempts); i++ {
		require.GreaterOrEqual(t, attempts[i].At.Sub(attempts[i-1].At), 900*time.Millisecond, "retries in process past the endpoint's rate (1/s)")
	}
	require.Equal(t, contract.DeliveryPending, recs[0].Status)
}

// A webhook whose signing secret this notifier cannot read (sealed with
// another secret key: the deployment's was replaced) is dead-lettered with
// the reason, to be recovered once the secret is rotated. It was put back
// every second until the stream aged it out.
func TestWebhookWithAnUnreadableSecretIsDeadLettered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := startJetStream(t)
	rcv := newReceiver(t, nil)
	other, err := secretbox.New(bytes.Repeat([]byte{7}, secretbox.KeySize))
	require.NoError(t, err)
	old, err := endpoints.Open(ctx, js, other)
	require.NoError(t, err)
	require.NoError(t, old.Create(ctx, newEndpoint(t, "acme", "ep_1", rcv.URL, "invoice.*")))
	b := setupOn(t, js, notifier.Config{})
	b.publishEvent(t, "acme", "invoice.paid", "evt_1", []byte(`{}`))
	rec := b.waitLog(t, "acme", "evt_1", contract.DeliveryFailed)
	require.Contains(t, rec.Attempts[len(rec.Attempts)-1].Error, "cannot be read")
	require.Empty(t, rcv.all())
}
