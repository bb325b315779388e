package notifier

import (
	"slices"
	"time"
)

// Slow endpoints. A receiver that takes seconds to answer holds a worker of
// the shared delivery consumer, or a direct slot of fan-out, for as long:
// a dozen of them, each at its EndpointConcurrency, took every worker, and
// the webhooks of healthy endpoints waited behind them (invariant 5). Once
// an endpoint is slow (an attempt took slowAfter or longer, or one of its
// requests has been out that long without an answer) its deliveries are
// parked and sent by its own drain (park.go), whose workers are its own,
// and a round of in-process retries on a shared worker ends; until its
// requests answer sooner again. The requests that make it slow, however
// many start at once, step aside from their shared worker or direct slot
// once their round has taken slowAfter (deliverWithinLimits, bus.StepAside),
// so that the next deliveries do not wait for their answers. The limiter
// keeps this per process, as it keeps circuits.

// slowAfter is how long an attempt may take before its endpoint is slow:
// a receiver is expected to answer at once, and work after it answers.
const slowAfter = 2 * time.Second

// slowHold is how long an endpoint stays slow after a slow attempt, unless
// a quicker one, with none of its requests out for long, ends it sooner.
const slowHold = time.Minute

// slow reports whether key's endpoint is slow now.
func (l *limiter) slow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.slowLocked(key)
}

// held reports whether a new delivery to key's endpoint is parked at once:
// its circuit is open (or its probe out), or it is slow.
func (l *limiter) held(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, open := l.heldLocked(l.breakers[key])
	return open || l.slowLocked(key)
}

// slowLocked is slow; l.mu is held.
func (l *limiter) slowLocked(key string) bool {
	if l.slowAfter <= 0 {
		return false
	}
	now := l.now()
	if until, ok := l.slowUntil[key]; ok && now.Before(until) {
		return true
	}
	return l.outLongLocked(key, now)
}

// outLongLocked tells whether a request to key has been out for slowAfter
// or longer without an answer; l.mu is held.
func (l *limiter) outLongLocked(key string, now time.Time) bool {
	for _, start := range l.sent[key] { // at most the endpoint's limit
		if now.Sub(start) >= l.slowAfter {
			return true
		}
	}
	return false
}

// sending records that a request to key's endpoint starts at start; its
// answer (or its failure) must follow with answered.
func (l *limiter) sending(key string, start time.Time) {
	if l.slowAfter <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent[key] = append(l.sent[key], start)
}

// answered records that the request to key that started at start ended
// after took: slowAfter or longer makes the endpoint slow for slowHold; a
// quicker answer ends that, unless another request has been out that long.
func (l *limiter) answered(key string, start time.Time, took time.Duration) {
	if l.slowAfter <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	out := l.sent[key]
	if i := slices.Index(out, start); i >= 0 {
		out = slices.Delete(out, i, i+1)
	}
	if len(out) == 0 {
		delete(l.sent, key)
	} else {
		l.sent[key] = out
	}
	switch {
	case took >= l.slowAfter:
		l.slowUntil[key] = now.Add(slowHold)
	case !l.outLongLocked(key, now):
		delete(l.slowUntil, key)
	}
	if now.Sub(l.swept) >= sweepEvery {
		l.sweepLocked(now) // forgets the slow that are no longer
	}
}
