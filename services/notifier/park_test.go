package notifier_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/notifier"
	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/endpoints"
)

// A dead endpoint's deliveries are parked, not held in the delivery
// consumer, so that a backlog for it larger than the consumer's
// MaxAckPending (10 here, against 40 held) cannot stall everyone else's
// queued deliveries; once the endpoint answers again its parked deliveries
// are delivered.
func TestDeadEndpointDeliveriesAreParked(t *testing.T) {
	t.Parallel()
	dead, down := downReceiver(t, http.StatusInternalServerError)
	healthy := newReceiver(t, nil)
	// A probe every 2 s while it is down: on a slow machine too, far fewer
	// than the deliveries parked.
	b := setup(t, notifier.Config{
		BreakerFailures: 1, BreakerCooldown: 2 * time.Second, DirectAttempts: -1, MaxAckPending: 10,
		Schedule: []time.Duration{time.Hour}, InProcessMax: time.Nanosecond,
	}, newEndpoint(t, "acme", "ep_dead", dead.URL, "dead.*"), newEndpoint(t, "acme", "ep_ok", healthy.URL, "ok.*"))

	// The first delivery fails and opens the circuit.
	b.publishEvent(t, "acme", "dead.first", "evt_first", []byte(`{}`))
	b.waitLog(t, "acme", "evt_first", contract.DeliveryPending)

	// Later ones are parked: by fan-out, which sees the open circuit, and
	// by the delivery consumer, for deliveries queued before it opened.
	const each = 20
	for i := range each {
		b.publishEvent(t, "acme", "dead.later", fmt.Sprintf("evt_dead_%d", i), []byte(`{}`))
		b.queueDelivery(t, "acme", "ep_dead", fmt.Sprintf("evt_queued_%d", i))
	}
	for i := range each {
		b.queueDelivery(t, "acme", "ep_ok", fmt.Sprintf("evt_ok_%d", i))
	}
	healthy.wait(t, each)
	require.Eventually(t, func() bool {
		info := b.consumerInfo(t, contract.StreamDeliveries, notifier.DeliverConsumer)
		return info.NumPending == 0 && info.NumAckPending == 0
	}, 10*time.Second, 10*time.Millisecond, "deliveries of the dead endpoint still held in the delivery consumer")
	require.Positive(t, b.streamMsgs(t, contract.StreamParked))

	// Back up: the drain's next probe succeeds and the rest follow. A probe
	// made while it was down counts as an attempt: that delivery waits for
	// its scheduled retry, like any failed one.
	down.Store(false)
	require.Eventually(t, func() bool { return b.streamMsgs(t, contract.StreamParked) == 0 }, 10*time.Second, 10*time.Millisecond)
	succeeded := 0
	recs := b.logs(t, "acme.>")
	require.Len(t, recs, 1+3*each, "a record for every delivery")
	for _, rec := range recs {
		switch rec.Status {
		case contract.DeliverySucceeded:
			succeeded++
		case contract.DeliveryPending:
			require.NotNil(t, rec.NextAttemptAt, rec.ID)
		default:
			t.Fatalf("delivery %s is %s", rec.ID, rec.Status)
		}
	}
	require.Greater(t, succeeded, 2*each, "the dead endpoint's parked deliveries were not delivered when it came back")
	require.Len(t, dead.all(), 1+2*each, "each of the dead endpoint's deliveries sent once")
}

// A slow endpoint's long queue is parked too once its deliveries keep coming
// back over its limit, instead of cycling through the delivery consumer; the
// drain then sends them at the endpoint's rate.
func TestEndpointAtItsLimitIsParked(t *testing.T) {
	t.Parallel()
	slow := newReceiver(t, nil)
	limited := newEndpoint(t, "acme", "ep_slow", slow.URL, "slow.*")
	limited.RateLimit = 25
	b := setup(t, notifier.Config{DirectAttempts: -1}, limited)
	const queued = 100
	for i := range queued {
		b.queueDelivery(t, "acme", "ep_slow", fmt.Sprintf("evt_%d", i))
	}
	require.Eventually(t, func() bool {
		info := b.consumerInfo(t, contract.StreamDeliveries, notifier.DeliverConsumer)
		return info.NumPending == 0 && info.NumAckPending == 0
	}, 10*time.Second, 10*time.Millisecond, "the slow endpoint's queue still cycles through the delivery consumer")
	require.Less(t, len(slow.all()), queued, "delivered before it was parked: the test shows nothing")
	got := slow.wait(t, queued)
	b.waitIdle(t)
	elapsed := got[len(got)-1].at.Sub(got[0].at)
	// At most a burst of a second's worth, then the rest at the rate: 3 s.
	// A second's slack for the first arrival's latency (a new connection)
	// on a slow machine; unlimited, the 100 take well under one.
	require.GreaterOrEqual(t, elapsed, time.Duration(queued-2*limited.RateLimit)*time.Second/time.Duration(limited.RateLimit), "faster than the endpoint's rate limit")
}

