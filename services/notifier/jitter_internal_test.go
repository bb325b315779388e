package notifier

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The default jitter is ±20 % (DESIGN.md), and retryDelay spreads a wait
// over all of [0.8d, 1.2d]: samples differ, and fall in both its outer
// tenths, below 0.9d and above 1.1d.
func TestRetryDelayJitter(t *testing.T) {
	t.Parallel()
	require.Equal(t, 0.2, DefaultJitter)
	require.Equal(t, 0.2, Config{}.WithDefaults().Jitter)
	const d = time.Minute
	seen := map[time.Duration]bool{}
	low, high := false, false
	for range 1000 {
		got, ok := retryDelay([]time.Duration{d}, DefaultJitter, 1)
		require.True(t, ok)
		require.GreaterOrEqual(t, got, d*8/10)
		require.LessOrEqual(t, got, d*12/10)
		seen[got] = true
		low = low || got < d*9/10
		high = high || got > d*11/10
	}
	require.Greater(t, len(seen), 100, "distinct waits among 1000")
	require.True(t, low, "no wait below 0.9d")
	require.True(t, high, "no wait above 1.1d")
}
