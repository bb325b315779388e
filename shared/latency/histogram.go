// Package latency records durations in an HDR-style histogram: log-linear
// buckets with about 1 % relative precision from 1 µs to about an hour, in a
// fixed amount of memory, safe for concurrent use.
package latency

import (
	"math/bits"
	"sync"
	"time"
)

const (
	subBits    = 7 // 128 sub-buckets per power of two: < 1 % error
	subBuckets = 1 << subBits
	maxPow     = 32 // 2^32 µs ≈ 71 minutes
)

// Histogram counts durations.
type Histogram struct {
	mu     sync.Mutex
	counts [maxPow + 1][subBuckets]uint64
	n      uint64
	sum    time.Duration
	max    time.Duration
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	us := uint64(max(d.Microseconds(), 0))
	p, s := index(us)
	h.mu.Lock()
	h.counts[p][s]++
	h.n++
	h.sum += d
	h.max = max(h.max, d)
	h.mu.Unlock()
}

func index(us uint64) (int, int) {
	if us < subBuckets {
		return 0, int(us)
	}
	p := bits.Len64(us) - subBits // ≥ 1
	if p > maxPow {
		return maxPow, subBuckets - 1
	}
	return p, int(us >> (p - 1) & (subBuckets - 1))
}

func value(p, s int) time.Duration {
	if p == 0 {
		return time.Duration(s) * time.Microsecond
	}
	return time.Duration((uint64(subBuckets)|uint64(s))<<(p-1)) * time.Microsecond
}

// Count is the number of recorded durations.
func (h *Histogram) Count() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// Summary is a snapshot of the histogram.
type Summary struct {
	Count uint64        `json:"count"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p999_ns"`
	Max   time.Duration `json:"max_ns"`
}

// Summary returns count, mean, percentiles and max.
func (h *Histogram) Summary() Summary {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := Summary{Count: h.n, Max: h.max}
	if h.n == 0 {
		return out
	}
	out.Mean = h.sum / time.Duration(h.n)
	targets := []struct {
		q   float64
		dst *time.Duration
	}{{0.5, &out.P50}, {0.9, &out.P90}, {0.99, &out.P99}, {0.999, &out.P999}}
	var seen uint64
	ti := 0
	for p := 0; p <= maxPow && ti < len(targets); p++ {
		for s := range subBuckets {
			seen += h.counts[p][s]
			for ti < len(targets) && float64(seen) >= targets[ti].q*float64(h.n) {
				*targets[ti].dst = min(value(p, s), h.max)
				ti++
			}
		}
	}
	return out
}