// A job callback host is parked the same way: its circuit is kept per tenant
// and host, which only the delivery itself tells.
func TestDeadCallbackHostIsParked(t *testing.T) {
	t.Parallel()
	rcv, down := downReceiver(t, http.StatusServiceUnavailable)
	b := setup(t, notifier.Config{
		BreakerFailures: 1, BreakerCooldown: 2 * time.Second, // few probes while it is down
		Schedule: []time.Duration{time.Hour}, InProcessMax: time.Nanosecond,
	})
	b.publishJobEvent(t, "acme", "job_first", rcv.URL)
	b.waitLog(t, "acme", "job_first", contract.DeliveryPending)
	for i := range 10 {
		b.publishJobEvent(t, "acme", fmt.Sprintf("job_%d", i), rcv.URL+"/path")
	}
	require.Eventually(t, func() bool { return b.streamMsgs(t, contract.StreamParked) > 0 }, 10*time.Second, 10*time.Millisecond)
	down.Store(false)
	require.Eventually(t, func() bool { return b.streamMsgs(t, contract.StreamParked) == 0 }, 10*time.Second, 10*time.Millisecond)
	// A fan-out late enough to find the circuit closed again delivers
	// directly, its log written behind the webhook.
	var recs []contract.DeliveryRecord
	require.Eventually(t, func() bool {
		recs = b.logs(t, "acme.>")
		return len(recs) == 11
	}, 10*time.Second, 10*time.Millisecond, "a record for every delivery")
	require.Len(t, rcv.all(), 11, "each delivery sent once")
	succeeded := 0
	for _, rec := range recs {
		if rec.Status == contract.DeliverySucceeded {
			succeeded++
		} else {
			require.Equal(t, contract.DeliveryPending, rec.Status, rec.ID)
		}
	}
	require.GreaterOrEqual(t, succeeded, 8)
}

// A parked delivery whose target stays down until the parked stream would
// remove it is dead-lettered by its drain first: its attempt log says failed,
// with why, and it can be retried. A job callback host, never disabled as an
// endpoint is, would otherwise lose its oldest parked deliveries unseen.
func TestParkedTooLongIsDeadLettered(t *testing.T) {
	t.Parallel()
	rcv, _ := downReceiver(t, http.StatusServiceUnavailable)
	cfg := notifier.Config{
		BreakerFailures: 1, BreakerCooldown: 500 * time.Millisecond,
		Schedule: []time.Duration{time.Hour}, InProcessMax: time.Nanosecond,
	}
	notifier.GiveUpParkedAfter(&cfg, time.Second)
	b := setup(t, cfg)
	b.publishJobEvent(t, "acme", "job_first", rcv.URL)
	b.waitLog(t, "acme", "job_first", contract.DeliveryPending)
	const parked = 10
	for i := range parked {
		b.publishJobEvent(t, "acme", fmt.Sprintf("job_%d", i), rcv.URL+"/path")
	}
	require.Eventually(t, func() bool { return b.streamMsgs(t, contract.StreamParked) > 0 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return b.streamMsgs(t, contract.StreamParked) == 0 }, 20*time.Second, 10*time.Millisecond,
		"parked deliveries of a host that stays down are still parked")
	var recs []contract.DeliveryRecord
	require.Eventually(t, func() bool { recs = b.logs(t, "acme.>"); return len(recs) == 1+parked }, 10*time.Second, 10*time.Millisecond,
		"a record for every delivery")
	failed := 0
	for _, rec := range recs {
		if rec.Status == contract.DeliveryPending { // the first, and any probe of the drain's
			continue
		}
		require.Equal(t, contract.DeliveryFailed, rec.Status, rec.ID)
		require.Contains(t, rec.Attempts[len(rec.Attempts)-1].Error, "not sent: parked for", rec.ID)
		require.NotEmpty(t, rec.Body, "kept, so that it can be retried")
		failed++
	}
	require.GreaterOrEqual(t, failed, parked/2)
}

