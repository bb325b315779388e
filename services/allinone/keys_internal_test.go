package allinone

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/natstest"
)

// TestKeyWatchWarnsNearTheMemoryLimit: the kept keys of the job and
// delivery-log buckets are counted against the memory limit; a warning once
// they take half of it, and again only once they have grown by a quarter.
func TestKeyWatchWarnsNearTheMemoryLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, js := natstest.Start(t).Connect(t)
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))
	jobs, err := js.KeyValue(ctx, contract.BucketJobs)
	require.NoError(t, err)
	deliveries, err := js.KeyValue(ctx, contract.BucketDeliveries)
	require.NoError(t, err)
	put := func(kv jetstream.KeyValue, from, to int) {
		for i := from; i < to; i++ {
			_, err := kv.Put(ctx, fmt.Sprintf("acme.k%d", i), []byte("{}"))
			require.NoError(t, err)
		}
	}
	var logs bytes.Buffer
	limit := int64(math.MaxInt64)
	w := newKeyWatch(js, slog.New(slog.NewTextHandler(&logs, nil)))
	w.limit = func() int64 { return limit }

	put(jobs, 0, 60)
	put(deliveries, 0, 40)
	w.check(ctx)
	require.Empty(t, logs.String(), "no memory limit")

	limit = 100 * keyIndexBytes * 2 // 100 keys are half of it
	w.check(ctx)
	require.Contains(t, logs.String(), "keys=100 ")
	require.Contains(t, logs.String(), fmt.Sprintf("estimated_bytes=%d ", 100*keyIndexBytes))

	logs.Reset()
	_, err = jobs.Put(ctx, "acme.k0", []byte("{}")) // a new revision of a kept key: still one key
	require.NoError(t, err)
	put(jobs, 60, 80)
	w.check(ctx)
	require.Empty(t, logs.String(), "120 keys: not a quarter more than 100")

	put(deliveries, 40, 45)
	w.check(ctx)
	require.Contains(t, logs.String(), "keys=125 ")
}

// A data dir is one process's: a second app on it stops at once, naming
// the process that has it, before it touches the store or the keys.
func TestDataDirIsLocked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	unlock, err := lockDataDir(dir)
	require.NoError(t, err)
	_, err = lockDataDir(dir)
	require.ErrorContains(t, err, "in use by another hookstream")
	require.ErrorContains(t, err, strconv.Itoa(os.Getpid()))
	unlock()
	unlock, err = lockDataDir(dir)
	require.NoError(t, err, "free again once released")
	unlock()
}
