package bus

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A consumer's pull requests expire after pullExpiry; the server sends a
// heartbeat every pullHeartbeat while one waits. When two heartbeats in a
// row do not come, the client pulls again. nats.go's defaults are 30 s and
// 15 s: under overload a consumer's pull was sometimes no longer served and
// its deliveries stood still for 30 s until then (docs/performance.md,
// finding 18). With these, it is 4 s at most.
const (
	pullExpiry    = 10 * time.Second
	pullHeartbeat = 2 * time.Second
)

// Workers runs handle for the messages of a consumer, at most n at a time,
// until ctx ends. Then it stops fetching, gives running handlers grace to
// finish, and finally cancels the context they run with. Backlogs stay in
// JetStream: at most n messages are held in memory. Handlers run on a Pool's
// goroutines. What goes wrong with the pulls (missed heartbeats, a consumer
// deleted, a leader change) is logged: the client pulls again by itself.
func Workers(ctx context.Context, logger *slog.Logger, cons jetstream.Consumer, n int, grace time.Duration, handle func(context.Context, jetstream.Msg)) error {
	workCtx, interrupt := context.WithCancel(context.WithoutCancel(ctx))
	defer interrupt()
	var wg sync.WaitGroup
	var mu sync.Mutex
	stopped := false
	slots := make(chan struct{}, n)
	pool := NewPool()
	cc, err := cons.Consume(func(msg jetstream.Msg) {
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
	}, jetstream.PullMaxMessages(n), jetstream.PullExpiry(pullExpiry), jetstream.PullHeartbeat(pullHeartbeat), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		logger.Warn("consume", "consumer", cons.CachedInfo().Name, "error", err)
	}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", cons.CachedInfo().Name, err)
	}
	<-ctx.Done()

	graceCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	Drain(graceCtx, cc)
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