// A parked delivery given up on while its dead letter cannot be stored is
// queued for its record alone: it gets no new round of attempts when its
// target comes back, and its record is stored once the log bucket is.
func TestParkedGivenUpWhileItsLogFailsIsNotSent(t *testing.T) {
	t.Parallel()
	rcv, down := downReceiver(t, http.StatusServiceUnavailable)
	js := startJetStream(t)
	cfg := notifier.Config{
		BreakerFailures: 1, BreakerCooldown: 500 * time.Millisecond,
		Schedule: []time.Duration{time.Hour}, InProcessMax: time.Nanosecond,
	}
	notifier.GiveUpParkedAfter(&cfg, time.Second)
	b := setupOn(t, js, cfg)
	ctx := t.Context()
	b.publishJobEvent(t, "acme", "job_first", rcv.URL) // opens the circuit; its retry is an hour away
	b.waitLog(t, "acme", "job_first", contract.DeliveryPending)
	require.NoError(t, js.DeleteKeyValue(ctx, contract.BucketDeliveries))
	const parked = 10
	for i := range parked {
		b.publishJobEvent(t, "acme", fmt.Sprintf("job_%d", i), rcv.URL+"/path")
	}
	require.Eventually(t, func() bool { return b.streamMsgs(t, contract.StreamParked) > 0 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return b.streamMsgs(t, contract.StreamParked) == 0 }, 30*time.Second, 10*time.Millisecond,
		"parked deliveries of a host that stays down are still parked")
	sent := len(rcv.all())
	down.Store(false)
	time.Sleep(3 * time.Second) // the target is up: a new round would reach it now
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))

	require.Eventually(t, func() bool { // every copy queued for its record alone is settled: its record stored
		info := b.consumerInfo(t, contract.StreamDeliveries, notifier.DeliverConsumer)
		return info.NumPending == 0 && info.NumAckPending == 0
	}, 20*time.Second, 10*time.Millisecond, "deliveries left to settle")
	recs := b.logs(t, "acme.>")
	for _, rec := range recs {
		require.Equal(t, contract.DeliveryFailed, rec.Status, rec.ID)
		require.Contains(t, rec.Attempts[len(rec.Attempts)-1].Error, "not sent: parked for", rec.ID)
	}
	// The others were a drain's probes, rescheduled an hour on: their logs,
	// written while the bucket was gone, are lost, as a lost log line is.
	require.GreaterOrEqual(t, len(recs), parked/2)
	require.Len(t, rcv.all(), sent, "no webhook after the deliveries were given up on")
}

