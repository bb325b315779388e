package bus_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/embeddednats"
	"github.com/hookstream/hookstream/shared/natstest"
)

// startStream starts a server that syncs every write and declares stream
// "T" on subject t.>, with atomic batches allowed when atomic is set.
func startStream(tb testing.TB, atomic bool) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	ns, err := embeddednats.Start(embeddednats.Config{StoreDir: tb.TempDir(), SyncAlways: true}, slog.New(slog.DiscardHandler))
	require.NoError(tb, err)
	tb.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, js, err := bus.Connect(bus.ConnectOptions{InProcess: ns, Name: tb.Name()}, slog.New(slog.DiscardHandler))
	require.NoError(tb, err)
	tb.Cleanup(nc.Close)
	_, err = js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage,
		Duplicates: time.Minute, AllowAtomicPublish: atomic,
	})
	require.NoError(tb, err)
	return nc, js
}

func TestCommitterStoresEveryMessageOnce(t *testing.T) {
	t.Parallel()
	for _, atomic := range []bool{true, false} {
		t.Run(fmt.Sprintf("atomic=%v", atomic), func(t *testing.T) {
			t.Parallel()
			_, js := startStream(t, atomic)
			c := bus.NewCommitter(js)
			t.Cleanup(c.Close)
			ctx := context.Background()
			const n = 500
			var wg sync.WaitGroup
			seqs := make([]uint64, n)
			dups := make([]bool, n)
			for i := range n {
				wg.Go(func() {
					msg := nats.NewMsg(fmt.Sprintf("t.%d", i))
					msg.Data = []byte(fmt.Sprint(i))
					// Every tenth message repeats an earlier id: it must be
					// reported a duplicate without failing its batch mates.
					msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprint(i-i%10))
					ack, err := c.Publish(ctx, msg)
					require.NoError(t, err)
					seqs[i], dups[i] = ack.Sequence, ack.Duplicate
				})
			}
			wg.Wait()
			stream, err := js.Stream(ctx, "T")
			require.NoError(t, err)
			info, err := stream.Info(ctx)
			require.NoError(t, err)
			require.Equal(t, uint64(n/10), info.State.Msgs, "one message per distinct id")
			for i := range n {
				if dups[i] {
					continue
				}
				got, err := stream.GetMsg(ctx, seqs[i])
				require.NoError(t, err)
				require.Equal(t, fmt.Sprint(i), string(got.Data), "the PubAck names the message's own sequence")
				require.Empty(t, got.Header.Get("Nats-Batch-Id"))
			}
		})
	}
}

func TestCommitterAnswersEachExpectedSequenceCheck(t *testing.T) {
	t.Parallel()
	_, js := startStream(t, true)
	c := bus.NewCommitter(js)
	t.Cleanup(c.Close)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range errs {
		wg.Go(func() {
			msg := nats.NewMsg(fmt.Sprintf("t.key%d", i%20)) // each key twice
			msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
			_, errs[i] = c.Publish(ctx, msg)
		})
	}
	wg.Wait()
	created := 0
	for i, err := range errs {
		if err == nil {
			created++
			continue
		}
		require.True(t, bus.IsWrongLastSequence(err), "message %d: %v", i, err)
	}
	require.Equal(t, 20, created, "each key is created exactly once")
}

func TestCommitterGivesUpWithItsCaller(t *testing.T) {
	t.Parallel()
	_, js := startStream(t, true)
	c := bus.NewCommitter(js)
	t.Cleanup(c.Close)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Publish(ctx, nats.NewMsg("t.x"))
	require.ErrorIs(t, err, context.Canceled)
	c.Close()
	_, err = c.Publish(context.Background(), nats.NewMsg("t.x"))
	require.Error(t, err)
}

// A caller whose deadline passes while its message is being written gets
// the write's answer, not its own deadline: told it failed, it would send
// again what was stored. The stream here is a core subscriber that stores
// a message and answers 1.5 s later; the caller allows 1 s, long enough
// for the message to be sent (else it is rightly told it was not) on a
// slow machine too.
func TestCommitterAnswersAWriteUnderWayPastItsCallersDeadline(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	_, js := s.Connect(t)
	stored := slowStream(t, s, 1500*time.Millisecond)
	c := bus.NewCommitter(js)
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ack, err := c.Publish(ctx, nats.NewMsg("fake.x"))
	require.NoError(t, err, "told failed, though stored")
	require.EqualValues(t, 1, ack.Sequence)
	require.EqualValues(t, 1, stored.Load())
}

