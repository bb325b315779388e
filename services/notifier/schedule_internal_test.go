package notifier

import (
	"net/http"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/require"
)

// retryDelay is the schedule's wait after n failed attempts, ±jitter, and
// false once the schedule is used up.
func TestRetryDelay(t *testing.T) {
	t.Parallel()
	schedule := []time.Duration{5 * time.Second, 5 * time.Minute, 2 * time.Hour}
	tests := []struct {
		name        string
		givenFailed int
		wantBase    time.Duration
		wantOK      bool
	}{
		{name: "no failure yet", givenFailed: 0},
		{name: "after the first attempt", givenFailed: 1, wantBase: 5 * time.Second, wantOK: true},
		{name: "after the second", givenFailed: 2, wantBase: 5 * time.Minute, wantOK: true},
		{name: "last wait", givenFailed: 3, wantBase: 2 * time.Hour, wantOK: true},
		{name: "schedule used up", givenFailed: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for range 200 {
				d, ok := retryDelay(schedule, 0.2, tt.givenFailed)
				require.Equal(t, tt.wantOK, ok)
				if !ok {
					require.Zero(t, d)
					continue
				}
				require.GreaterOrEqual(t, d, tt.wantBase*8/10)
				require.LessOrEqual(t, d, tt.wantBase*12/10)
			}
		})
	}
}

// The in-process tier sleeps through short waits and stops, leaving the
// wait in next, at the first one longer than InProcessMax; Retry-After
// stretches a wait up to MaxRetryAfter.
func TestInProcessBackOff(t *testing.T) {
	t.Parallel()
	cfg := Config{
		Schedule:      []time.Duration{time.Second, time.Minute},
		InProcessMax:  10 * time.Second,
		MaxRetryAfter: time.Hour,
	}
	tests := []struct {
		name            string
		givenFailed     int
		givenRetryAfter time.Duration
		wantBackOff     time.Duration
		wantNext        time.Duration
	}{
		{name: "short wait in process", givenFailed: 1, wantBackOff: time.Second},
		{name: "long wait is durable", givenFailed: 2, wantBackOff: backoff.Stop, wantNext: time.Minute},
		{name: "schedule used up", givenFailed: 3, wantBackOff: backoff.Stop},
		{name: "Retry-After within InProcessMax", givenFailed: 1, givenRetryAfter: 5 * time.Second, wantBackOff: 5 * time.Second},
		{name: "Retry-After beyond InProcessMax", givenFailed: 1, givenRetryAfter: 30 * time.Second, wantBackOff: backoff.Stop, wantNext: 30 * time.Second},
		{name: "Retry-After shorter than the schedule", givenFailed: 2, givenRetryAfter: time.Second, wantBackOff: backoff.Stop, wantNext: time.Minute},
		{name: "Retry-After capped", givenFailed: 1, givenRetryAfter: 48 * time.Hour, wantBackOff: backoff.Stop, wantNext: time.Hour},
		{name: "Retry-After after the schedule is used up", givenFailed: 3, givenRetryAfter: time.Second, wantBackOff: backoff.Stop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := cfg
			cfg.Jitter = 1e-9 // as good as none; zero means the default
			b := &inProcessBackOff{cfg: &cfg, last: func() (int, time.Duration, bool) { return tt.givenFailed, tt.givenRetryAfter, false }}
			require.InDelta(t, tt.wantBackOff, b.NextBackOff(), float64(time.Millisecond))
			require.InDelta(t, tt.wantNext, b.next, float64(time.Millisecond))
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		given string
		want  time.Duration
	}{
		{name: "absent", given: "", want: 0},
		{name: "seconds", given: "120", want: 2 * time.Minute},
		{name: "seconds with space", given: " 3 ", want: 3 * time.Second},
		{name: "zero", given: "0", want: 0},
		{name: "huge, not wrapped around", given: "18446744074", want: 24 * time.Hour},
		{name: "more digits than an int holds", given: "99999999999999999999", want: 24 * time.Hour},
		{name: "hugely negative", given: "-99999999999999999999", want: 0},
		{name: "negative", given: "-5", want: 0},
		{name: "HTTP date", given: now.Add(90 * time.Second).Format(http.TimeFormat), want: 90 * time.Second},
		{name: "HTTP date in the past", given: now.Add(-time.Hour).Format(http.TimeFormat), want: 0},
		{name: "garbage", given: "soon", want: 0},
		{name: "fraction", given: "1.5", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, parseRetryAfter(tt.given, now))
		})
	}
}

func TestFirstBytes(t *testing.T) {
	t.Parallel()
	require.Equal(t, "abc", firstBytes([]byte("abcdef"), 3))
	require.Equal(t, "ab", firstBytes([]byte("ab"), 3))
	require.Equal(t, "a\uFFFD", firstBytes([]byte("aé"), 2), "a cut rune is replaced, the log stays UTF-8")
}

// After a timeout or a 429 the next attempt waits at least SlowDownWait.
func TestSlowDownWait(t *testing.T) {
	t.Parallel()
	cfg := Config{Schedule: []time.Duration{time.Second}, Jitter: 1e-9, InProcessMax: time.Hour, SlowDownWait: time.Minute, MaxRetryAfter: time.Hour}
	for _, slow := range []bool{false, true} {
		b := &inProcessBackOff{cfg: &cfg, last: func() (int, time.Duration, bool) { return 1, 0, slow }}
		d := b.NextBackOff()
		if slow {
			require.Equal(t, time.Minute, d)
		} else {
			require.InDelta(t, float64(time.Second), float64(d), float64(time.Millisecond))
		}
	}
}