// A drain whose consumer is gone (deleted by an operator, or by the server
// as idle while the process was cut off) gives up, and the next scan starts
// it over: its deliveries are not left parked for good.
func TestDrainWhoseConsumerIsGoneStartsOver(t *testing.T) {
	t.Parallel()
	rcv, down := downReceiver(t, http.StatusInternalServerError)
	// The circuit stays open until the test has parked, found and deleted
	// the drain's consumer, however slow the machine: no probe before.
	cfg := notifier.Config{
		BreakerFailures: 1, BreakerCooldown: 10 * time.Second, DirectAttempts: -1,
		Schedule: []time.Duration{time.Hour}, InProcessMax: time.Nanosecond,
	}
	notifier.ShortParking(&cfg)
	b := setup(t, cfg, newEndpoint(t, "acme", "ep_x", rcv.URL, "x.*"))
	b.publishEvent(t, "acme", "x.first", "evt_first", []byte(`{}`))
	b.waitLog(t, "acme", "evt_first", contract.DeliveryPending)
	for i := range 5 {
		b.queueDelivery(t, "acme", "ep_x", fmt.Sprintf("evt_%d", i))
	}
	require.Eventually(t, func() bool { return b.streamMsgs(t, contract.StreamParked) == 5 }, 10*time.Second, 10*time.Millisecond)

	ctx := context.Background()
	stream, err := b.js.Stream(ctx, contract.StreamParked)
	require.NoError(t, err)
	// The drain starts as the first delivery is parked; its consumer may
	// still be on its way when the last one is.
	var names []string
	require.Eventually(t, func() bool {
		names = names[:0]
		for name := range stream.ConsumerNames(ctx).Name() {
			names = append(names, name)
		}
		return len(names) > 0
	}, 10*time.Second, 10*time.Millisecond)
	require.Len(t, names, 1, "one drain consumer")
	require.NoError(t, stream.DeleteConsumer(ctx, names[0]))
	down.Store(false)
	// After the cool-down a new drain's probe succeeds, and the rest follow.
	require.Eventually(t, func() bool { return b.streamMsgs(t, contract.StreamParked) == 0 }, 30*time.Second, 10*time.Millisecond)
	for i := range 5 {
		b.waitLog(t, "acme", fmt.Sprintf("evt_%d", i), contract.DeliverySucceeded)
	}
}

// Deliveries parked by a notifier that stopped are drained by the next one.
func TestParkedDeliveriesDrainedAtStart(t *testing.T) {
	t.Parallel()
	js := startJetStream(t)
	rcv := newReceiver(t, nil)
	ep := newEndpoint(t, "acme", "ep_back", rcv.URL, "x.*")
	for i := range 5 {
		parkDelivery(t, js, ep.ID, fmt.Sprintf("evt_%d", i))
	}
	b := setupOn(t, js, notifier.Config{}, ep)
	rcv.wait(t, 5)
	b.waitIdle(t)
	for i := range 5 {
		b.waitLog(t, "acme", fmt.Sprintf("evt_%d", i), contract.DeliverySucceeded)
	}
}

// A process runs at most its number of drains at once, however many
// targets are dead: the others wait in line, and a drain that settles
// nothing (its circuit open) gives way to them, so every dead target gets
// its turn.
func TestDrainsAreBounded(t *testing.T) {
	t.Parallel()
	js := startJetStream(t)
	const targets, most = 6, 2
	var eps []endpoints.Endpoint
	var receivers []*receiver
	for i := range targets {
		rcv, _ := downReceiver(t, http.StatusInternalServerError)
		receivers = append(receivers, rcv)
		ep := newEndpoint(t, "acme", fmt.Sprintf("ep_dead%d", i), rcv.URL, "x.*")
		eps = append(eps, ep)
		for j := range 3 { // the first fails and opens the circuit; the others wait for its probe
			parkDelivery(t, js, ep.ID, fmt.Sprintf("evt_%d_%d", i, j))
		}
	}
	cfg := notifier.Config{
		BreakerFailures: 1, BreakerCooldown: time.Hour, DirectAttempts: -1, EndpointConcurrency: 1,
		Schedule: []time.Duration{time.Hour}, InProcessMax: time.Nanosecond,
	}
	notifier.ShortParking(&cfg)
	notifier.FewDrains(&cfg, most)
	b := setupOn(t, js, cfg, eps...)
	for i, rcv := range receivers {
		require.Eventually(t, func() bool { return len(rcv.all()) > 0 }, 20*time.Second, 10*time.Millisecond, "dead target %d never got its turn", i)
	}
	require.LessOrEqual(t, b.n.MostDrains(), most)
}

