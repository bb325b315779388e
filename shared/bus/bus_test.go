package bus_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/embeddednats"
	"github.com/hookstream/hookstream/shared/natstest"
)

// endingKV is a bucket whose watches the test can end, as nats.go ends one
// whose consumer it cannot create again.
type endingKV struct {
	jetstream.KeyValue
	mu      sync.Mutex
	watches int
	end     chan struct{} // closed to end the current watch
}

func (kv *endingKV) Watch(ctx context.Context, keys string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	w, err := kv.KeyValue.Watch(ctx, keys, opts...)
	if err != nil {
		return nil, err
	}
	kv.mu.Lock()
	kv.watches++
	end := make(chan struct{})
	kv.end = end
	kv.mu.Unlock()
	out := &endingWatcher{KeyWatcher: w, updates: make(chan jetstream.KeyValueEntry, 64)}
	go func() {
		defer close(out.updates)
		for {
			select {
			case <-end:
				_ = w.Stop()
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				out.updates <- e
			}
		}
	}()
	return out, nil
}

// endWatch ends the current watch.
func (kv *endingKV) endWatch() {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	close(kv.end)
}

func (kv *endingKV) watchCount() int {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return kv.watches
}

type endingWatcher struct {
	jetstream.KeyWatcher
	updates chan jetstream.KeyValueEntry
}

func (w *endingWatcher) Updates() <-chan jetstream.KeyValueEntry { return w.updates }

// view is what Mirror applied: key → value.
type view struct {
	mu   sync.Mutex
	keys map[string]string
}

func (v *view) apply(e jetstream.KeyValueEntry) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e.Operation() == jetstream.KeyValuePut {
		v.keys[e.Key()] = string(e.Value())
	} else {
		delete(v.keys, e.Key())
	}
}

func (v *view) get() map[string]string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return maps.Clone(v.keys)
}

// bucketWith creates bucket "M" on a fresh server, holding keys.
func bucketWith(t *testing.T, keys map[string]string) jetstream.KeyValue {
	t.Helper()
	_, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "M"})
	require.NoError(t, err)
	for k, v := range keys {
		_, err := kv.PutString(ctx, k, v)
		require.NoError(t, err)
	}
	return kv
}

// mirrorOf runs Mirror on real, through an endingKV, until the test ends,
// and returns once its view is ready.
func mirrorOf(t *testing.T, real jetstream.KeyValue) (*endingKV, *view) {
	t.Helper()
	kv := &endingKV{KeyValue: real}
	v := &view{keys: map[string]string{}}
	ready := make(chan struct{})
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bus.Mirror(runCtx, kv, slog.New(slog.DiscardHandler), ready, v.apply) }()
	t.Cleanup(func() {
		stop()
		require.NoError(t, <-done)
	})
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("mirror never ready")
	}
	return kv, v
}

// A watch that ends while the mirror runs is started again: the view
// catches up with every change made meanwhile, deletes included, and
// follows the bucket after that.
func TestMirrorWatchesAgainWhenItsWatchEnds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	real := bucketWith(t, map[string]string{"a": "1", "b": "1", "c": "1"})
	require.NoError(t, real.Delete(ctx, "c"))

	kv, v := mirrorOf(t, real)
	require.Equal(t, map[string]string{"a": "1", "b": "1"}, v.get())

	kv.endWatch()
	_, err := real.PutString(ctx, "a", "2")
	require.NoError(t, err)
	require.NoError(t, real.Purge(ctx, "b"))
	_, err = real.PutString(ctx, "d", "1")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return kv.watchCount() == 2 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		return maps.Equal(map[string]string{"a": "2", "d": "1"}, v.get())
	}, 10*time.Second, 10*time.Millisecond, "view %v", v.get())

	_, err = real.PutString(ctx, "e", "1")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return v.get()["e"] == "1" }, 10*time.Second, 10*time.Millisecond)
}

// A key deleted while no watch ran, with no marker left (the bucket
// dropped it), is found gone when the watch starts again.
func TestMirrorForgetsKeysGoneWhileNotWatching(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	real := bucketWith(t, map[string]string{"a": "1", "b": "1"})
	kv, v := mirrorOf(t, real)
	require.Equal(t, map[string]string{"a": "1", "b": "1"}, v.get())

	kv.endWatch()
	require.NoError(t, real.Purge(ctx, "b"))
	require.NoError(t, real.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(-1)))
	require.Eventually(t, func() bool { return kv.watchCount() == 2 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		return maps.Equal(map[string]string{"a": "1"}, v.get())
	}, 10*time.Second, 10*time.Millisecond, "view %v", v.get())
}

// cutKV is a bucket whose watches end after their first n entries, before
// the end of the current values.
type cutKV struct {
	jetstream.KeyValue
	n int
}

func (kv cutKV) Watch(ctx context.Context, keys string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	w, err := kv.KeyValue.Watch(ctx, keys, opts...)
	if err != nil {
		return nil, err
	}
	out := &endingWatcher{KeyWatcher: w, updates: make(chan jetstream.KeyValueEntry, kv.n)}
	for range kv.n {
		out.updates <- <-w.Updates()
	}
	close(out.updates)
	return out, nil
}

