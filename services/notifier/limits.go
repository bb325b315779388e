package notifier

import (
	"net/url"
	"sync"
	"time"

	"github.com/hookstream/hookstream/shared/contract"
)

// limiter bounds what one notifier process sends to one endpoint: at most
// perEndpoint requests in flight and, when the endpoint has a rate_limit, at
// most that many requests per second (a token bucket). A delivery over a
// limit is not held in memory: it goes back to JetStream for a short wait.
// The limits are per process: with k notifier processes an endpoint sees up
// to k times them.
type limiter struct {
	perEndpoint     int
	breakerFailures int
	breakerCooldown time.Duration
	now             func() time.Time

	// slowAfter: see slow.go; 0 or less: no endpoint is slow.
	slowAfter time.Duration

	mu       sync.Mutex
	flight   map[string]int
	buckets  map[string]*bucket
	breakers map[string]*breaker
	// sent holds, for each key with requests out, when each started;
	// slowUntil, for each key that answered slowly, until
	// when it is slow (slow.go).
	sent      map[string][]time.Time
	slowUntil map[string]time.Time
	swept     time.Time // the last sweep
	// maxBreakers bounds breakers: the callback hosts of tenants' jobs,
	// each with one once it failed, are as many as tenants make them.
	maxBreakers int
}

// defaultMaxBreakers is a limiter's maxBreakers: about 20 MB of them.
const defaultMaxBreakers = 100_000

// Every sweepEvery, a limiter forgets the circuits that have seen no
// failure for staleBreaker, and the token buckets that are full again:
// without that, the callback hosts of a tenant's jobs, any number of them,
// and deleted endpoints would each keep an entry for good.
const (
	sweepEvery   = time.Minute
	staleBreaker = time.Hour
)

// Circuit breaker: after breakerFailures failed attempts in a row an
// endpoint gets no requests from this process for breakerCooldown; then one
// probe goes through, and its outcome closes the circuit or opens it again.
// Deliveries held back meanwhile wait in JetStream (parked, park.go) and
// lose no attempt.

type breaker struct {
	failures  int
	failedAt  time.Time // the last failure
	openUntil time.Time
	// probeUntil is set while a probe is out: no other request goes until
	// it reports, or until then (a probe that never reported: its delivery
	// turned out unsendable, or the process stopped).
	probeUntil time.Time
}

// probeTimeout bounds how long a probe may be out: longer than the longest
// attempt (endpoints.MaxAttemptTimeout) and its bookkeeping.
const probeTimeout = 2 * time.Minute

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(perEndpoint, breakerFailures int, breakerCooldown time.Duration, now func() time.Time) *limiter {
	return &limiter{perEndpoint: perEndpoint, breakerFailures: breakerFailures, breakerCooldown: breakerCooldown, now: now, flight: map[string]int{}, buckets: map[string]*bucket{}, breakers: map[string]*breaker{}, maxBreakers: defaultMaxBreakers,
		sent: map[string][]time.Time{}, slowUntil: map[string]time.Time{}}
}

// limitKey names what a delivery is limited by: its endpoint, or the host of
// a tenant's job callback URLs (per tenant, so that one tenant cannot use up
// a receiver host that others call too).
func limitKey(d *contract.Delivery) string {
	if d.EndpointID != "" {
		return endpointLimitKey(d.Tenant, d.EndpointID)
	}
	if u, err := url.Parse(d.URL); err == nil {
		return d.Tenant + "/cb/" + u.Host
	}
	return d.Tenant + "/cb/" + d.URL
}

// endpointLimitKey is limitKey of an endpoint's deliveries.
func endpointLimitKey(tenant, id string) string { return tenant + "/" + id }

// acquire takes a slot and a token; when it cannot, it returns how long to
// wait before trying again. release must follow a successful acquire.
func (l *limiter) acquire(key string, ratePerSec int) (ok bool, wait time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	br := l.breakers[key]
	if wait, held := l.heldLocked(br); held {
		return false, wait
	}
	if l.flight[key] >= l.perEndpoint {
		return false, 25 * time.Millisecond
	}
	if ok, wait := l.tokenLocked(key, ratePerSec); !ok {
		return false, wait
	}
	if br != nil && br.failures >= l.breakerFailures {
		br.probeUntil = l.now().Add(probeTimeout) // half-open: this request is the probe
	}
	l.flight[key]++
	return true, 0
}