// A drain that gives way while a delivery is under way lets it finish:
// a slow endpoint's webhooks are each sent once, not cut short at every
// turn and sent again.
func TestDrainGivesWayWithoutCuttingAttempts(t *testing.T) {
	t.Parallel()
	js := startJetStream(t)
	slow := newReceiver(t, func(_ int, w http.ResponseWriter) { time.Sleep(time.Second) })
	dead, _ := downReceiver(t, http.StatusInternalServerError)
	eps := []endpoints.Endpoint{newEndpoint(t, "acme", "ep_slow", slow.URL, "x.*"), newEndpoint(t, "acme", "ep_dead", dead.URL, "x.*")}
	for _, ep := range eps {
		for j := range 3 {
			parkDelivery(t, js, ep.ID, fmt.Sprintf("evt_%s_%d", ep.ID, j))
		}
	}
	cfg := notifier.Config{
		BreakerFailures: 1, BreakerCooldown: time.Hour, DirectAttempts: -1, EndpointConcurrency: 1,
		Schedule: []time.Duration{time.Hour}, InProcessMax: time.Nanosecond, ShutdownGrace: 300 * time.Millisecond,
	}
	notifier.ShortParking(&cfg)
	notifier.FewDrains(&cfg, 1)
	b := setupOn(t, js, cfg, eps...)
	for j := range 3 {
		b.waitLog(t, "acme", fmt.Sprintf("evt_ep_slow_%d", j), contract.DeliverySucceeded)
	}
	sent := map[string]int{}
	for _, r := range slow.all() {
		sent[r.id()]++
	}
	for id, n := range sent {
		require.Equal(t, 1, n, "%s sent %d times", id, n)
	}
}

// parkDelivery parks the delivery of an event of type x.y to acme's
// endpoint, as a notifier parks one whose endpoint's circuit is open.
func parkDelivery(t *testing.T, js jetstream.JetStream, endpointID, eventID string) {
	t.Helper()
	d := contract.Delivery{
		ID: contract.DeliveryID(eventID, endpointID), Tenant: "acme", EventID: eventID, EventType: "x.y",
		EndpointID: endpointID, Body: []byte(`{"type":"x.y","timestamp":"2026-11-30T00:00:00Z","data":{}}`), CreatedAt: time.Now().UTC(),
	}
	require.NoError(t, bus.PublishJSON(context.Background(), js, contract.ParkedSubject("acme", endpointID), "parked."+d.ID, d))
}

// downReceiver is a receiver that answers status while down is set, which
// it is at first, and 200 after.
func downReceiver(t *testing.T, status int) (*receiver, *atomic.Bool) {
	t.Helper()
	down := new(atomic.Bool)
	down.Store(true)
	return newReceiver(t, func(_ int, w http.ResponseWriter) {
		if down.Load() {
			w.WriteHeader(status)
		}
	}), down
}

// queueDelivery publishes the delivery of an event to an endpoint on the
// delivery queue, as fan-out does.
func (b *bundle) queueDelivery(t *testing.T, tenant, endpointID, eventID string) {
	t.Helper()
	d := contract.Delivery{
		ID: contract.DeliveryID(eventID, endpointID), Tenant: tenant, EventID: eventID, EventType: "queued",
		EndpointID: endpointID, Body: []byte(`{"type":"queued","timestamp":"2026-11-30T00:00:00Z","data":{}}`), CreatedAt: time.Now().UTC(),
	}
	require.NoError(t, bus.PublishJSON(context.Background(), b.js, contract.DeliverySubject(tenant, endpointID), d.ID, d))
}

func (b *bundle) consumerInfo(t *testing.T, stream, consumer string) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := b.js.Consumer(context.Background(), stream, consumer)
	require.NoError(t, err)
	info, err := c.Info(context.Background())
	require.NoError(t, err)
	return info
}

// ackPending counts the messages delivered and not yet acknowledged by
// every consumer of the streams, by "<stream>/<consumer>" and in all
// under "".
func (b *bundle) ackPending(t *testing.T, streams ...string) map[string]int {
	t.Helper()
	ctx := context.Background()
	counts := map[string]int{"": 0}
	for _, name := range streams {
		s, err := b.js.Stream(ctx, name)
		require.NoError(t, err)
		infos := s.ListConsumers(ctx)
		for info := range infos.Info() {
			counts[name+"/"+info.Name] = info.NumAckPending
			counts[""] += info.NumAckPending
		}
		require.NoError(t, infos.Err())
	}
	return counts
}

func (b *bundle) streamMsgs(t *testing.T, name string) uint64 {
	t.Helper()
	s, err := b.js.Stream(context.Background(), name)
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	return info.State.Msgs
}

