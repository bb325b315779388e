package notifier

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/endpoints"
	"github.com/hookstream/hookstream/shared/natstest"
	"github.com/hookstream/hookstream/shared/secretbox"
	"github.com/hookstream/hookstream/shared/signing"
	"github.com/hookstream/hookstream/shared/ssrf"
)

// A delivery to an endpoint that this notifier's index has not seen yet
// (created a moment ago, fanned out by another process) goes to it, read
// from the bucket; only one the bucket has no such endpoint for either is
// dead-lettered as deleted. The notifier here is never run, so its index
// stays empty: an index as far behind as it can be.
func TestDestinationOfAnEndpointTheIndexHasNotSeen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n, _, store := idleNotifier(t, Config{})
	require.NoError(t, store.Create(ctx, enabledEndpoint(t, "ep_new", "http://127.0.0.1:9/hook")))
	require.Nil(t, n.index.Get("acme", "ep_new"), "the index has not seen it")

	dest, unsendable, err := n.destination(ctx, &contract.Delivery{ID: "msg_1", Tenant: "acme", EndpointID: "ep_new"})
	require.NoError(t, err)
	require.Empty(t, unsendable)
	require.Equal(t, "http://127.0.0.1:9/hook", dest.url)
	require.NotEmpty(t, dest.keys)

	_, unsendable, err = n.destination(ctx, &contract.Delivery{ID: "msg_2", Tenant: "acme", EndpointID: "ep_gone"})
	require.NoError(t, err)
	require.Equal(t, "endpoint ep_gone was deleted", unsendable)
}

// enabledEndpoint is acme's enabled endpoint id at url, with a keyring.
func enabledEndpoint(t *testing.T, id, url string) endpoints.Endpoint {
	t.Helper()
	now := time.Now().UTC()
	ring, err := signing.NewKeyring(now)
	require.NoError(t, err)
	return endpoints.Endpoint{ID: id, Tenant: "acme", URL: url, Enabled: true, Keyring: ring, CreatedAt: now, UpdatedAt: now}
}

// idleNotifier is a notifier that is never run (its index stays as the
// test sets it) on a JetStream of its own with hookstream's topology, and
// the endpoint store it reads. cfg gets a new secret box and a guard that
// lets loopback through.
func idleNotifier(t *testing.T, cfg Config) (*Notifier, jetstream.JetStream, *endpoints.Store) {
	t.Helper()
	ctx := context.Background()
	_, js := natstest.Start(t).Connect(t)
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))
	key := make([]byte, secretbox.KeySize)
	_, _ = rand.Read(key)
	box, err := secretbox.New(key)
	require.NoError(t, err)
	cfg.Box, cfg.Guard = box, ssrf.NewGuard([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	n, err := New(ctx, cfg, js, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(n.Close)
	store, err := endpoints.Open(ctx, js, box)
	require.NoError(t, err)
	return n, js, store
}

// After an old URL's 410 during a move, the retry goes to the URL the
// bucket has, and only a URL other than the bucket's counts as moved, even
// while this process's index still has the old one: it went to the old URL
// again, answered 410 again, and was dead-lettered though the endpoint
// worked at its new URL.
func TestRetryAfterAMoveGoesWhereTheBucketSays(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n, _, store := idleNotifier(t, Config{})
	moved := enabledEndpoint(t, "ep_1", "http://127.0.0.1:9/new")
	require.NoError(t, store.Create(ctx, moved))
	now := time.Now().UTC()
	old := moved
	old.URL = "http://127.0.0.1:9/old"
	n.index.Put(old) // the index has not seen the move

	d := &contract.Delivery{ID: "msg_1", Tenant: "acme", EndpointID: "ep_1",
		Attempts: []contract.Attempt{{At: now, StatusCode: 410}}}
	require.True(t, n.moved(ctx, d, old.URL))
	require.False(t, n.moved(ctx, d, moved.URL), "the bucket's URL has not moved, whatever the index says")
	dest, unsendable, err := n.destination(ctx, d)
	require.NoError(t, err)
	require.Empty(t, unsendable)
	require.Equal(t, moved.URL, dest.url)

	d.Attempts = nil // a first attempt goes by the index
	dest, _, err = n.destination(ctx, d)
	require.NoError(t, err)
	require.Equal(t, old.URL, dest.url)
}
