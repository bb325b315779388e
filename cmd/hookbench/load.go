package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookstream/hookstream/shared/latency"
)

// result is what one request came to: an HTTP status (or 0 with an error).
type result struct {
	status int
	err    error
}

// loadRun is one load run: a request function driven open (constant rate) or
// closed (as fast as conns workers go) for a duration.
type loadRun struct {
	rate     int // requests per second; 0: closed model
	conns    int // workers: requests in flight at most
	duration time.Duration
	// do sends request i, due at due: when the open model's schedule had
	// it, or when a closed model's worker started it.
	do       func(ctx context.Context, i int, due time.Time) result
	progress func(sent, ok uint64)

	latency  latency.Histogram
	sent     atomic.Uint64
	ok       atomic.Uint64
	overflow atomic.Uint64 // open model: not sent, the queue full

	mu       sync.Mutex
	statuses map[string]uint64
	perSec   []uint64
}

func (r *loadRun) record(start time.Time, res result) {
	r.latency.Record(time.Since(start))
	key := statusKey(res)
	if res.err == nil && res.status >= 200 && res.status < 300 {
		r.ok.Add(1)
	}
	r.mu.Lock()
	r.statuses[key]++
	r.mu.Unlock()
}

func statusKey(res result) string {
	if res.err != nil {
		return "error"
	}
	return itoa(res.status)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// execute drives the load and returns when the duration is over and every
// request sent has finished.
func (r *loadRun) execute(ctx context.Context) {
	r.statuses = map[string]uint64{}
	ctx, cancel := context.WithTimeout(ctx, r.duration)
	defer cancel()
	stopTicker := r.tick(ctx)
	defer stopTicker()
	var wg sync.WaitGroup
	if r.rate == 0 {
		for range r.conns {
			wg.Go(func() {
				for ctx.Err() == nil {
					i := int(r.sent.Add(1))
					start := time.Now()
					r.record(start, r.do(context.WithoutCancel(ctx), i, start))
				}
			})
		}
		wg.Wait()
		return
	}
	// Requests are handed to conns long-lived workers (a goroutine per
	// request grew its stack afresh each time, 8 % of hookbench's CPU at
	// 4,000 requests a second). A request due while all conns are busy waits
	// in a queue, and its latency counts from when it was due, so queueing
	// shows as latency (coordinated omission) and the server gets the whole
	// offered rate. Until finding 16 of docs/performance.md such a request
	// was not sent, which hid the slowest moments from the figures. Only a
	// queue of maxQueued seconds of requests overflows.
	work := make(chan request, max(r.conns, r.rate*maxQueued))
	for range r.conns {
		wg.Go(func() {
			for req := range work {
				r.record(req.due, r.do(context.WithoutCancel(ctx), req.n, req.due))
			}
		})
	}
	defer wg.Wait()
	defer close(work)
	interval := time.Second / time.Duration(r.rate)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	start := time.Now()
	for i := 0; ; i++ {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		select {
		case work <- request{due: due, n: int(r.sent.Load()) + 1}:
			r.sent.Add(1)
		default:
			r.overflow.Add(1)
		}
	}
}

// maxQueued is how many seconds of the open model's requests may wait for a
// worker before more are not sent.
const maxQueued = 10

// request is one request of the open model: when it was due, and its number.
type request struct {
	due time.Time
	n   int
}

// tick reports progress every second and keeps the per-second counts.
func (r *loadRun) tick(ctx context.Context) func() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last uint64
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				ok := r.ok.Load()
				r.mu.Lock()
				r.perSec = append(r.perSec, ok-last)
				r.mu.Unlock()
				last = ok
				if r.progress != nil {
					r.progress(r.sent.Load(), ok)
				}
			}
		}
	}()
	return func() { <-done }
}
