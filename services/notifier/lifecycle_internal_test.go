package notifier

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/endpoints"
	"github.com/hookstream/hookstream/shared/signing"
)

// A failing endpoint's recovery is announced once, with an id of its
// failing period: a success seen by a process whose copy of the endpoint
// still says failing (another process recorded the recovery) announces
// nothing more. The notifier here is never run; its index is set by hand.
func TestRecoveryIsAnnouncedOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now().UTC()
	clock := now
	n, js, store := idleNotifier(t, Config{Now: func() time.Time { return clock }})
	ring, err := signing.NewKeyring(now)
	require.NoError(t, err)
	failingSince := now.Add(-time.Minute)
	const url = "http://127.0.0.1:9/hook"
	require.NoError(t, store.Create(ctx, endpoints.Endpoint{
		ID: "ep_flaky", Tenant: "acme", URL: url, Enabled: true, FailingSince: &failingSince,
		Keyring: ring, CreatedAt: now, UpdatedAt: now,
	}))
	stale, _, err := store.Get(ctx, "acme", "ep_flaky")
	require.NoError(t, err)
	stale.Revision = 0 // taken whatever the index holds
	d := &contract.Delivery{ID: "msg_1", Tenant: "acme", EndpointID: "ep_flaky"}
	for range 2 {
		n.index.Put(stale) // as a process that has not seen the recovery yet
		n.trackHealth(ctx, n.logger, d, url, true)
		clock = clock.Add(time.Second)
	}
	ep, _, err := store.Get(ctx, "acme", "ep_flaky")
	require.NoError(t, err)
	require.Nil(t, ep.FailingSince)
	s, err := js.Stream(ctx, contract.StreamEvents)
	require.NoError(t, err)
	subject := contract.EventSubject("acme", EventEndpointRecovered)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.State.Subjects[subject], "one endpoint.recovered")
}

// An endpoint is marked failing by its first failed round, whatever its
// circuit (one with a delivery a day never opens it), and disabled by a
// failed round DisableAfter later.
func TestLowTrafficDeadEndpointIsDisabled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now().UTC()
	clock := now
	n, _, store := idleNotifier(t, Config{Now: func() time.Time { return clock }})
	ring, err := signing.NewKeyring(now)
	require.NoError(t, err)
	const url = "http://127.0.0.1:9/hook"
	require.NoError(t, store.Create(ctx, endpoints.Endpoint{ID: "ep_dead", Tenant: "acme", URL: url, Enabled: true, Keyring: ring, CreatedAt: now, UpdatedAt: now}))
	d := &contract.Delivery{ID: "msg_1", Tenant: "acme", EndpointID: "ep_dead"}
	for range 2 {
		ep, _, err := store.Get(ctx, "acme", "ep_dead")
		require.NoError(t, err)
		n.index.Put(ep)
		n.trackHealth(ctx, n.logger, d, url, false)
		clock = clock.Add(DefaultDisableAfter)
	}
	ep, _, err := store.Get(ctx, "acme", "ep_dead")
	require.NoError(t, err)
	require.NotNil(t, ep.FailingSince)
	require.True(t, ep.FailingSince.Equal(now), "failing since its first failed round: %v", ep.FailingSince)
	require.False(t, ep.Enabled, "disabled DisableAfter later")
}

// A circuit opened by an endpoint's old URL does not date the new URL's
// failing_since: dated from the old URL's first failure, the endpoint
// would be disabled hours after the move.
func TestFailingSinceIsNotBeforeTheEndpointChanged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now().UTC()
	clock := now.Add(-time.Hour)
	n, _, store := idleNotifier(t, Config{Now: func() time.Time { return clock }})
	for range DefaultBreakerFailures { // the old URL's failures, an hour ago
		n.limits.report("acme/ep_moved", false)
	}
	clock = now
	ring, err := signing.NewKeyring(now)
	require.NoError(t, err)
	const url = "http://127.0.0.1:9/new"
	moved := now.Add(-time.Minute)
	require.NoError(t, store.Create(ctx, endpoints.Endpoint{ID: "ep_moved", Tenant: "acme", URL: url, Enabled: true, Keyring: ring, CreatedAt: now.Add(-48 * time.Hour), UpdatedAt: moved}))
	ep, _, err := store.Get(ctx, "acme", "ep_moved")
	require.NoError(t, err)
	n.index.Put(ep)
	n.trackHealth(ctx, n.logger, &contract.Delivery{ID: "msg_1", Tenant: "acme", EndpointID: "ep_moved", Attempts: []contract.Attempt{{At: now, StatusCode: 500}}}, url, false)
	ep, _, err = store.Get(ctx, "acme", "ep_moved")
	require.NoError(t, err)
	require.NotNil(t, ep.FailingSince)
	require.False(t, ep.FailingSince.Before(moved), "failing since %v, the endpoint changed at %v", ep.FailingSince, moved)
}
