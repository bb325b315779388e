package intake

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A tenant's rate allows a burst of one second's worth, then a request
// every 1/rate, with the time to wait for the next token; tenants have a
// bucket each.
func TestTenantRateBurstIsOneSecondsWorth(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	a := newAdmission(64, 3, func() time.Time { return now })
	for i := range 3 {
		ok, _ := a.allow("acme")
		require.True(t, ok, "request %d of the burst", i+1)
	}
	ok, wait := a.allow("acme")
	require.False(t, ok, "a 4th within the second")
	require.InDelta(t, float64(time.Second/3), float64(wait), float64(time.Millisecond))
	ok, _ = a.allow("other")
	require.True(t, ok, "other tenants have their own bucket")
	now = now.Add(time.Second/3 + time.Millisecond)
	ok, _ = a.allow("acme")
	require.True(t, ok, "a token a third of a second later")
	ok, _ = a.allow("acme")
	require.False(t, ok)
}