// A listing whose watch ends before the last current value is an error,
// not a shorter listing.
func TestReadAllReportsAListingCutShort(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kv := bucketWith(t, map[string]string{"a": "1", "b": "1", "c": "1"})
	count := func(kv jetstream.KeyValue) (int, error) {
		n := 0
		err := bus.ReadAll(ctx, kv, ">", func(jetstream.KeyValueEntry) error { n++; return nil })
		return n, err
	}
	n, err := count(kv)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	n, err = count(cutKV{KeyValue: kv, n: 2})
	require.Error(t, err)
	require.Equal(t, 2, n)
}

func TestNotStored(t *testing.T) {
	t.Parallel()
	for err, want := range map[error]bool{
		&jetstream.APIError{ErrorCode: 10077, Code: 503}: true, // maximum messages exceeded
		fmt.Errorf("publish: %w", nats.ErrNoResponders):  true,
		nats.ErrMaxPayload: true,
		fmt.Errorf("publish: %w", context.DeadlineExceeded): false,
		nats.ErrTimeout:  false,
		context.Canceled: false,
		fmt.Errorf("publish: %w", nats.ErrConnectionReconnecting): false,
	} {
		require.Equal(t, want, bus.NotStored(err), "%v", err)
	}
}

// A bucket that does not exist is an error, not something to wait for.
func TestMirrorOfAMissingBucketFails(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "M"})
	require.NoError(t, err)
	require.NoError(t, js.DeleteKeyValue(ctx, "M"))
	done := make(chan error, 1)
	go func() {
		done <- bus.Mirror(ctx, kv, slog.New(slog.DiscardHandler), make(chan struct{}), func(jetstream.KeyValueEntry) {})
	}()
	select {
	case err := <-done:
		require.Error(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Mirror waits for a bucket that does not exist")
	}
}

// A token in the options authenticates a URL without credentials of its
// own, as a split service's HOOKSTREAM_NATS_TOKEN does.
func TestConnectWithAToken(t *testing.T) {
	t.Parallel()
	const token = "test-token-0123456789"
	ns, err := embeddednats.Start(embeddednats.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", Token: token}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(ns.Shutdown)
	nc, _, err := bus.Connect(bus.ConnectOptions{URL: ns.ClientURL(), Name: t.Name(), Token: token}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	nc.Close()
	_, _, err = bus.Connect(bus.ConnectOptions{URL: ns.ClientURL(), Name: t.Name()}, slog.New(slog.DiscardHandler))
	require.Error(t, err)
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for given, want := range map[string]string{
		"nats://user:pw@host:4222":      "nats://REDACTED@host:4222",
		"nats://s3cret-token@host:4222": "nats://REDACTED@host:4222",
		" nats://u:p@host:42x22":        "nats://REDACTED@host:42x22", // not a URL: still redacted
		"nats://host:4222":              "nats://host:4222",
		"u:p@host":                      "REDACTED@host",
	} {
		require.Equal(t, want, bus.RedactURL(given), given)
	}
}

// A connection the server closes for good (here for a control line too
// long) stops the process with ErrConnectionLost; its own Close does not.
func TestStopWhenClosed(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	logger := slog.New(slog.DiscardHandler)
	connect := func() (*nats.Conn, context.Context) {
		nc, _, err := bus.Connect(bus.ConnectOptions{URL: s.ClientURL(), Name: t.Name()}, logger)
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		ctx, stop := context.WithCancelCause(context.Background())
		t.Cleanup(func() { stop(nil) })
		bus.StopWhenClosed(ctx, nc, logger, stop)
		return nc, ctx
	}

	nc, ctx := connect()
	require.NoError(t, nc.Publish("a."+strings.Repeat("b", 5000), nil))
	_ = nc.Flush() // the server's answer closes the connection meanwhile
	select {
	case <-ctx.Done():
		require.ErrorIs(t, context.Cause(ctx), bus.ErrConnectionLost)
	case <-time.After(10 * time.Second):
		t.Fatal("the connection's end did not stop the process")
	}

	nc, ctx = connect()
	nc.Close()
	time.Sleep(100 * time.Millisecond) // the closed handler runs asynchronously
	require.NoError(t, ctx.Err(), "its own Close does not stop the process")
}

// A write that a full stream refuses is JetStream unavailable for now
// (503 with Retry-After, logged as a warning), not an unexpected error
// logged for every request while the stream is full.
func TestAFullStreamIsUnavailable(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FULL", Subjects: []string{"full"}, MaxMsgs: 1, Discard: jetstream.DiscardNew})
	require.NoError(t, err)
	_, err = js.Publish(ctx, "full", []byte("1"))
	require.NoError(t, err)
	_, err = js.Publish(ctx, "full", []byte("2"))
	require.Error(t, err)
	require.True(t, bus.IsUnavailable(err), "%v", err)
	require.True(t, bus.NotStored(err))
}
