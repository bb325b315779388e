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

// Workers runs handle for the messages of a consumer, pulled on nc, on at
// most n workers at a time, until ctx ends. Then it stops pulling, gives running handlers
// grace to finish, and finally cancels the context they run with. Backlogs
// stay in JetStream: at most n messages are asked for or wait for a worker
// at once. A message waits while every worker is busy, kept alive every
// third of the consumer's AckWait, so that a handler slower than AckWait
// does not make the ones waiting behind it be delivered again meanwhile;
// after AckWait of waiting it goes back (workQueue). Handlers run on a
// Pool's goroutines. What goes wrong with the pulls (missed heartbeats, a
// consumer deleted, a leader change) is logged, and Workers pulls again.
//
// A handler that will be long, waiting on something outside (a receiver
// that does not answer), may step aside (StepAside with the context it
// runs with): its worker goes on with the next message while it finishes.
// At most asideFactor×n handlers are aside at once, on top of the n that
// hold a worker.
func Workers(ctx context.Context, nc *nats.Conn, logger *slog.Logger, cons jetstream.Consumer, n int, grace time.Duration, handle func(context.Context, jetstream.Msg)) error {
	workCtx, interrupt := context.WithCancel(context.WithoutCancel(ctx))
	defer interrupt()
	ackWait := cons.CachedInfo().Config.AckWait
	if ackWait <= 0 {
		ackWait = 30 * time.Second // the server's default
	}
	q := &workQueue{free: n, maxWait: ackWait, maxAside: asideFactor * n}
	pool := NewPool()
	q.work = func(msg jetstream.Msg) {
		pool.Go(func() {
			defer q.wg.Done()
			for msg != nil {
				w := &worker{q: q}
				handle(context.WithValue(workCtx, workerKey{}, w), msg)
				if w.end() {
					return // stepped aside: its worker went on already
				}
				msg = q.next()
			}
		})
	}
	p, err := pull(nc, logger, cons, n, func(msg jetstream.Msg, started func()) {
		if !q.take(msg, started) {
			return
		}
		started()
		q.work(msg)
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
	maxWait  time.Duration
	maxAside int
	work     func(jetstream.Msg) // runs a worker from msg on; wg counts it
	wg       sync.WaitGroup      // running workers, and handlers aside

	mu      sync.Mutex
	free    int // workers not running
	aside   int // handlers still running after they stepped aside
	waiting []*waitingMsg
	stopped bool
}

// asideFactor bounds the handlers aside (StepAside) of Workers with n
// workers to asideFactor×n. A handler aside costs its goroutine and its
// message, which it holds until it settles it.
const asideFactor = 8

// A worker is what runs one handler of Workers, until the handler returns
// or steps aside.
type worker struct {
	q     *workQueue
	aside bool // stepped aside; under q.mu
	ended bool // its handler returned; under q.mu
}

type workerKey struct{}

// StepAside lets the worker that runs the handler of ctx, a context that
// Workers gave it, go on with the next message while the handler goes on
// running: for a handler that waits long on something outside, so that the
// messages behind it do not wait as long. It reports whether the handler
// is aside now (again true once it is); false when ctx is not a handler's,
// the handler already returned, or as many handlers as Workers allows are
// aside. A handler aside still holds its message until it settles it, and
// Workers still waits for it when it stops. Any goroutine may call it.
func StepAside(ctx context.Context) bool {
	w, ok := ctx.Value(workerKey{}).(*worker)
	if !ok {
		return false
	}
	q := w.q
	q.mu.Lock()
	switch {
	case w.aside:
		q.mu.Unlock()
		return true
	case w.ended || q.aside >= q.maxAside:
		q.mu.Unlock()
		return false
	}
	w.aside = true
	q.aside++
	q.wg.Add(1) // for the worker that goes on, while this goroutine stays in
	q.mu.Unlock()
	if msg := q.next(); msg != nil {
		q.work(msg)
	} else {
		q.wg.Done()
	}
	return true
}

// end is called when w's handler returned: true if it had stepped aside,
// and its worker went on without it.
func (w *worker) end() bool {
	w.q.mu.Lock()
	defer w.q.mu.Unlock()
	w.ended = true
	if w.aside {
		w.q.aside--
	}
	return w.aside
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
	return Every(interval, interval, func() bool {
		_ = msg.InProgress()
		return true
	})
}

// Every calls f after first, then every interval for as long as f returns
// true, until the returned stop function is called (f may still be running
// then). It holds a timer, not a goroutine, while it waits.
func Every(first, interval time.Duration, f func() (again bool)) (stop func()) {
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(first, func() {
		if !f() {
			return
		}
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
