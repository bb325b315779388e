package bus

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Workers runs handle for the messages of a consumer, pulled on nc, at most
// n at a time, until ctx ends. Then it stops pulling, gives running handlers
// grace to finish, and finally cancels the context they run with. Backlogs
// stay in JetStream: at most n messages are asked for or wait for a worker
// at once. A message waits while every worker is busy, kept alive every
// third of the consumer's AckWait, so that a handler slower than AckWait
// does not make the ones waiting behind it be delivered again meanwhile;
// after AckWait of waiting it goes back (workQueue). Handlers run on a
// Pool's goroutines. What goes wrong with the pulls (missed heartbeats, a
// consumer deleted, a leader change) is logged, and Workers pulls again.
func Workers(ctx context.Context, nc *nats.Conn, logger *slog.Logger, cons jetstream.Consumer, n int, grace time.Duration, handle func(context.Context, jetstream.Msg)) error {
	workCtx, interrupt := context.WithCancel(context.WithoutCancel(ctx))
	defer interrupt()
	ackWait := cons.CachedInfo().Config.AckWait
	if ackWait <= 0 {
		ackWait = 30 * time.Second // the server's default
	}
	q := &workQueue{free: n, maxWait: ackWait}
	pool := NewPool()
	p, err := pull(nc, logger, cons, n, func(msg jetstream.Msg, started func()) {
		if !q.take(msg, started) {
			return
		}
		started()
		pool.Go(func() {
			defer q.wg.Done()
			for msg != nil {
				handle(workCtx, msg)
				msg = q.next()
			}
		})
	})
	if err != nil {
		return err
	}
	<-ctx.Done()

	graceCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	drained, stop := p.drain()
	select {
	case <-drained:
	case <-graceCtx.Done():
		stop()
	}
	q.stop() // those still waiting go back, for another worker
	done := make(chan struct{})
	go func() { q.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-graceCtx.Done():
		interrupt()
		<-done
	}
	return nil
}

// A workQueue holds the messages Workers received while every worker was
// busy, oldest first, each kept alive until a worker takes it, for at most
// maxWait (the consumer's AckWait, which JetStream would have waited).
// Then it goes back, for a worker of another process that may be idle:
// long handlers here must not hold it for as long as they run.
type workQueue struct {
	maxWait time.Duration
	wg      sync.WaitGroup // running workers

	mu      sync.Mutex
	free    int // workers not running
	waiting []*waitingMsg
	stopped bool
}

type waitingMsg struct {
	msg       jetstream.Msg
	started   func() // tells the puller
	stopAlive func()
	giveBack  *time.Timer
	gone      bool // taken by a worker, or given back
}

// take reserves a worker for msg if one is free (true), or else queues msg,
// to call started when a worker takes it or it goes back. Once stopped, msg
// goes back at once.
func (q *workQueue) take(msg jetstream.Msg, started func()) bool {
	q.mu.Lock()
	switch {
	case q.stopped:
		q.mu.Unlock()
		_ = msg.Nak()
		started()
		return false
	case q.free > 0:
		q.free--
		q.wg.Add(1)
		q.mu.Unlock()
		return true
	}
	defer q.mu.Unlock()
	w := &waitingMsg{msg: msg, started: started, stopAlive: KeepAlive(msg, q.maxWait/3)}
	w.giveBack = time.AfterFunc(q.maxWait, func() { q.release(w) })
	q.waiting = append(q.waiting, w)
	return false
}

// next is a finished worker's next message, nil when none waits (the
// worker is free again).
func (q *workQueue) next() jetstream.Msg {
	q.mu.Lock()
	for len(q.waiting) > 0 && !q.stopped {
		w := q.waiting[0]
		q.waiting[0] = nil
		q.waiting = q.waiting[1:]
		if w.gone {
			continue
		}
		w.gone = true
		q.mu.Unlock()
		w.giveBack.Stop()
		w.stopAlive()
		w.started()
		return w.msg
	}
	q.free++
	q.mu.Unlock()
	return nil
}

// release gives w's message back unless a worker took it, and takes it
// out of the queue: while every worker stays busy, messages come and go
// back every maxWait, and the queue must not keep them.
func (q *workQueue) release(w *waitingMsg) {
	q.mu.Lock()
	taken := w.gone
	w.gone = true
	if i := slices.Index(q.waiting, w); i >= 0 {
		q.waiting = slices.Delete(q.waiting, i, i+1)
	}
	q.mu.Unlock()
	if taken {
		return
	}
	w.stopAlive()
	_ = w.msg.Nak()
	w.started()
}

// stop gives the waiting messages back and starts no more.
func (q *workQueue) stop() {
	q.mu.Lock()
	q.stopped = true
	waiting := q.waiting
	q.waiting = nil
	q.mu.Unlock()
	for _, w := range waiting {
		w.giveBack.Stop()
		q.release(w)
	}
}

// KeepAlive tells JetStream every interval that msg is still being worked on,
// until the returned stop function is called. It holds a timer, not a
// goroutine, while it waits: most messages are done before the first tick.
func KeepAlive(msg jetstream.Msg, interval time.Duration) (stop func()) {
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(interval, func() {
		_ = msg.InProgress()
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			t.Reset(interval)
		}
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}
