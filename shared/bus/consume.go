package bus

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Workers runs handle for the messages of a consumer, pulled on nc, at most
// n at a time, until ctx ends. Then it stops pulling, gives running handlers
// grace to finish, and finally cancels the context they run with. Backlogs
// stay in JetStream: at most n messages are asked for at once. Handlers run
// on a Pool's goroutines. What goes wrong with the pulls (missed heartbeats,
// a consumer deleted, a leader change) is logged, and Workers pulls again.
func Workers(ctx context.Context, nc *nats.Conn, logger *slog.Logger, cons jetstream.Consumer, n int, grace time.Duration, handle func(context.Context, jetstream.Msg)) error {
	workCtx, interrupt := context.WithCancel(context.WithoutCancel(ctx))
	defer interrupt()
	var wg sync.WaitGroup
	var mu sync.Mutex
	stopped := false
	slots := make(chan struct{}, n)
	pool := NewPool()
	p, err := pull(nc, logger, cons, n, func(msg jetstream.Msg) {
		select {
		case slots <- struct{}{}:
		case <-workCtx.Done():
			_ = msg.Nak() // stopping: another worker takes it
			return
		}
		mu.Lock()
		if stopped { // Workers is returning: start nothing new
			mu.Unlock()
			<-slots
			_ = msg.Nak()
			return
		}
		wg.Add(1)
		mu.Unlock()
		pool.Go(func() {
			defer wg.Done()
			defer func() { <-slots }()
			handle(workCtx, msg)
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
	mu.Lock()
	stopped = true
	mu.Unlock()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-graceCtx.Done():
		interrupt()
		<-done
	}
	return nil
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
