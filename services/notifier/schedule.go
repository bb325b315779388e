package notifier

import (
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// retryDelay is the wait after the given number of failed attempts, with
// jitter, and false when the schedule is used up.
func retryDelay(schedule []time.Duration, jitter float64, failed int) (time.Duration, bool) {
	if failed < 1 || failed > len(schedule) {
		return 0, false
	}
	d := schedule[failed-1]
	return time.Duration(float64(d) * (1 - jitter + 2*jitter*rand.Float64())), true
}

// inProcessBackOff is the backoff.BackOff of the short, in-process tier: it
// yields the scheduled wait while that wait is short enough to sleep
// through, and backoff.Stop once it is not.
type inProcessBackOff struct {
	cfg *Config
	// last is the delivery's latest outcome: how many attempts failed, the
	// receiver's Retry-After, if any, and whether the receiver asked to slow
	// down (it timed out or answered 429).
	last func() (failed int, retryAfter time.Duration, slowDown bool)
	// next is the wait that made it stop, for the durable tier.
	next time.Duration
}

var _ backoff.BackOff = (*inProcessBackOff)(nil)

func (b *inProcessBackOff) NextBackOff() time.Duration {
	d, ok := b.wait()
	if !ok {
		return backoff.Stop
	}
	if d > b.cfg.InProcessMax {
		b.next = d
		return backoff.Stop
	}
	return d
}

func (b *inProcessBackOff) Reset() {}

// wait is the schedule's wait before the next attempt, stretched by the
// receiver's signals; false when the schedule has no more attempts.
func (b *inProcessBackOff) wait() (time.Duration, bool) {
	failed, retryAfter, slowDown := b.last()
	d, ok := retryDelay(b.cfg.Schedule, b.cfg.Jitter, failed)
	if !ok {
		return 0, false
	}
	if retryAfter > d { // honour the receiver's wish, within bounds
		d = min(retryAfter, max(b.cfg.MaxRetryAfter, d))
	}
	if slowDown { // a timeout or a 429: the next attempt waits at least SlowDownWait
		d = max(d, b.cfg.SlowDownWait)
	}
	return d, true
}

// stopInProcess ends the in-process tier early (an open circuit): the next
// attempt is the durable tier's, at the schedule's next wait.
func (b *inProcessBackOff) stopInProcess() {
	if d, ok := b.wait(); ok {
		b.next = d
	}
}
