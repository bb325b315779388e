package bus_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/natstest"
)

// runWorkers runs bus.Workers on cons until the test ends, logging to logs.
func runWorkers(t *testing.T, js jetstream.JetStream, cons jetstream.Consumer, n int, logs *logRecords, handle func(context.Context, jetstream.Msg)) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bus.Workers(ctx, js.Conn(), slog.New(logs), cons, n, time.Second, handle) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return stop
}

// receiver runs Workers on cons that acknowledge each message and say so on
// the channel returned.
func receiver(t *testing.T, js jetstream.JetStream, cons jetstream.Consumer, logs *logRecords) <-chan struct{} {
	t.Helper()
	got := make(chan struct{}, 1)
	runWorkers(t, js, cons, 4, logs, func(_ context.Context, msg jetstream.Msg) {
		assert.NoError(t, msg.Ack())
		got <- struct{}{}
	})
	return got
}

// publishAndReceive publishes a message and waits until got says it was
// handled.
func publishAndReceive(t *testing.T, js jetstream.JetStream, got <-chan struct{}, notGot string) {
	t.Helper()
	_, err := js.Publish(context.Background(), "t.x", []byte("work"))
	require.NoError(t, err)
	select {
	case <-got:
	case <-time.After(30 * time.Second):
		t.Fatal(notGot)
	}
}

// Every message is handled once, never more than n at a time, and the pulls
// go on by themselves: no request is taken as lost on the way.
func TestWorkersHandleEveryMessageOnceAtMostNAtATime(t *testing.T) {
	t.Parallel()
	// Writes not synced: a disk busy with other tests' syncs can hold a
	// synced server's first write, heartbeats too, past two heartbeats.
	_, js := natstest.Start(t).Connect(t)
	_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	ctx := context.Background()
	cons := durable(t, js, "T", "all", "", jetstream.AckExplicitPolicy)
	const total, n = 3000, 8
	var mu sync.Mutex
	seen := map[uint64]int{}
	var running, most atomic.Int32
	logs := &logRecords{}
	runWorkers(t, js, cons, n, logs, func(_ context.Context, msg jetstream.Msg) {
		now := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
		}
		meta, err := msg.Metadata()
		if !assert.NoError(t, err) {
			return
		}
		mu.Lock()
		seen[meta.Sequence.Stream]++
		mu.Unlock()
		time.Sleep(time.Duration(meta.Sequence.Stream%3) * 100 * time.Microsecond)
		assert.NoError(t, msg.Ack())
	})
	for i := range total {
		_, err := js.PublishAsync(fmt.Sprintf("t.%d", i%5), []byte("work"))
		require.NoError(t, err)
	}
	<-js.PublishAsyncComplete()

	require.Eventually(t, func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.AckFloor.Stream == total
	}, 30*time.Second, 10*time.Millisecond, "not every message was handled")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seen, total)
	for seq, times := range seen {
		require.Equal(t, 1, times, "message %d handled %d times", seq, times)
	}
	require.LessOrEqual(t, most.Load(), int32(n))
	require.False(t, logs.contains("no heartbeat"), "a pull was taken as lost: %v", logs)
}

// An idle consumer's pull requests expire on the server (every 10 s); the
// next one is asked for at once, not after the heartbeats are missed.
func TestWorkersAskAgainWhenRequestsExpire(t *testing.T) {
	t.Parallel()
	_, js := startStream(t, false)
	cons := durable(t, js, "T", "idle", "", jetstream.AckExplicitPolicy)
	logs := &logRecords{}
	got := receiver(t, js, cons, logs)
	time.Sleep(11 * time.Second) // one expiry
	publishAndReceive(t, js, got, "not delivered after the pull request expired")
	require.False(t, logs.contains("no heartbeat"), "the expiry was not seen: %v", logs)
}

// A pull request the server drops without a word (its MaxWaiting is full and
// the request has heartbeats) is taken as lost after two missed heartbeats,
// logged, and asked for again.
func TestWorkersAskAgainAfterLostRequests(t *testing.T) {
	t.Parallel()
	_, js := startStream(t, false)
	ctx := context.Background()
	cons, err := js.CreateOrUpdateConsumer(ctx, "T", jetstream.ConsumerConfig{
		Durable: "one", AckPolicy: jetstream.AckExplicitPolicy, MaxWaiting: 1,
	})
	require.NoError(t, err)
	stopFirst := runWorkers(t, js, cons, 4, &logRecords{}, func(_ context.Context, msg jetstream.Msg) { assert.NoError(t, msg.Ack()) })
	require.Eventually(t, func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumWaiting == 1
	}, 5*time.Second, 10*time.Millisecond)

	logs := &logRecords{}
	got := receiver(t, js, cons, logs)
	time.Sleep(time.Second) // its request is dropped
	stopFirst()
	publishAndReceive(t, js, got, "the second Workers never asked again")
	require.True(t, logs.contains("consume consumer=one error=no heartbeat received"), "the lost request was not logged: %v", logs)
}

