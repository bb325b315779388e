package notifier_test

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/notifier"
	"github.com/hookstream/hookstream/shared/contract"
)

// Endpoints that answer slowly do not take the workers that healthy
// endpoints' webhooks need: once an endpoint's requests have had no answer
// for a while, its deliveries are parked and sent by its own drain. Three
// such endpoints, each at its limit of 4 requests, took every worker and
// direct slot here (8 and 4), and a healthy endpoint's webhook waited until
// they answered.
func TestSlowEndpointsLeaveWorkersToHealthyOnes(t *testing.T) {
	t.Parallel()
	slow, slowGot, _ := hangingReceiver(t)
	healthy := newReceiver(t, nil)
	cfg := notifier.Config{Concurrency: 8, EndpointConcurrency: 4, DirectAttempts: 4, AttemptTimeout: time.Minute}
	notifier.SlowAfter(&cfg, 200*time.Millisecond)
	notifier.ShortParking(&cfg)
	b := setup(t, cfg,
		newEndpoint(t, "acme", "ep_s1", slow.URL+"/1", "slow.one"),
		newEndpoint(t, "acme", "ep_s2", slow.URL+"/2", "slow.two"),
		newEndpoint(t, "acme", "ep_s3", slow.URL+"/3", "slow.three"),
		newEndpoint(t, "acme", "ep_ok", healthy.URL, "ok.one"))
	types := []string{"slow.one", "slow.two", "slow.three"}
	for _, typ := range types { // one request each, then no answer
		b.publishEvent(t, "acme", typ, "acme:evt_"+typ+"_first", []byte(`{}`))
	}
	require.Eventually(t, func() bool { return slowGot.Load() == 3 }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // longer than SlowAfter without an answer
	for i := range 10 {
		for _, typ := range types {
			b.publishEvent(t, "acme", typ, fmt.Sprintf("acme:evt_%s_%d", typ, i), []byte(`{}`))
		}
	}
	b.publishEvent(t, "acme", "ok.one", "acme:evt_ok", []byte(`{}`))
	healthy.wait(t, 1) // while the slow ones still have no answer
	require.LessOrEqual(t, slowGot.Load(), int32(12), "at most each slow endpoint's limit in flight")
}

// A round of quick in-process retries ends once its endpoint is slow: the
// retries go on from the endpoint's own drain, not from a shared worker.
func TestInProcessRetriesLeaveASlowEndpointToItsDrain(t *testing.T) {
	t.Parallel()
	slowFail := func(n int, w http.ResponseWriter) {
		if n <= 3 {
			time.Sleep(300 * time.Millisecond)
			w.WriteHeader(http.StatusInternalServerError)
		}
	}
	r := newReceiver(t, slowFail)
	cfg := notifier.Config{Schedule: []time.Duration{10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond}}
	notifier.SlowAfter(&cfg, 200*time.Millisecond)
	notifier.ShortParking(&cfg)
	b := setup(t, cfg, newEndpoint(t, "acme", "ep_1", r.URL, "a.b"))
	b.publishEvent(t, "acme", "a.b", "acme:evt_1", []byte(`{}`))
	b.waitLog(t, "acme", "evt_1", contract.DeliverySucceeded)
	parked, err := b.js.Stream(t.Context(), contract.StreamParked)
	require.NoError(t, err)
	info, err := parked.Info(t.Context())
	require.NoError(t, err)
	require.NotZero(t, info.State.LastSeq, "a retry after the slow attempt was parked")
}

// The first requests to endpoints that turn slow do not hold the workers
// either: twelve of them at once, none answered, are more than the workers
// and direct slots (4 and 2), and they step aside once they have been out
// for as long as makes an endpoint slow. A healthy endpoint's webhook then
// arrives while all twelve still wait for their answer.
func TestFirstRequestsToSlowEndpointsStepAside(t *testing.T) {
	t.Parallel()
	slow, slowGot, slowAnswered := hangingReceiver(t)
	healthy := newReceiver(t, nil)
	cfg := notifier.Config{Concurrency: 4, EndpointConcurrency: 4, DirectAttempts: 2, AttemptTimeout: 2 * time.Minute}
	notifier.SlowAfter(&cfg, 200*time.Millisecond)
	notifier.ShortParking(&cfg)
	b := setup(t, cfg,
		newEndpoint(t, "acme", "ep_s1", slow.URL+"/1", "slow.one"),
		newEndpoint(t, "acme", "ep_s2", slow.URL+"/2", "slow.two"),
		newEndpoint(t, "acme", "ep_s3", slow.URL+"/3", "slow.three"),
		newEndpoint(t, "acme", "ep_ok", healthy.URL, "ok.one"))
	for i := range 4 { // each endpoint's limit, at once
		for _, typ := range []string{"slow.one", "slow.two", "slow.three"} {
			b.publishEvent(t, "acme", typ, fmt.Sprintf("acme:evt_%s_%d", typ, i), []byte(`{}`))
		}
	}
	require.Eventually(t, func() bool { return slowGot.Load() == 12 }, 10*time.Second, 10*time.Millisecond, "the first requests held every worker and direct slot")
	b.publishEvent(t, "acme", "ok.one", "acme:evt_ok", []byte(`{}`))
	healthy.wait(t, 1)
	require.Zero(t, slowAnswered.Load(), "the healthy webhook arrived only once the slow ones were answered")
}

// Fan-out's first attempts to slow endpoints give their direct slots back
// when they step aside: the next event's first attempt is made directly
// again, not queued (found by review).
func TestSlowFirstAttemptsGiveTheirDirectSlotsBack(t *testing.T) {
	t.Parallel()
	slow, slowGot, _ := hangingReceiver(t)
	healthy := newReceiver(t, nil)
	cfg := notifier.Config{Concurrency: 4, EndpointConcurrency: 4, DirectAttempts: 2, AttemptTimeout: 2 * time.Minute}
	notifier.SlowAfter(&cfg, 200*time.Millisecond)
	notifier.ShortParking(&cfg)
	b := setup(t, cfg,
		newEndpoint(t, "acme", "ep_s1", slow.URL+"/1", "slow.one"),
		newEndpoint(t, "acme", "ep_s2", slow.URL+"/2", "slow.two"),
		newEndpoint(t, "acme", "ep_ok", healthy.URL, "ok.one"))
	b.publishEvent(t, "acme", "slow.one", "acme:evt_s1", []byte(`{}`))
	b.publishEvent(t, "acme", "slow.two", "acme:evt_s2", []byte(`{}`))
	require.Eventually(t, func() bool { return slowGot.Load() == 2 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return b.n.DirectInUse() == 0 }, 10*time.Second, 10*time.Millisecond, "the slow first attempts kept their direct slots")
	b.publishEvent(t, "acme", "ok.one", "acme:evt_ok", []byte(`{}`))
	healthy.wait(t, 1)
	deliveries, err := b.js.Stream(t.Context(), contract.StreamDeliveries)
	require.NoError(t, err)
	info, err := deliveries.Info(t.Context())
	require.NoError(t, err)
	require.Zero(t, info.State.LastSeq, "a delivery was queued: the direct slots were still held")
}

// hangingReceiver answers each request only once the test ends (or after
// a minute), counting the requests it got and those it answered.
func hangingReceiver(t *testing.T) (rcv *receiver, got, answered *atomic.Int32) {
	t.Helper()
	release := make(chan struct{})
	got, answered = new(atomic.Int32), new(atomic.Int32)
	rcv = newReceiver(t, func(_ int, w http.ResponseWriter) {
		got.Add(1)
		select {
		case <-release:
		case <-time.After(time.Minute):
		}
		answered.Add(1)
		w.WriteHeader(http.StatusOK)
	})
	t.Cleanup(func() { close(release) })
	return rcv, got, answered
}
