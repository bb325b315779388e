package integration

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/notifier"
	"github.com/hookstream/hookstream/shared/contract"
)

// One dead endpoint with 2,000 retries pending must not hold back a healthy
// one: pending retries are message schedules in JetStream, not messages
// holding consumer slots (MaxAckPending) or goroutines.
func TestDeadEndpointDoesNotBlockHealthyOne(t *testing.T) {
	t.Parallel()
	h := start(t, withNATSListen(), withSchedule(time.Nanosecond, time.Hour),
		withNotifier(func(c *notifier.Config) { c.BreakerFailures = 1 << 30 })) // retries, not the breaker, here
	dead := newReceiver(t)
	dead.setStatuses(repeat(http.StatusInternalServerError, 2000)...)
	healthy := newReceiver(t)
	h.createEndpoint(keyAcme, dead.URL, "bulk.*")
	h.createEndpoint(keyAcme, healthy.URL, "live.*")
	js := h.natsClient()
	ctx := context.Background()
	for i := range 2000 {
		_, err := js.Publish(ctx, "hookstream.events.acme.bulk.item", fmt.Appendf(nil, `{"n":%d}`, i))
		require.NoError(t, err)
	}
	dead.wait(t, 2000, 120*time.Second)

	stream, err := js.Stream(ctx, contract.StreamDeliveries)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := stream.Info(ctx)
		return err == nil && info.State.Msgs >= 2000
	}, 30*time.Second, 100*time.Millisecond, "2,000 retries are scheduled in the stream")

	for i := range 200 {
		_, err := js.Publish(ctx, "hookstream.events.acme.live.item", fmt.Appendf(nil, `{"n":%d}`, i))
		require.NoError(t, err)
	}
	healthy.wait(t, 200, 60*time.Second)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, info.State.Msgs, uint64(2000), "the dead endpoint's retries were still pending meanwhile")
	require.Len(t, dead.all(), 2000, "no retry is due yet")
}

// With the circuit breaker (the default), a dead endpoint gets a handful of
// attempts, then nothing but probes, while its deliveries wait in JetStream
// without spending attempts; a healthy endpoint keeps flowing.
func TestCircuitBreakerSparesDeadEndpoint(t *testing.T) {
	t.Parallel()
	h := start(t, withNATSListen(), withSchedule(time.Nanosecond, time.Hour))
	dead := newReceiver(t)
	dead.setStatuses(repeat(http.StatusInternalServerError, 1000)...)
	healthy := newReceiver(t)
	h.createEndpoint(keyAcme, dead.URL, "bulk.*")
	h.createEndpoint(keyAcme, healthy.URL, "live.*")
	js := h.natsClient()
	ctx := context.Background()
	for i := range 300 {
		_, err := js.Publish(ctx, "hookstream.events.acme.bulk.item", fmt.Appendf(nil, `{"n":%d}`, i))
		require.NoError(t, err)
	}
	dead.wait(t, 10, 30*time.Second)
	for i := range 100 {
		_, err := js.Publish(ctx, "hookstream.events.acme.live.item", fmt.Appendf(nil, `{"n":%d}`, i))
		require.NoError(t, err)
	}
	healthy.wait(t, 100, 60*time.Second)
	// At most the threshold plus the attempts already in flight when it opened.
	require.Less(t, len(dead.all()), 10+notifier.DefaultEndpointConcurrency+1)
}

// Deliveries parked while an endpoint's circuit is open survive a restart
// of the app and are all delivered once it answers again.
func TestParkedDeliveriesSurviveRestart(t *testing.T) {
	t.Parallel()
	// Which deliveries take the five failures depends on timing (a retry
	// due may be the probe); enough retries that none is dead-lettered.
	h := start(t, withNATSListen(), withSchedule(time.Nanosecond, 2*time.Second, 2*time.Second, 2*time.Second, 2*time.Second, 2*time.Second),
		withNotifier(func(c *notifier.Config) { c.BreakerFailures, c.BreakerCooldown = 1, time.Second }))
	rcv := newReceiver(t)
	// The endpoint fails until deliveries are parked, and at least 5 times:
	// with only 5 failures at once, its circuit could close again before
	// any delivery met it open, on a loaded machine.
	rcv.setStatuses(repeat(http.StatusServiceUnavailable, 1000)...)
	h.createEndpoint(keyAcme, rcv.URL, "bulk.*")
	js := h.natsClient()
	ctx := context.Background()
	const events = 50
	for i := range events {
		_, err := js.Publish(ctx, "hookstream.events.acme.bulk.item", fmt.Appendf(nil, `{"n":%d}`, i))
		require.NoError(t, err)
	}
	parkedMsgs := func() uint64 {
		stream, err := h.natsClient().Stream(ctx, contract.StreamParked)
		require.NoError(t, err)
		info, err := stream.Info(ctx)
		require.NoError(t, err)
		return info.State.Msgs
	}
	require.Eventually(t, func() bool { return parkedMsgs() > 0 }, 30*time.Second, 10*time.Millisecond, "nothing parked")
	rcv.failNoMoreThan(5) // every request so far failed
	// Deliveries in flight at the restart come back after their ack wait,
	// 30 s, which the wait below allows for.
	h.restart()
	// At least 5 requests failed, each a delivery that is retried: every
	// webhook-id seen, and 5 requests more than events, means every event
	// was delivered.
	require.Eventually(t, func() bool {
		got := rcv.all()
		ids := map[string]bool{}
		for _, r := range got {
			ids[r.id()] = true
		}
		return len(ids) == events && len(got) >= events+5
	}, 60*time.Second, 50*time.Millisecond, "every event delivered once the endpoint answered")
	// Retries parked after their delivery's last failure drain too.
	require.Eventually(t, func() bool { return parkedMsgs() == 0 }, 60*time.Second, 50*time.Millisecond, "parked deliveries left")
}

func repeat(status, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = status
	}
	return out
}
