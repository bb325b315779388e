package allinone

import (
	"context"
	"log/slog"
	"math"
	"runtime/debug"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/contract"
)

// keyIndexBytes is about what the embedded NATS server keeps in memory for
// each key of a key-value bucket, whatever its age: the file store indexes
// every subject of a stream, and each job record and each delivery's
// attempt log is a key (a subject) of its own until its bucket's TTL
// removes it. Measured at 1,000 jobs/s (docs/performance.md, finding 17):
// 108–142 bytes per key, about 240 per job for its record and its attempt log.
const keyIndexBytes = 120

// keyWatchEvery is how often the key count is read.
const keyWatchEvery = time.Minute

// keyWatch warns when the keys kept in the job and delivery-log buckets
// take an estimated half of the process's memory limit or more. The server
// keeps an index entry per key for as long as the key is kept
// (HOOKSTREAM_JOB_RETENTION, HOOKSTREAM_DELIVERY_RETENTION): a sustained
// rate keeps rate × retention keys, and a live heap above the soft memory
// limit has the GC take up to half the CPU. It warns again when the
// estimate has grown by a quarter.
type keyWatch struct {
	js     jetstream.JetStream
	logger *slog.Logger
	// limit returns the memory limit in bytes (math.MaxInt64: none).
	limit func() int64
	// warned is the estimate last warned about.
	warned int64
}

func newKeyWatch(js jetstream.JetStream, logger *slog.Logger) *keyWatch {
	return &keyWatch{js: js, logger: logger, limit: func() int64 { return debug.SetMemoryLimit(-1) }}
}

// Run reads the key counts at once and then every interval until ctx ends.
func (w *keyWatch) Run(ctx context.Context) error {
	t := time.NewTicker(keyWatchEvery)
	defer t.Stop()
	for {
		w.check(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (w *keyWatch) check(ctx context.Context) {
	limit := w.limit()
	if limit <= 0 || limit == math.MaxInt64 {
		return
	}
	var keys int64
	for _, bucket := range []string{contract.BucketJobs, contract.BucketDeliveries} {
		stream, err := w.js.Stream(ctx, "KV_"+bucket)
		if err != nil {
			return // shutting down, or not there yet: the next round
		}
		keys += int64(stream.CachedInfo().State.NumSubjects)
	}
	estimate := keys * keyIndexBytes
	if estimate < limit/2 || estimate < w.warned+w.warned/4 {
		return
	}
	w.warned = estimate
	w.logger.Warn("kept job records and delivery logs take much of the memory limit; give the process more memory (with HOOKSTREAM_MEMORY_LIMIT=auto) or raise HOOKSTREAM_MEMORY_LIMIT, or shorten HOOKSTREAM_JOB_RETENTION and HOOKSTREAM_DELIVERY_RETENTION",
		"keys", keys, "estimated_bytes", estimate, "memory_limit_bytes", limit)
}