// A parked retry given up on after its delivery succeeded another way (a
// replay, or a round of its message delivered again) leaves the record as
// it is: it is not written over with failed, nor announced exhausted.
func TestParkedRetryOfASucceededDeliveryIsDroppedWhenGivenUp(t *testing.T) {
	t.Parallel()
	js := startJetStream(t)
	rcv, _ := downReceiver(t, http.StatusServiceUnavailable)
	ep := newEndpoint(t, "acme", "ep_1", rcv.URL, "x.*")
	parkDelivery(t, js, ep.ID, "evt_open") // taken first: fails, and opens the circuit for an hour
	now := time.Now().UTC()
	d := contract.Delivery{
		ID: contract.DeliveryID("evt_1", ep.ID), Tenant: "acme", EventID: "evt_1", EventType: "x.y", EndpointID: ep.ID,
		Body: []byte(`{"type":"x.y","timestamp":"2026-11-30T00:00:00Z","data":{}}`), CreatedAt: now,
		Attempts: []contract.Attempt{{At: now, StatusCode: http.StatusServiceUnavailable}},
	}
	succeeded, err := json.Marshal(contract.DeliveryRecord{ID: d.ID, EventID: d.EventID, EventType: d.EventType, EndpointID: d.EndpointID,
		Status: contract.DeliverySucceeded, Body: d.Body, CreatedAt: now, UpdatedAt: now,
		Attempts: append(slices.Clone(d.Attempts), contract.Attempt{At: now, StatusCode: http.StatusOK})})
	require.NoError(t, err)
	logs, err := js.KeyValue(t.Context(), contract.BucketDeliveries)
	require.NoError(t, err)
	_, err = logs.Put(t.Context(), d.LogKey(), succeeded)
	require.NoError(t, err)
	require.NoError(t, bus.PublishJSON(t.Context(), js, contract.ParkedSubject("acme", ep.ID), "parked."+d.ID, d))
	time.Sleep(1100 * time.Millisecond) // parked longer than the drain keeps one

	cfg := notifier.Config{
		BreakerFailures: 1, BreakerCooldown: time.Hour, EndpointConcurrency: 1,
		Schedule: []time.Duration{time.Hour}, InProcessMax: time.Nanosecond,
	}
	notifier.GiveUpParkedAfter(&cfg, time.Second)
	b := setupOn(t, js, cfg, ep)
	require.Eventually(t, func() bool { return b.streamMsgs(t, contract.StreamParked) == 0 }, 20*time.Second, 10*time.Millisecond,
		"the parked retry is still parked")
	entry, err := logs.Get(t.Context(), d.LogKey())
	require.NoError(t, err)
	require.JSONEq(t, string(succeeded), string(entry.Value()), "the record was written over")
}

// An endpoint enabled again starts afresh: its circuit, opened by the
// failures before, is closed, so that what is sent to it then (a recover,
// a new event) goes at once, not after the circuit's cool-down (found by
// review: a recover answered done while nothing was sent for 20 s).
func TestEndpointEnabledAgainHasItsCircuitClosed(t *testing.T) {
	t.Parallel()
	rcv, down := downReceiver(t, http.StatusServiceUnavailable)
	b := setup(t, notifier.Config{
		BreakerFailures: 1, BreakerCooldown: time.Hour,
		Schedule: []time.Duration{time.Hour}, InProcessMax: time.Nanosecond,
	}, newEndpoint(t, "acme", "ep_1", rcv.URL, "a.b"))
	b.publishEvent(t, "acme", "a.b", "acme:evt_1", []byte(`{}`))
	b.waitLog(t, "acme", "evt_1", contract.DeliveryPending) // its circuit is open for an hour
	for _, enabled := range []bool{false, true} {
		_, err := b.endpoints.Update(t.Context(), "acme", "ep_1", func(ep *endpoints.Endpoint) error {
			ep.Enabled = enabled
			return nil
		})
		require.NoError(t, err)
	}
	down.Store(false)
	require.Eventually(t, func() bool {
		ep := b.n.Endpoint("acme", "ep_1")
		return ep != nil && ep.Enabled && ep.Revision >= 3
	}, 10*time.Second, 10*time.Millisecond, "the index did not see it enabled again")
	b.publishEvent(t, "acme", "a.b", "acme:evt_2", []byte(`{}`))
	b.waitLog(t, "acme", "evt_2", contract.DeliverySucceeded)
}
