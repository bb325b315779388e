package latency_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/latency"
)

func TestPercentiles(t *testing.T) {
	t.Parallel()
	var h latency.Histogram
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * 100 * time.Microsecond) // 0.1 ms … 1 s
	}
	s := h.Summary()
	require.EqualValues(t, 10000, s.Count)
	within := func(got, want time.Duration) {
		t.Helper()
		require.InEpsilon(t, float64(want), float64(got), 0.01, "got %s want %s", got, want)
	}
	within(s.P50, 500*time.Millisecond)
	within(s.P90, 900*time.Millisecond)
	within(s.P99, 990*time.Millisecond)
	within(s.P999, 999*time.Millisecond)
	require.Equal(t, time.Second, s.Max)
}

func TestSmallAndHugeValues(t *testing.T) {
	t.Parallel()
	var h latency.Histogram
	h.Record(0)
	h.Record(3 * time.Microsecond)
	h.Record(5 * time.Hour)
	s := h.Summary()
	require.Equal(t, 3*time.Microsecond, s.P50)
	require.Equal(t, 5*time.Hour, s.Max)
}

func BenchmarkRecord(b *testing.B) {
	var h latency.Histogram
	for i := 0; b.Loop(); i++ {
		h.Record(time.Duration(i%100000) * time.Microsecond)
	}
}
