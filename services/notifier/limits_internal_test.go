package notifier

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLimiterConcurrency(t *testing.T) {
	t.Parallel()
	l := newLimiter(2, 10, breakerCooldown, time.Now)
	ok1, _ := l.acquire("a", 0)
	ok2, _ := l.acquire("a", 0)
	ok3, wait := l.acquire("a", 0)
	require.True(t, ok1 && ok2)
	require.False(t, ok3)
	require.Positive(t, wait)
	okOther, _ := l.acquire("b", 0)
	require.True(t, okOther, "another endpoint is not affected")
	l.release("a")
	ok4, _ := l.acquire("a", 0)
	require.True(t, ok4)
}

func TestLimiterRate(t *testing.T) {
	t.Parallel()
	now := time.Unix(0, 0)
	l := newLimiter(100, breakerFailures, breakerCooldown, func() time.Time { return now })
	for range 5 {
		ok, _ := l.acquire("a", 5)
		require.True(t, ok)
		l.release("a")
	}
	ok, wait := l.acquire("a", 5)
	require.False(t, ok, "the bucket of 5 is empty")
	require.InDelta(t, float64(200*time.Millisecond), float64(wait), float64(time.Millisecond))
	now = now.Add(200 * time.Millisecond)
	ok, _ = l.acquire("a", 5)
	require.True(t, ok, "one token refilled after 1/5 s")
}

const (
	breakerFailures = 10
	breakerCooldown = DefaultBreakerCooldown
)

func TestCircuitBreaker(t *testing.T) {
	t.Parallel()
	now := time.Unix(0, 0)
	l := newLimiter(100, breakerFailures, breakerCooldown, func() time.Time { return now })
	for range breakerFailures - 1 {
		l.report("a", false)
	}
	ok, _ := l.acquire("a", 0)
	require.True(t, ok, "still closed below the threshold")
	l.release("a")
	l.report("a", false)
	ok, wait := l.acquire("a", 0)
	require.False(t, ok, "open after enough failures in a row")
	require.Equal(t, breakerCooldown, wait)
	okOther, _ := l.acquire("b", 0)
	require.True(t, okOther, "other endpoints are not affected")

	now = now.Add(breakerCooldown)
	probe, _ := l.acquire("a", 0)
	require.True(t, probe, "half-open: one probe")
	second, _ := l.acquire("a", 0)
	require.False(t, second, "only one probe at a time")
	l.release("a")
	l.report("a", false)
	ok, _ = l.acquire("a", 0)
	require.False(t, ok, "a failed probe opens it again")

	now = now.Add(breakerCooldown)
	probe, _ = l.acquire("a", 0)
	require.True(t, probe)
	l.release("a")
	l.report("a", true)
	for range 5 {
		ok, _ = l.acquire("a", 0)
		require.True(t, ok, "a successful probe closes it")
		l.release("a")
	}
}

// A probe that never reports (its delivery turned out unsendable, say)
// holds the circuit half-open only for probeTimeout; a probe refused by the
// endpoint's other limits is not taken at all.
func TestCircuitBreakerProbeThatNeverReports(t *testing.T) {
	t.Parallel()
	now := time.Unix(0, 0)
	l := newLimiter(1, breakerFailures, breakerCooldown, func() time.Time { return now })
	for range breakerFailures {
		l.report("a", false)
	}
	now = now.Add(breakerCooldown)
	probe, _ := l.acquire("a", 0)
	require.True(t, probe)
	l.release("a") // no report
	_, held := l.circuitWait("a")
	require.True(t, held, "the probe is out")
	now = now.Add(probeTimeout)
	_, held = l.circuitWait("a")
	require.False(t, held, "a probe that never reported is given up")
	probe, _ = l.acquire("a", 0)
	require.True(t, probe, "another probe goes")

	busy, _ := l.acquire("a", 0)
	require.False(t, busy, "at its concurrency limit")
	l.release("a")
	l.report("a", true)
	ok, _ := l.acquire("a", 0)
	require.True(t, ok, "closed after the probe succeeded")
	l.release("a")
}

// Circuits that saw no failure for an hour, and token buckets full again,
// are forgotten: a tenant's jobs may call back any number of hosts.
func TestLimiterForgetsStaleEntries(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	l := newLimiter(100, breakerFailures, breakerCooldown, func() time.Time { return now })
	for i := range 1000 {
		key := "acme/cb/host" + strconv.Itoa(i)
		ok, _ := l.acquire(key, 5)
		require.True(t, ok)
		l.release(key)
		l.report(key, false)
	}
	l.report("acme/ep_busy", false)
	require.Equal(t, 1001, len(l.breakers))
	require.Equal(t, 1000, len(l.buckets))

	now = now.Add(staleBreaker)
	l.report("acme/ep_busy", false) // still failing: kept
	require.Equal(t, 1, len(l.breakers))
	require.Equal(t, 0, len(l.buckets))
	require.Contains(t, l.breakers, "acme/ep_busy")
}

// The circuits a limiter keeps are bounded: every callback host of every
// tenant's jobs that failed once had one for an hour, 175 MiB for a
// million. Open circuits are kept over closed ones.
func TestLimiterBoundsItsCircuits(t *testing.T) {
	t.Parallel()
	l := newLimiter(8, 2, breakerCooldown, time.Now)
	l.maxBreakers = 100
	l.report("open", false)
	l.report("open", false)
	for i := range 99 {
		l.report("host-"+strconv.Itoa(i), false)
	}
	require.Len(t, l.breakers, 100)
	l.report("one-more", false)
	// A tenth is made free at once, so that the next new circuits do not
	// each go over the whole map under the lock.
	require.Len(t, l.breakers, 91)
	require.True(t, l.circuitOpen("open"), "an open circuit is kept")
	for i := range 1000 {
		l.report("more-"+strconv.Itoa(i), false)
	}
	require.LessOrEqual(t, len(l.breakers), 100)
}

// An endpoint is slow while one of its requests has been out for slowAfter
// without an answer, and for slowHold after an attempt took that long,
// until a quicker answer with none of its requests out that long.
func TestLimiterTellsSlowEndpoints(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	l := newLimiter(8, 10, time.Minute, func() time.Time { return now })
	l.slowAfter = 2 * time.Second
	const key = "acme/ep_1"
	require.False(t, l.slow(key))
	hung := now
	l.sending(key, hung)
	now = now.Add(time.Second)
	require.False(t, l.slow(key), "out for less than slowAfter")
	// Quick answers of other requests meanwhile do not hide the one hung.
	for range 3 {
		start := now
		l.sending(key, start)
		now = now.Add(100 * time.Millisecond)
		l.answered(key, start, 100*time.Millisecond)
	}
	now = hung.Add(2 * time.Second)
	require.True(t, l.slow(key), "a request out for slowAfter")
	start := now
	l.sending(key, start)
	l.answered(key, start, time.Millisecond)
	require.True(t, l.slow(key), "a quick answer with one hung still out")
	l.answered(key, hung, now.Sub(hung))
	require.True(t, l.slow(key), "its attempt took slowAfter")
	now = now.Add(slowHold - time.Second)
	require.True(t, l.slow(key))
	now = now.Add(time.Second)
	require.False(t, l.slow(key), "slowHold is over")
	l.sending(key, now)
	l.answered(key, now, 3*time.Second)
	require.True(t, l.slow(key))
	l.sending(key, now)
	l.answered(key, now, 100*time.Millisecond)
	require.False(t, l.slow(key), "a quick answer, none out for long, ends it")
	require.Empty(t, l.sent, "nothing kept for an endpoint with nothing out")
}
