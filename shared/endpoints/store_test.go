package endpoints_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/endpoints"
	"github.com/hookstream/hookstream/shared/natstest"
	"github.com/hookstream/hookstream/shared/secretbox"
	"github.com/hookstream/hookstream/shared/signing"
)

// A deleted endpoint's marker leaves the bucket once it is old enough;
// the markers of newer deletes stay.
func TestForgetDeleted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, js := natstest.Start(t).Connect(t)
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))
	key := make([]byte, secretbox.KeySize)
	_, _ = rand.Read(key)
	box, err := secretbox.New(key)
	require.NoError(t, err)
	store, err := endpoints.Open(ctx, js, box)
	require.NoError(t, err)
	now := time.Now().UTC()
	ring, err := signing.NewKeyring(now)
	require.NoError(t, err)
	for _, id := range []string{"ep_a", "ep_b"} {
		require.NoError(t, store.Create(ctx, endpoints.Endpoint{ID: id, Tenant: "acme", URL: "https://example.com/" + id, Enabled: true, Keyring: ring, CreatedAt: now, UpdatedAt: now}))
	}
	require.NoError(t, store.Delete(ctx, "acme", "ep_a"))
	stream, err := js.Stream(ctx, "KV_"+contract.BucketEndpoints)
	require.NoError(t, err)
	msgs := func() uint64 {
		info, err := stream.Info(ctx)
		require.NoError(t, err)
		return info.State.Msgs
	}
	require.Equal(t, uint64(2), msgs(), "ep_b and ep_a's marker")
	require.NoError(t, store.ForgetDeleted(ctx, time.Hour))
	require.Equal(t, uint64(2), msgs(), "a recent marker stays")
	require.NoError(t, store.ForgetDeleted(ctx, -1))
	require.Equal(t, uint64(1), msgs(), "only ep_b is left")
	got, _, err := store.Get(ctx, "acme", "ep_b")
	require.NoError(t, err)
	require.Equal(t, "ep_b", got.ID)
}

// An endpoint whose keyring was sealed with another secret key (the
// deployment's was replaced) can still be read, changed, listed and
// deleted, and given a new keyring; a change keeps the old sealed keyring.
// Every call on it failed, deleting it and its tenant too.
func TestEndpointWithAnUnreadableKeyring(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, js := natstest.Start(t).Connect(t)
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))
	boxes := make([]*secretbox.Box, 2)
	for i := range boxes {
		key := make([]byte, secretbox.KeySize)
		_, _ = rand.Read(key)
		var err error
		boxes[i], err = secretbox.New(key)
		require.NoError(t, err)
	}
	old, err := endpoints.Open(ctx, js, boxes[0])
	require.NoError(t, err)
	now := time.Now().UTC()
	ring, err := signing.NewKeyring(now)
	require.NoError(t, err)
	for _, id := range []string{"ep_a", "ep_b"} {
		require.NoError(t, old.Create(ctx, endpoints.Endpoint{ID: id, Tenant: "acme", URL: "https://example.com/" + id, Enabled: true, Keyring: ring, CreatedAt: now, UpdatedAt: now}))
	}
	store, err := endpoints.Open(ctx, js, boxes[1])
	require.NoError(t, err)
	ep, _, err := store.Get(ctx, "acme", "ep_a")
	require.ErrorIs(t, err, signing.ErrUnreadable)
	require.NoError(t, endpoints.Readable(err))
	require.Equal(t, "https://example.com/ep_a", ep.URL)
	require.Empty(t, ep.Keyring.Secrets)

	_, err = store.Update(ctx, "acme", "ep_a", func(e *endpoints.Endpoint) error {
		e.Description = "changed"
		return nil
	})
	require.NoError(t, err)
	ep, _, err = old.Get(ctx, "acme", "ep_a")
	require.NoError(t, err, "the old key still opens what a change kept")
	require.Equal(t, "changed", ep.Description)
	require.Equal(t, ring.Current().Secret, ep.Keyring.Current().Secret)

	fresh, err := signing.NewKeyring(now)
	require.NoError(t, err)
	_, err = store.Update(ctx, "acme", "ep_a", func(e *endpoints.Endpoint) error {
		e.Keyring = fresh
		return nil
	})
	require.NoError(t, err)
	ep, _, err = store.Get(ctx, "acme", "ep_a")
	require.NoError(t, err)
	require.Equal(t, fresh.Current().Secret, ep.Keyring.Current().Secret)

	list, err := store.List(ctx, "acme")
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.NoError(t, store.Delete(ctx, "acme", "ep_b"))
	_, _, err = store.Get(ctx, "acme", "ep_b")
	require.ErrorIs(t, err, endpoints.ErrNotFound)
}