// token takes a token for one more request of a slot acquired already (an
// in-process retry): false if the endpoint's rate allows none now.
func (l *limiter) token(key string, ratePerSec int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ok, _ := l.tokenLocked(key, ratePerSec)
	return ok
}

// tokenLocked takes a token of the endpoint's bucket, if its rate is
// limited; when there is none, it says how long until there is. l.mu is
// held.
func (l *limiter) tokenLocked(key string, ratePerSec int) (bool, time.Duration) {
	if ratePerSec <= 0 {
		return true, 0
	}
	b := l.buckets[key]
	now := l.now()
	if b == nil {
		b = &bucket{tokens: float64(ratePerSec), at: now}
		l.buckets[key] = b
	}
	b.tokens = min(float64(ratePerSec), b.tokens+now.Sub(b.at).Seconds()*float64(ratePerSec))
	b.at = now
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / float64(ratePerSec) * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

// report feeds an attempt's outcome to the endpoint's circuit breaker.
func (l *limiter) report(key string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.breakers[key]
	if ok {
		delete(l.breakers, key) // closed
		return
	}
	now := l.now()
	if b == nil {
		if len(l.breakers) >= l.maxBreakers {
			l.makeRoomLocked(now)
		}
		b = &breaker{}
		l.breakers[key] = b
	}
	b.failures++
	b.failedAt = now
	b.probeUntil = time.Time{}
	if b.failures >= l.breakerFailures {
		b.openUntil = now.Add(l.breakerCooldown)
	}
	if now.Sub(l.swept) >= sweepEvery {
		l.sweepLocked(now)
	}
}

// makeRoomLocked forgets closed circuits (their failures in a row are
// forgotten: an endpoint failing on takes longer to open), then open ones
// that hold nothing back now (their cool-down over, no probe out), until a
// tenth of maxBreakers is free: one pass over the map makes room for many
// new circuits, not one. l.mu is held.
func (l *limiter) makeRoomLocked(now time.Time) {
	room := l.maxBreakers - max(l.maxBreakers/10, 1)
	for _, forget := range []func(*breaker) bool{
		func(b *breaker) bool { return b.failures < l.breakerFailures },
		func(b *breaker) bool { return !now.Before(b.openUntil) && !now.Before(b.probeUntil) },
	} {
		for key, b := range l.breakers {
			if len(l.breakers) <= room {
				return
			}
			if forget(b) {
				delete(l.breakers, key)
			}
		}
	}
}

// sweepLocked forgets stale circuits and full buckets; l.mu is held.
func (l *limiter) sweepLocked(now time.Time) {
	l.swept = now
	for key, b := range l.breakers {
		if now.Sub(b.failedAt) >= staleBreaker && !now.Before(b.openUntil) && !now.Before(b.probeUntil) {
			delete(l.breakers, key)
		}
	}
	for key, b := range l.buckets {
		if now.Sub(b.at) >= time.Second { // refilled: as a new one
			delete(l.buckets, key)
		}
	}
	for key, until := range l.slowUntil {
		if !now.Before(until) {
			delete(l.slowUntil, key)
		}
	}
}

// circuitWait reports whether the endpoint's circuit is open now, or its
// probe under way, and how long until the next request may go.
func (l *limiter) circuitWait(key string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.heldLocked(l.breakers[key])
}

// heldLocked is circuitWait of breaker b; l.mu is held.
func (l *limiter) heldLocked(b *breaker) (time.Duration, bool) {
	if b == nil || b.failures < l.breakerFailures {
		return 0, false
	}
	now := l.now()
	switch {
	case now.Before(b.openUntil):
		return b.openUntil.Sub(now), true
	case now.Before(b.probeUntil):
		return time.Second, true // one probe at a time
	}
	return 0, false
}

// circuitOpen reports whether the endpoint's circuit is open now.
func (l *limiter) circuitOpen(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.breakers[key]
	return b != nil && b.failures >= l.breakerFailures && l.now().Before(b.openUntil)
}

// probeUnsent ends the endpoint's probe, if one is out, without an outcome:
// its delivery turned out unsendable, so the next one may probe.
func (l *limiter) probeUnsent(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.breakers[key]; b != nil {
		b.probeUntil = time.Time{}
	}
}

// forget closes key's circuit and ends its slowness: its endpoint starts
// afresh (endpointChanged).
func (l *limiter) forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.breakers, key)
	delete(l.slowUntil, key)
}

func (l *limiter) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.flight[key]--; l.flight[key] <= 0 {
		delete(l.flight, key)
	}
}
