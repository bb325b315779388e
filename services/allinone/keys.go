package allinone

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
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

// keyWatch follows the keys kept in the job and delivery-log buckets. The
// server keeps an index entry per key for as long as the key is kept
// (HOOKSTREAM_JOB_RETENTION, HOOKSTREAM_DELIVERY_RETENTION): a sustained
// rate keeps rate × retention keys, and a live heap above the soft memory
// limit has the GC take up to half the CPU (docs/performance.md, findings
// 17 and 19).
//
// With an adaptive limit (base > 0, HOOKSTREAM_MEMORY_LIMIT=auto) it sets
// the limit to base plus twice the estimated index, the room Go's GC gives
// a live heap by default, and warns when that limit reaches half of the
// memory the process may have. With a fixed limit it warns when the index
// takes half of the limit. Either warns again once its figure has grown by
// a quarter.
type keyWatch struct {
	js     jetstream.JetStream
	logger *slog.Logger
	// base is the adaptive limit's base in bytes; 0: the limit is fixed.
	base int64
	// setLimit is debug.SetMemoryLimit.
	setLimit func(int64) int64
	// available returns the memory the process may have in bytes: its
	// cgroup's limit or the host's memory, whichever is less (0: unknown).
	available func() int64
	// warned is the figure last warned about.
	warned int64
}

func newKeyWatch(js jetstream.JetStream, base int64, logger *slog.Logger) *keyWatch {
	return &keyWatch{js: js, logger: logger, base: base, setLimit: debug.SetMemoryLimit, available: availableMemory}
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
	var keys int64
	for _, bucket := range []string{contract.BucketJobs, contract.BucketDeliveries} {
		stream, err := w.js.Stream(ctx, "KV_"+bucket)
		if err != nil {
			return // shutting down, or not there yet: the next round
		}
		keys += int64(stream.CachedInfo().State.NumSubjects)
	}
	estimate := keys * keyIndexBytes
	if w.base > 0 {
		limit := w.base + 2*estimate
		if prev := w.setLimit(limit); prev != limit {
			w.logger.Debug("memory limit", "bytes", limit, "keys", keys)
		}
		if !w.grown(limit, w.available()/2) {
			return
		}
		w.logger.Warn("kept job records and delivery logs have raised the memory limit to half of the memory available or more; shorten HOOKSTREAM_JOB_RETENTION and HOOKSTREAM_DELIVERY_RETENTION, or give the process more memory",
			"keys", keys, "estimated_bytes", estimate, "memory_limit_bytes", limit, "memory_available_bytes", w.available())
		return
	}
	limit := w.setLimit(-1)
	if limit == math.MaxInt64 || !w.grown(estimate, limit/2) {
		return
	}
	w.logger.Warn("kept job records and delivery logs take much of the memory limit; raise HOOKSTREAM_MEMORY_LIMIT or shorten HOOKSTREAM_JOB_RETENTION and HOOKSTREAM_DELIVERY_RETENTION",
		"keys", keys, "estimated_bytes", estimate, "memory_limit_bytes", limit)
}

// grown reports whether figure has reached threshold (above zero) and
// grown by a quarter since the last warning, which it then records.
func (w *keyWatch) grown(figure, threshold int64) bool {
	if threshold <= 0 || figure < threshold || figure < w.warned+w.warned/4 {
		return false
	}
	w.warned = figure
	return true
}

// availableMemory is the least of the cgroup's memory limit (v2 or v1) and
// the host's memory, in bytes; 0 when none can be read.
func availableMemory() int64 {
	var least int64
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64) // "max": no limit
		if err == nil && n > 0 && (least == 0 || n < least) {
			least = n
		}
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
			if !ok {
				continue
			}
			kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if n := kib << 10; err == nil && n > 0 && (least == 0 || n < least) {
				least = n
			}
			break
		}
	}
	return least
}
