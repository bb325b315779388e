package signing_test

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/natstest"
	"github.com/hookstream/hookstream/shared/secretbox"
	"github.com/hookstream/hookstream/shared/signing"
)

func box(t *testing.T, b byte) *secretbox.Box {
	t.Helper()
	box, err := secretbox.New(bytes.Repeat([]byte{b}, secretbox.KeySize))
	require.NoError(t, err)
	return box
}

// ensured is a fresh JetStream with hookstream's streams and buckets.
func ensured(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, js := natstest.Start(t).Connect(t)
	require.NoError(t, bus.Ensure(context.Background(), js, bus.Topology{}))
	return js
}

// The first service's key becomes the deployment's; a service with another
// key is refused, unless it replaces the recorded one.
func TestCheckKey(t *testing.T) {
	t.Parallel()
	js := ensured(t)
	ctx := context.Background()
	a, b := box(t, 1), box(t, 2)
	require.NoError(t, signing.CheckKey(ctx, js, a, false))
	require.NoError(t, signing.CheckKey(ctx, js, a, false), "the same key again")
	require.ErrorIs(t, signing.CheckKey(ctx, js, b, false), signing.ErrKeyMismatch)
	require.NoError(t, signing.CheckKey(ctx, js, b, true), "replaced")
	require.NoError(t, signing.CheckKey(ctx, js, b, false))
	require.ErrorIs(t, signing.CheckKey(ctx, js, a, false), signing.ErrKeyMismatch)
}

// A deployment from before the record gets its key only from a service that
// can open its stored signing secrets: a misconfigured one starting first
// cannot claim it.
func TestCheckKeyOfDeploymentWithSecrets(t *testing.T) {
	t.Parallel()
	js := ensured(t)
	ctx := context.Background()
	right, wrong := box(t, 1), box(t, 2)
	store, err := signing.Open(ctx, js, right)
	require.NoError(t, err)
	_, err = store.Get(ctx, "acme") // creates acme's sealed keyring
	require.NoError(t, err)
	require.ErrorIs(t, signing.CheckKey(ctx, js, wrong, false), signing.ErrKeyMismatch)
	require.NoError(t, signing.CheckKey(ctx, js, right, false))
	require.ErrorIs(t, signing.CheckKey(ctx, js, wrong, false), signing.ErrKeyMismatch)
}

// Services starting at once on a fresh deployment: with one key all start;
// with two, those of one key do.
func TestCheckKeyAtOnce(t *testing.T) {
	t.Parallel()
	for _, keys := range []int{1, 2} {
		js := ensured(t)
		ctx := context.Background()
		var mu sync.Mutex
		started := map[byte]int{}
		var wg sync.WaitGroup
		for i := range 8 {
			k := byte(1 + i%keys)
			wg.Go(func() {
				if signing.CheckKey(ctx, js, box(t, k), false) == nil {
					mu.Lock()
					started[k]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		require.Len(t, started, 1, "%d keys", keys)
		for _, n := range started {
			require.Equal(t, 8/keys, n, "%d keys", keys)
		}
	}
}

// A running service learns that another replaced the deployment's key, and
// is told once: it would go on naming jobs otherwise than the others
// (found by review: intake answered 202 with ids no processor used). The
// same key recorded again tells nothing.
func TestWatchKeyTellsAReplacement(t *testing.T) {
	t.Parallel()
	js := ensured(t)
	ctx, cancel := context.WithCancel(t.Context())
	a, b := box(t, 1), box(t, 2)
	require.NoError(t, signing.CheckKey(ctx, js, a, false))
	told := make(chan error, 2)
	done := make(chan error, 1)
	go func() {
		done <- signing.WatchKey(ctx, js, a, slog.New(slog.DiscardHandler), func(err error) { told <- err })
	}()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	require.NoError(t, signing.CheckKey(ctx, js, a, true), "the same key recorded again")
	require.NoError(t, signing.CheckKey(ctx, js, b, true), "replaced")
	select {
	case err := <-told:
		require.ErrorIs(t, err, signing.ErrKeyMismatch)
	case <-time.After(10 * time.Second):
		t.Fatal("the replacement was not told")
	}
	require.NoError(t, signing.CheckKey(ctx, js, a, true), "and back")
	time.Sleep(200 * time.Millisecond)
	require.Empty(t, told, "told once")
}
