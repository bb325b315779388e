package bus_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/natstest"
)

// A message kept alive is not redelivered while it is worked on for several
// ack waits; once KeepAlive stops, its ack wait runs out and it comes back.
func TestKeepAliveHoldsMessageUntilStopped(t *testing.T) {
	t.Parallel()
	_, js := startStream(t, false)
	ctx := context.Background()
	const ackWait = 600 * time.Millisecond
	cons, err := js.CreateOrUpdateConsumer(ctx, "T", jetstream.ConsumerConfig{
		Durable: "k", AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait,
	})
	require.NoError(t, err)
	_, err = js.Publish(ctx, "t.x", []byte("work"))
	require.NoError(t, err)

	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
	require.NoError(t, err)
	msg := <-batch.Messages()
	require.NotNil(t, msg)
	stop := bus.KeepAlive(msg, ackWait/6)
	time.Sleep(3 * ackWait) // worked on for three ack waits
	again, err := cons.Fetch(1, jetstream.FetchMaxWait(ackWait/2))
	require.NoError(t, err)
	for m := range again.Messages() {
		t.Fatalf("redelivered while kept alive: %s", m.Data())
	}

	stop()
	redelivered, err := cons.Fetch(1, jetstream.FetchMaxWait(4*ackWait))
	require.NoError(t, err)
	m := <-redelivered.Messages()
	require.NotNil(t, m, "not redelivered after KeepAlive stopped")
	meta, err := m.Metadata()
	require.NoError(t, err)
	require.Equal(t, uint64(2), meta.NumDelivered)
}

// logRecords is a slog.Handler that keeps the messages and attributes of
// what is logged.
type logRecords struct {
	mu      sync.Mutex
	records []string
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecords) WithGroup(string) slog.Handler            { return l }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	line := r.Message
	r.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, line)
	return nil
}

// String lists the records; a failed assertion prints it, under the lock.
func (l *logRecords) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.records, "\n")
}

func (l *logRecords) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.records {
		if strings.Contains(r, s) {
			return true
		}
	}
	return false
}

// What goes wrong with a consumer's pulls is logged, with the consumer's
// name, not dropped: here the consumer is deleted under Workers. Workers
// then asks again now and then.
func TestWorkersLogConsumeErrors(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	dir := srv.Dir
	_, js := srv.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	cons, err := js.CreateOrUpdateConsumer(ctx, "T", jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	logs := &logRecords{}
	done := make(chan error, 1)
	handled := make(chan uint64, 10)
	go func() {
		done <- bus.Workers(ctx, js.Conn(), slog.New(logs), cons, 4, time.Second, func(_ context.Context, msg jetstream.Msg) {
			_ = msg.Ack()
			if meta, err := msg.Metadata(); err == nil {
				handled <- meta.Sequence.Stream
			}
		})
	}()
	_, err = js.Publish(ctx, "t.x", []byte("work"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.AckFloor.Stream == 1
	}, 5*time.Second, 10*time.Millisecond, "the message is handled")

	require.NoError(t, js.DeleteConsumer(ctx, "T", "w"))
	require.Eventually(t, func() bool { return logs.contains("consume consumer=w error=409 Consumer Deleted") },
		5*time.Second, 10*time.Millisecond, "the deleted consumer is not logged: %v", logs)

	// Workers make it again, as it was, and pull it again, after the wait
	// of 4 s that follows a failure (the server says a consumer is deleted
	// before its deletion is over): nothing else would, before the process
	// restarts.
	require.Eventually(t, func() bool { return logs.contains("created it again") },
		10*time.Second, 10*time.Millisecond, "the deleted consumer is not created again: %v", logs)
	again, err := js.Consumer(ctx, "T", "w")
	require.NoError(t, err)
	require.Equal(t, jetstream.AckExplicitPolicy, again.CachedInfo().Config.AckPolicy)
	// On disk too: a consumer made while the server was still deleting the
	// old one was taken down with it.
	_, err = os.Stat(filepath.Join(dir, "jetstream", "$G", "streams", "T", "obs", "w"))
	require.NoError(t, err, "the consumer made again is not stored")
	_, err = js.Publish(ctx, "t.x", []byte("more work"))
	require.NoError(t, err)
	// The first message comes again too (the new consumer starts from the
	// stream's first message): only the new one is waited for.
	deadline := time.After(30 * time.Second)
	for seq := uint64(0); seq != 2; {
		select {
		case seq = <-handled:
		case <-deadline:
			t.Fatalf("the consumer created again is not pulled: %v", logs)
		}
	}
	cancel()
	require.NoError(t, <-done)
}

// A handler that steps aside lets its worker go on with the next message
// while it runs; at most 8×n handlers are aside at once, and the ones
// beyond keep their worker.
func TestStepAsideLetsTheWorkerGoOn(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).Connect(t)
	_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	cons := durable(t, js, "T", "aside", "", jetstream.AckExplicitPolicy)
	require.False(t, bus.StepAside(context.Background()), "not a handler's context")

	const total, most = 10, 8 // one worker: eight aside, two beyond
	release := make(chan struct{})
	var mu sync.Mutex
	var aside, kept int
	acked := make(chan struct{}, total)
	var freed sync.Once
	free := func() { freed.Do(func() { close(release) }) }
	runWorkers(t, js, cons, 1, &logRecords{}, func(ctx context.Context, msg jetstream.Msg) {
		ok := bus.StepAside(ctx)
		mu.Lock()
		if ok {
			aside++
		} else {
			kept++
		}
		mu.Unlock()
		if ok {
			assert.True(t, bus.StepAside(ctx), "asked again")
			<-release // the worker went on without it
		}
		assert.NoError(t, msg.Ack())
		acked <- struct{}{}
	})
	t.Cleanup(free) // before Workers stops, should the test fail
	for range total {
		_, err := js.Publish(context.Background(), "t.x", []byte("work"))
		require.NoError(t, err)
	}
	for range total - most { // the two beyond the bound
		select {
		case <-acked:
		case <-time.After(30 * time.Second):
			t.Fatal("the worker did not go on while handlers were aside")
		}
	}
	mu.Lock()
	require.Equal(t, most, aside)
	require.Equal(t, total-most, kept)
	mu.Unlock()
	free()
	for range most {
		select {
		case <-acked:
		case <-time.After(30 * time.Second):
			t.Fatal("a handler aside did not finish")
		}
	}
}
