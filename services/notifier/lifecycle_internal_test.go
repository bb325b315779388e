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
