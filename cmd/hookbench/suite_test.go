package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The sustained-rate search goes up by half while rates hold, then tries
// halfway back; from a start too high for the machine it goes down by a
// third until one holds (it reported nothing before).
func TestSearchRates(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		from  int
		limit int // the highest rate that holds
		want  []int
	}{
		{name: "up, then halfway back", from: 300, limit: 600, want: []int{300, 450, 675, 562}},
		{name: "down from a start too high", from: 1500, limit: 700, want: []int{1500, 1000, 666}},
		{name: "nothing holds", from: 9, limit: 0, want: []int{9, 6, 4, 2, 1}},
		{name: "every step holds", from: 100, limit: 1 << 30, want: []int{100, 150, 225, 337, 505, 757}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var tried []int
			require.NoError(t, searchRates(tt.from, 6, func(rate int) (bool, error) {
				tried = append(tried, rate)
				return rate <= tt.limit, nil
			}))
			require.Equal(t, tt.want, tried)
		})
	}
}
