package notifier

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
)

const (
	// maxPendingLogs and maxPendingLogBytes bound the attempt logs being
	// written at once, by count and by size (a log holds the webhook's
	// body); a worker that would exceed either waits. At 1,000 webhooks a
	// second a save of the bucket's index of 2 s leaves about 2,000.
	maxPendingLogs     = 8192
	maxPendingLogBytes = 64 << 20
	// logWriteTimeout bounds one log's write, its wait for a group commit
	// included; then it is given up (and logged) and its message settled.
	logWriteTimeout = 30 * time.Second
	// deadLetterTries is how many times the log of a delivery given up on,
	// its only record, is written before the delivery is queued again for
	// its log alone (verdict unrecorded), logRetryPause more between each
	// two.
	deadLetterTries = 3
	logRetryPause   = time.Second
)

// attemptLogs writes attempt logs behind the webhooks. A worker that has
// made a delivery's attempts hands over their log, with what is to happen
// once the log is stored (the delivery's message is acknowledged), and
// goes on with the next delivery: its endpoint slot and, on fan-out's
// direct path, its direct slot are free again. nats-server holds a
// bucket's writes while it saves the bucket's index, every two minutes, a
// second or two with 700,000 keys kept (docs/performance.md, findings 20
// and 21); when every worker waited for its log, webhooks stopped
// meanwhile. Now only the acknowledgements wait.
//
// A log is still stored before its message is acknowledged, so a crash
// meanwhile sends the webhook again, with the same webhook-id, as before;
// but as many webhooks as there are logs in flight, not only those being
// sent.
type attemptLogs struct {
	pub  bus.Publisher
	pool *bus.Pool

	mu      sync.Mutex
	room    *sync.Cond // broadcast when a write ends
	pending int        // logs being written
	bytes   int        // their size
	// gate, when set (tests), holds every write until it is closed.
	gate <-chan struct{}
	// pause is logRetryPause (shorter in tests).
	pause time.Duration
}

func newAttemptLogs(pub bus.Publisher, gate <-chan struct{}) *attemptLogs {
	l := &attemptLogs{pub: pub, pool: bus.NewPool(), gate: gate, pause: logRetryPause}
	l.room = sync.NewCond(&l.mu)
	return l
}

// write stores msg, an attempt log, making up to tries writes, and then
// calls then, whether it was stored or not: the attempts happened, and a
// lost log line must not send the webhook again. Only the dead letter of a
// delivery given up on, its only record, is not let go: the delivery is
// then queued again for its log alone (verdict.onceLogged). over is
// false when the last write failed in a way a later one may not (a
// timeout, no leader): true when the log is stored, or can never be (too
// large). It returns at once unless the logs in flight are at their
// bounds. Each write outlives ctx's cancellation (a worker's context ends
// at shutdown), up to logWriteTimeout.
func (l *attemptLogs) write(ctx context.Context, logger *slog.Logger, msg *nats.Msg, tries int, then func(over bool)) {
	size := len(msg.Data)
	l.mu.Lock()
	for l.pending > 0 && (l.pending >= maxPendingLogs || l.bytes+size > maxPendingLogBytes) {
		l.room.Wait()
	}
	l.pending++
	l.bytes += size
	l.mu.Unlock()
	l.pool.Go(func() {
		defer l.done(size)
		if l.gate != nil {
			<-l.gate
		}
		var err error
		for try := 1; ; try++ {
			err = l.publish(ctx, msg)
			if err == nil || try >= tries || neverStored(err) {
				break
			}
			logger.Warn("record delivery attempts; trying again", "try", try, "error", err)
			time.Sleep(time.Duration(try) * l.pause)
		}
		switch {
		case err == nil:
		case neverStored(err):
			logger.Error("record delivery attempts: the log can never be stored", "error", err)
		default:
			logger.Warn("record delivery attempts", "error", err)
		}
		then(err == nil || neverStored(err))
	})
}

func (l *attemptLogs) publish(ctx context.Context, msg *nats.Msg) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), logWriteTimeout)
	defer cancel()
	_, err := l.pub.PublishMsg(ctx, msg)
	return err
}

// neverStored tells whether a log's write failed in a way no later write
// can mend: too large, or refused as a bad request.
func neverStored(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, nats.ErrMaxPayload) || (errors.As(err, &apiErr) && apiErr.Code == 400)
}

func (l *attemptLogs) done(size int) {
	l.mu.Lock()
	l.pending--
	l.bytes -= size
	l.mu.Unlock()
	l.room.Broadcast()
}

// wait returns once every log handed over is written and its then called.
func (l *attemptLogs) wait() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.pending > 0 {
		l.room.Wait()
	}
}
