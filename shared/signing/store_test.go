package signing_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/signing"
)

// A deleted tenant gets no new keyring: its callbacks would be signed with
// a secret no receiver has. Others get theirs on first use.
func TestNoKeyringForADeletedTenant(t *testing.T) {
	t.Parallel()
	js := ensured(t)
	ctx := context.Background()
	tenants, err := js.KeyValue(ctx, contract.BucketTenants)
	require.NoError(t, err)
	_, err = tenants.Put(ctx, contract.TenantDeletedKey("gone"), []byte(`{"deleted_at":"2026-12-01T12:00:00Z"}`))
	require.NoError(t, err)
	store, err := signing.Open(ctx, js, box(t, 1))
	require.NoError(t, err)

	_, err = store.Get(ctx, "gone")
	require.ErrorIs(t, err, signing.ErrTenantDeleted)
	_, err = tenants.Get(ctx, "gone.signing")
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound)

	ring, err := store.Get(ctx, "acme")
	require.NoError(t, err)
	require.NotEmpty(t, ring.Secrets)
}

// A tenant's keyring sealed with another secret key (the deployment's was
// replaced) is ErrUnreadable, and a rotation replaces it with a new one;
// the rotation failed as the read did, and the tenant had no way out.
func TestRotateReplacesAnUnreadableKeyring(t *testing.T) {
	t.Parallel()
	js := ensured(t)
	ctx := context.Background()
	old, err := signing.Open(ctx, js, box(t, 1))
	require.NoError(t, err)
	_, err = old.Get(ctx, "acme")
	require.NoError(t, err)
	store, err := signing.Open(ctx, js, box(t, 2))
	require.NoError(t, err)
	_, err = store.Get(ctx, "acme")
	require.ErrorIs(t, err, signing.ErrUnreadable)
	ring, err := store.Rotate(ctx, "acme", 0, "")
	require.NoError(t, err)
	require.Len(t, ring.Secrets, 1)
	got, err := store.Get(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, ring.Current().Secret, got.Current().Secret)
}
