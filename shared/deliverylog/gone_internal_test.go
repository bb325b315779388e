package deliverylog

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// The log keeps no old key once its retention has passed since the record
// and its oldest write is later than that (found by review: a record that an
// older notifier wrote within the retention after the record was missed),
// both by more than the clocks' margin.
func TestOldKeysExpired(t *testing.T) {
	t.Parallel()
	since := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	const day = 24 * time.Hour
	tests := []struct {
		name string
		now  time.Time
		log  jetstream.StreamState
		want bool
	}{
		{name: "within the retention", now: since.Add(7 * day), log: jetstream.StreamState{Msgs: 5, FirstTime: since.Add(day)}},
		{name: "within the retention, empty", now: since.Add(7 * day)},
		{name: "retention passed, empty", now: since.Add(8*day + time.Minute), want: true},
		{name: "retention passed, oldest write within it", now: since.Add(8*day + time.Minute), log: jetstream.StreamState{Msgs: 5, FirstTime: since.Add(time.Minute)}},
		{name: "twice the retention, oldest write after the first", now: since.Add(16*day + time.Minute), log: jetstream.StreamState{Msgs: 5, FirstTime: since.Add(8*day + time.Minute)}, want: true},
		{name: "oldest write within the margin", now: since.Add(16*day + time.Minute), log: jetstream.StreamState{Msgs: 5, FirstTime: since.Add(8*day + 5*time.Second)}},
		{name: "retention raised since, oldest write earlier", now: since.Add(20 * day), log: jetstream.StreamState{Msgs: 5, FirstTime: since.Add(-day)}},
		{name: "retention passed within the margin", now: since.Add(8*day + 5*time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, oldKeysExpired(since, tt.now, 8*day, tt.log))
		})
	}
}