// A message settles once, whichever way: settling it again says so, as
// jetstream's messages do. Its metadata is the reply subject's.
func TestPulledMessagesSettleOnce(t *testing.T) {
	t.Parallel()
	_, js := startStream(t, false)
	ctx := context.Background()
	cons := durable(t, js, "T", "once", "", jetstream.AckExplicitPolicy)
	type result struct {
		delivered uint64
		again     error
	}
	results := make(chan result, 3)
	runWorkers(t, js, cons, 1, &logRecords{}, func(ctx context.Context, msg jetstream.Msg) {
		meta, err := msg.Metadata()
		if !assert.NoError(t, err) {
			return
		}
		assert.Equal(t, "T", meta.Stream)
		assert.Equal(t, "once", meta.Consumer)
		assert.Equal(t, uint64(1), meta.Sequence.Stream)
		assert.Equal(t, "t.x", msg.Subject())
		assert.Equal(t, "work", string(msg.Data()))
		if meta.NumDelivered == 1 {
			assert.NoError(t, msg.InProgress())
			assert.NoError(t, msg.NakWithDelay(50*time.Millisecond))
		} else {
			assert.NoError(t, msg.DoubleAck(ctx))
		}
		results <- result{meta.NumDelivered, msg.Term()}
	})
	_, err := js.Publish(ctx, "t.x", []byte("work"))
	require.NoError(t, err)
	for want := uint64(1); want <= 2; want++ {
		r := <-results
		require.Equal(t, want, r.delivered)
		require.ErrorIs(t, r.again, jetstream.ErrMsgAlreadyAckd)
	}
	info, err := cons.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.AckFloor.Stream)
}

// Messages that wait for a busy worker are kept alive meanwhile, and given
// back after AckWait: handlers slower than the consumer's AckWait never
// make a message waiting behind them run twice.
func TestWorkersRunEachWaitingMessageOnce(t *testing.T) {
	t.Parallel()
	_, js := startStream(t, false)
	ctx := context.Background()
	cons, err := js.CreateOrUpdateConsumer(ctx, "T", jetstream.ConsumerConfig{
		Durable: "slow", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Second,
	})
	require.NoError(t, err)
	const total, n = 6, 2
	var mu sync.Mutex
	handled := map[uint64]int{}
	runWorkers(t, js, cons, n, &logRecords{}, func(_ context.Context, msg jetstream.Msg) {
		meta, err := msg.Metadata()
		if !assert.NoError(t, err) {
			return
		}
		mu.Lock()
		handled[meta.Sequence.Stream]++
		mu.Unlock()
		stop := bus.KeepAlive(msg, 300*time.Millisecond) // as handlers do
		time.Sleep(1500 * time.Millisecond)
		stop()
		assert.NoError(t, msg.Ack())
	})
	for i := range total {
		_, err := js.Publish(ctx, fmt.Sprintf("t.%d", i), []byte("slow work"))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.AckFloor.Stream == total
	}, 30*time.Second, 50*time.Millisecond, "not every message was handled")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, handled, total)
	for seq, times := range handled {
		require.Equal(t, 1, times, "message %d handled %d times", seq, times)
	}
}

// A message that waits for a worker of a busy process goes back after
// AckWait, and an idle process runs it: long handlers do not hold it.
func TestWorkersGiveBackWhatWaitsTooLong(t *testing.T) {
	t.Parallel()
	_, js := startStream(t, false)
	ctx := context.Background()
	cons, err := js.CreateOrUpdateConsumer(ctx, "T", jetstream.ConsumerConfig{
		Durable: "shared", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Second,
	})
	require.NoError(t, err)
	slowDone := make(chan struct{})
	fastBy := make(chan string, 2)
	worker := func(name string) func(context.Context, jetstream.Msg) {
		return func(_ context.Context, msg jetstream.Msg) {
			if string(msg.Data()) == "slow" {
				stop := bus.KeepAlive(msg, 300*time.Millisecond)
				<-slowDone
				stop()
			} else {
				fastBy <- name
			}
			assert.NoError(t, msg.Ack())
		}
	}
	runWorkers(t, js, cons, 1, &logRecords{}, worker("busy"))
	_, err = js.Publish(ctx, "t.slow", []byte("slow"))
	require.NoError(t, err)
	_, err = js.Publish(ctx, "t.fast", []byte("fast"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { // the busy process holds both
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 2
	}, 10*time.Second, 10*time.Millisecond)
	runWorkers(t, js, cons, 1, &logRecords{}, worker("idle"))
	select {
	case by := <-fastBy:
		require.Equal(t, "idle", by)
	case <-time.After(20 * time.Second):
		t.Fatal("the waiting message was not run while the slow one ran")
	}
	close(slowDone)
}