// slowStream stands for a stream on fake.>: a core subscriber that stores
// each message (the count it returns) and answers its PubAck after delay.
func slowStream(t *testing.T, s *natstest.Server, delay time.Duration) *atomic.Int64 {
	t.Helper()
	other, _ := s.Connect(t)
	var stored atomic.Int64
	_, err := other.Subscribe("fake.>", func(m *nats.Msg) {
		seq := stored.Add(1)
		time.AfterFunc(delay, func() { _ = m.Respond(fmt.Appendf(nil, `{"stream":"F","seq":%d}`, seq)) })
	})
	require.NoError(t, err)
	require.NoError(t, other.Flush())
	return &stored
}

// A caller that allows its write longer than the JetStream's default
// timeout gets that long: a sent write is not cut short at the default.
func TestCommitterGivesAWriteItsCallersLongerDeadline(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc, _ := s.Connect(t)
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(200*time.Millisecond))
	require.NoError(t, err)
	slowStream(t, s, 500*time.Millisecond)
	c := bus.NewCommitter(js)
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.Publish(ctx, nats.NewMsg("fake.x"))
	require.NoError(t, err, "cut short at the default timeout")
}

// Publishes that arrive a little apart, each after the one before has had
// time to go on its own, are written as one atomic batch by a lingering
// committer. A core subscriber sees the batch headers the server strips.
func TestLingeringCommitterBatchesPublishesThatArriveApart(t *testing.T) {
	t.Parallel()
	nc, js := startStream(t, true)
	raw, err := nc.SubscribeSync("t.>")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	// The linger far outlasts the arrivals, so that a slow machine cannot
	// split the batch; it ends early only when the batch is full.
	c := bus.NewLingeringCommitter(js, 3*time.Second)
	t.Cleanup(c.Close)
	const n = bus.MinAtomicBatch + 2
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := c.Publish(context.Background(), nats.NewMsg(fmt.Sprintf("t.%d", i)))
			assert.NoError(t, err)
		})
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	batches := map[string]int{}
	for range n {
		msg, err := raw.NextMsg(5 * time.Second)
		require.NoError(t, err)
		batches[msg.Header.Get("Nats-Batch-Id")]++
	}
	require.Len(t, batches, 1, "one batch: %v", batches)
	require.NotContains(t, batches, "", "sent as an atomic batch")
}

// BenchmarkCommitter compares plain synchronous publishes with group commits
// from 64 publishers, on a stream that syncs every write:
//
//	go test -run - -bench Committer ./shared/bus
func BenchmarkCommitter(b *testing.B) {
	for _, mode := range []string{"publish", "committer"} {
		b.Run(mode, func(b *testing.B) {
			_, js := startStream(b, true)
			c := bus.NewCommitter(js)
			b.Cleanup(c.Close)
			ctx := context.Background()
			data := make([]byte, 200)
			b.SetParallelism(32) // 64 publishers on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					msg := nats.NewMsg("t.x")
					msg.Data = data
					var err error
					if mode == "publish" {
						_, err = js.PublishMsg(ctx, msg)
					} else {
						_, err = c.Publish(ctx, msg)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// A message the connection cannot send (over max_payload) fails alone; the
// messages gathered with it are stored.
func TestCommitterFailsOnlyTheMessageThatCannotGo(t *testing.T) {
	t.Parallel()
	nc, js := startStream(t, true)
	c := bus.NewCommitter(js)
	t.Cleanup(c.Close)
	var wg sync.WaitGroup
	errs := make([]error, 64)
	for i := range errs {
		wg.Go(func() {
			msg := nats.NewMsg(fmt.Sprintf("t.%d", i))
			if i == 40 {
				msg.Data = make([]byte, nc.MaxPayload()+1)
			}
			_, errs[i] = c.Publish(context.Background(), msg)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i == 40 {
			require.ErrorIs(t, err, nats.ErrMaxPayload)
			continue
		}
		require.NoError(t, err, "message %d", i)
	}
}
