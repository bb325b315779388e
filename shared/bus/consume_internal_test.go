package bus

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// queuedMsg is a message that only counts its Naks.
type queuedMsg struct {
	jetstream.Msg
	naks *atomic.Int64
}

func (m *queuedMsg) Nak() error        { m.naks.Add(1); return nil }
func (m *queuedMsg) InProgress() error { return nil }

// While every worker stays busy, messages that wait too long go back and
// others come in their place: the queue holds only those still waiting,
// not every message given back meanwhile.
func TestWorkQueueForgetsWhatWentBack(t *testing.T) {
	t.Parallel()
	const n = 4
	q := &workQueue{free: n, maxWait: 5 * time.Millisecond}
	var naks atomic.Int64
	for range n { // long handlers take every worker
		require.True(t, q.take(&queuedMsg{naks: &naks}, func() {}))
	}
	room := make(chan struct{}, 64)
	for range n {
		room <- struct{}{}
	}
	for naks.Load() < 40 { // the puller keeps n waiting: each give-back makes room
		<-room
		q.take(&queuedMsg{naks: &naks}, func() { room <- struct{}{} })
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	require.LessOrEqual(t, len(q.waiting), n)
}
