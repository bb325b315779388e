package notifier

import (
	"context"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/hookstream/hookstream/shared/bus"
)

// maxPendingLogs bounds the attempt logs being written at once; a worker
// that would exceed it waits. At 1,000 webhooks a second it covers a write
// held for 8 s.
const maxPendingLogs = 8192

// attemptLogs writes attempt logs behind the webhooks. A worker that has
// made a delivery's attempts hands over their log, with what is to happen
// once the log is stored (the delivery's message is acknowledged), and
// goes on with the next delivery: its endpoint slot and, on fan-out's
// direct path, its direct slot are free again. nats-server holds a
// bucket's writes while it saves the bucket's index, every two minutes, up
// to a second with a million keys kept (docs/performance.md, finding 20);
// when every worker waited for its log, webhooks stopped meanwhile. Now
// only the acknowledgements wait, as many as maxPendingLogs.
//
// A log is still stored before its message is acknowledged, so a crash
// meanwhile sends the webhook again, with the same webhook-id, as before.
type attemptLogs struct {
	pub   bus.Publisher
	slots chan struct{}
	pool  *bus.Pool
	wg    sync.WaitGroup
	// gate, when set (tests), holds every write until it is closed.
	gate <-chan struct{}
}

func newAttemptLogs(pub bus.Publisher, gate <-chan struct{}) *attemptLogs {
	return &attemptLogs{pub: pub, slots: make(chan struct{}, maxPendingLogs), pool: bus.NewPool(), gate: gate}
}

// write stores msg, an attempt log, and then calls then, whether the write
// succeeded or not: the attempts happened, and a lost log line must not
// send the webhook again. It returns at once unless maxPendingLogs are
// being written. The write outlives ctx's cancellation (a worker's
// context ends at shutdown), bounded by JetStream's publish timeout.
func (l *attemptLogs) write(ctx context.Context, logger *slog.Logger, msg *nats.Msg, then func()) {
	l.slots <- struct{}{}
	l.wg.Add(1)
	ctx = context.WithoutCancel(ctx)
	l.pool.Go(func() {
		defer l.wg.Done()
		defer func() { <-l.slots }()
		if l.gate != nil {
			<-l.gate
		}
		if _, err := l.pub.PublishMsg(ctx, msg); err != nil {
			logger.Warn("record delivery attempts", "error", err)
		}
		then()
	})
}

// wait returns once every log handed over is written and its then called.
func (l *attemptLogs) wait() { l.wg.Wait() }
