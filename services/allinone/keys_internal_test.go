package allinone

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/natstest"
)

// keyWatchFixture is a key watch over a real server's job and delivery-log
// buckets, its limit in a variable and its log in a buffer.
type keyWatchFixture struct {
	ctx              context.Context
	jobs, deliveries jetstream.KeyValue
	w                *keyWatch
	logs             bytes.Buffer
	limit, available int64
	limitSets        int
}

func newKeyWatchFixture(t *testing.T, base int64) *keyWatchFixture {
	f := &keyWatchFixture{ctx: context.Background(), limit: math.MaxInt64}
	_, js := natstest.Start(t).Connect(t)
	require.NoError(t, bus.Ensure(f.ctx, js, bus.Topology{}))
	var err error
	f.jobs, err = js.KeyValue(f.ctx, contract.BucketJobs)
	require.NoError(t, err)
	f.deliveries, err = js.KeyValue(f.ctx, contract.BucketDeliveries)
	require.NoError(t, err)
	f.w = newKeyWatch(js, base, slog.New(slog.NewTextHandler(&f.logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	f.w.setLimit = func(n int64) int64 {
		prev := f.limit
		if n >= 0 {
			f.limit = n
			f.limitSets++
		}
		return prev
	}
	f.w.available = func() int64 { return f.available }
	return f
}

func (f *keyWatchFixture) put(t *testing.T, kv jetstream.KeyValue, from, to int) {
	for i := from; i < to; i++ {
		_, err := kv.Put(f.ctx, fmt.Sprintf("acme.k%d", i), []byte("{}"))
		require.NoError(t, err)
	}
}

// TestKeyWatchWarnsNearTheMemoryLimit: with a fixed limit, the kept keys of
// the job and delivery-log buckets are counted against it; a warning once
// they take half of it, and again only once they have grown by a quarter.
// The limit itself is never changed.
func TestKeyWatchWarnsNearTheMemoryLimit(t *testing.T) {
	t.Parallel()
	f := newKeyWatchFixture(t, 0)

	f.put(t, f.jobs, 0, 60)
	f.put(t, f.deliveries, 0, 40)
	f.w.check(f.ctx)
	require.Empty(t, f.logs.String(), "no memory limit")

	f.limit = 100 * keyIndexBytes * 2 // 100 keys are half of it
	f.w.check(f.ctx)
	require.Contains(t, f.logs.String(), "keys=100 ")
	require.Contains(t, f.logs.String(), fmt.Sprintf("estimated_bytes=%d ", 100*keyIndexBytes))

	f.logs.Reset()
	_, err := f.jobs.Put(f.ctx, "acme.k0", []byte("{}")) // a new revision of a kept key: still one key
	require.NoError(t, err)
	f.put(t, f.jobs, 60, 80)
	f.w.check(f.ctx)
	require.Empty(t, f.logs.String(), "120 keys: not a quarter more than 100")

	f.put(t, f.deliveries, 40, 45)
	f.w.check(f.ctx)
	require.Contains(t, f.logs.String(), "keys=125 ")
	require.Zero(t, f.limitSets, "a fixed limit stays")
}

// TestKeyWatchRaisesAnAdaptiveLimit: with HOOKSTREAM_MEMORY_LIMIT=auto the
// limit is the base plus twice the kept keys' estimated index, every round;
// a warning once that limit reaches half of the memory available, and
// again only once it has grown by a quarter.
func TestKeyWatchRaisesAnAdaptiveLimit(t *testing.T) {
	t.Parallel()
	const base = 1000
	f := newKeyWatchFixture(t, base)
	f.available = 0 // unknown: no warning

	f.w.check(f.ctx)
	require.Equal(t, int64(base), f.limit, "no keys yet")

	f.put(t, f.jobs, 0, 60)
	f.put(t, f.deliveries, 0, 40)
	f.w.check(f.ctx)
	require.Equal(t, int64(base+2*100*keyIndexBytes), f.limit)
	require.Empty(t, f.logs.String(), "memory available unknown")

	f.available = 2 * (base + 2*100*keyIndexBytes) // the limit is half of it
	f.w.check(f.ctx)
	require.Contains(t, f.logs.String(), "keys=100 ")
	require.Contains(t, f.logs.String(), fmt.Sprintf("memory_limit_bytes=%d ", base+2*100*keyIndexBytes))

	f.logs.Reset()
	f.put(t, f.jobs, 60, 80)
	f.w.check(f.ctx)
	require.Equal(t, int64(base+2*120*keyIndexBytes), f.limit)
	require.Empty(t, f.logs.String(), "the limit has grown by less than a quarter")

	f.put(t, f.deliveries, 40, 50)
	f.w.check(f.ctx)
	require.Equal(t, int64(base+2*130*keyIndexBytes), f.limit)
	require.Contains(t, f.logs.String(), "keys=130 ")
}

// availableMemory reads this machine's memory: more than nothing, and not
// more than /proc/meminfo's total.
func TestAvailableMemory(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Skip("no /proc/meminfo here")
	}
	var kib int64
	_, err = fmt.Sscanf(string(b), "MemTotal: %d kB", &kib)
	require.NoError(t, err)
	got := availableMemory()
	require.Positive(t, got)
	require.LessOrEqual(t, got, kib<<10)
}
