package notifier

import "time"

// Slow endpoints. A receiver that takes seconds to answer holds a worker of
// the shared delivery consumer, or a direct slot of fan-out, for as long:
// a dozen of them, each at its EndpointConcurrency, took every worker, and
// the webhooks of healthy endpoints waited behind them (invariant 5). Once
// an endpoint is slow (an attempt took slowAfter or longer, or its requests
// in flight have had no answer for that long) its deliveries are parked and
// sent by its own drain (park.go), whose workers are its own, until one of
// its attempts answers sooner again. The limiter keeps this per process,
// as it keeps circuits.

// slowAfter is how long an attempt may take before its endpoint is slow:
// a receiver is expected to answer at once, and work after it answers.
const slowAfter = 2 * time.Second

// slowHold is how long an endpoint stays slow after a slow attempt, unless
// a quicker one ends it sooner.
const slowHold = time.Minute

// slow reports whether key's endpoint is slow now.
func (l *limiter) slow(key string) bool {
	if l.slowAfter <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if until, ok := l.slowUntil[key]; ok && now.Before(until) {
		return true
	}
	since, busy := l.busySince[key]
	return busy && now.Sub(since) >= l.slowAfter
}

// took records how long an attempt to key's endpoint took: slowAfter or
// longer makes it slow for slowHold; less, not slow any more.
func (l *limiter) took(key string, d time.Duration) {
	if l.slowAfter <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if d >= l.slowAfter {
		l.slowUntil[key] = now.Add(slowHold)
	} else {
		delete(l.slowUntil, key)
	}
	if _, busy := l.busySince[key]; busy {
		l.busySince[key] = now // an answer came
	}
	if now.Sub(l.swept) >= sweepEvery {
		l.sweepLocked(now) // forgets the slow that are no longer
	}
}
