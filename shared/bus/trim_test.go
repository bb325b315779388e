package bus_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/embeddednats"
	"github.com/hookstream/hookstream/shared/natstest"
)

// streamMsgs returns how many messages a stream holds.
func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	return info.State.Msgs
}

// Trim removes what the consumer acknowledged up to its ack floor, keeps
// what it has not, and keeps other subjects' messages.
func TestTrimRemovesAcknowledgedMessages(t *testing.T) {
	t.Parallel()
	ctx, js := startStreams(t, bus.Topology{})
	cons := durable(t, js, contract.StreamJobs, "echo", contract.SubjectJobs+".*.echo", jetstream.AckExplicitPolicy)
	_, err := js.Publish(ctx, contract.JobSubject("acme", "other"), []byte("no processor runs these yet"))
	require.NoError(t, err)
	for i := range 10 {
		_, err := js.Publish(ctx, contract.JobSubject("acme", "echo"), []byte{byte('0' + i)})
		require.NoError(t, err)
	}
	// A consumer of everything, acknowledging nothing: it reads every job at
	// once, but holds back no purge and makes none.
	tap := durable(t, js, contract.StreamJobs, "tap", contract.SubjectJobs+".>", jetstream.AckNonePolicy)
	tc, err := tap.Consume(func(jetstream.Msg) {})
	require.NoError(t, err)
	defer tc.Stop()

	go func() { _ = bus.Trim(ctx, js, slog.New(slog.DiscardHandler), testTrim, bus.TrimTargets()...) }()

	ackNext(ctx, t, cons, 4)
	// 0..3 are acknowledged, 4..9 not delivered yet.
	require.Eventually(t, func() bool { return streamMsgs(t, js, contract.StreamJobs) == 6+1 },
		10*time.Second, 20*time.Millisecond, "only what is below the ack floor goes")
	ackNext(ctx, t, cons, 6)
	require.Eventually(t, func() bool { return streamMsgs(t, js, contract.StreamJobs) == 1 },
		10*time.Second, 20*time.Millisecond, "every acknowledged echo job goes, the other type's stays")
}

// A message goes only when every consumer that reads it has acknowledged it.
func TestTrimWaitsForEveryReader(t *testing.T) {
	t.Parallel()
	ctx, js := startStreams(t, bus.Topology{})
	fanout := durable(t, js, contract.StreamEvents, "fanout", contract.SubjectEvents+".>", jetstream.AckExplicitPolicy)
	audit := durable(t, js, contract.StreamEvents, "audit", contract.SubjectEvents+".acme.>", jetstream.AckExplicitPolicy)
	for range 3 {
		_, err := js.Publish(ctx, contract.EventSubject("acme", "job.succeeded"), []byte("{}"))
		require.NoError(t, err)
	}
	ackNext(ctx, t, fanout, 3)
	events := target(contract.StreamEvents)
	events.Keep = 0 // not kept for their ids' window (below)
	go func() { _ = bus.Trim(ctx, js, slog.New(slog.DiscardHandler), testTrim, events) }()
	time.Sleep(500 * time.Millisecond)
	require.EqualValues(t, 3, streamMsgs(t, js, contract.StreamEvents), "audit has acknowledged nothing yet")
	ackNext(ctx, t, audit, 3)
	require.Eventually(t, func() bool { return streamMsgs(t, js, contract.StreamEvents) == 0 },
		10*time.Second, 20*time.Millisecond, "both readers acknowledged everything")
}

// A stream an older version created as a work queue stays one: NATS cannot
// change its retention, and Trim leaves it alone.
func TestEnsureKeepsWorkQueueStreams(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	var old jetstream.StreamConfig
	for _, cfg := range (bus.Topology{}).StreamConfigs() {
		if cfg.Name == contract.StreamEvents {
			old = cfg
		}
	}
	old.Retention = jetstream.WorkQueuePolicy
	_, err := js.CreateStream(ctx, old)
	require.NoError(t, err)
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))

	s, err := js.Stream(ctx, contract.StreamEvents)
	require.NoError(t, err)
	require.Equal(t, jetstream.WorkQueuePolicy, s.CachedInfo().Config.Retention)
	cons := durable(t, js, contract.StreamEvents, "fanout", contract.SubjectEvents+".>", jetstream.AckExplicitPolicy)
	_, err = js.Publish(ctx, contract.EventSubject("acme", "job.succeeded"), []byte("{}"))
	require.NoError(t, err)
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	require.NoError(t, err)
	require.NoError(t, msg.DoubleAck(ctx))
	require.Zero(t, streamMsgs(t, js, contract.StreamEvents), "the ack removed it")
	trimCtx, stop := context.WithTimeout(ctx, time.Minute)
	defer stop()
	require.NoError(t, bus.Trim(trimCtx, js, slog.New(slog.DiscardHandler), testTrim, target(contract.StreamEvents)))
	require.NoError(t, trimCtx.Err(), "Trim returned at once: it leaves a work queue alone")
}

// testTrim is the trim interval of the tests.
const testTrim = 100 * time.Millisecond

// target returns the TrimTarget of a stream.
func target(stream string) bus.TrimTarget {
	for _, t := range bus.TrimTargets() {
		if t.Stream == stream {
			return t
		}
	}
	panic("no trim target " + stream)
}

// Trim purges the subjects of processors, one type's jobs and its batches,
// and no other filter of the jobs stream.
func TestTrimTargetsOfJobs(t *testing.T) {
	t.Parallel()
	jobs := target(contract.StreamJobs)
	for filter, want := range map[string]bool{
		contract.JobSubject("*", "image.resize"):      true,
		contract.JobBatchSubject("*", "image.resize"): true,
		contract.SubjectJobs + ".>":                   false,
		contract.JobSubject("acme", "image.resize"):   false,
		contract.SubjectJobs + ".*.$batch":            false,
		contract.SubjectJobs + ".*.$batch.>":          false,
	} {
		require.Equal(t, want, jobs.Trims(filter), filter)
	}
}

// A consumer of the whole deliveries stream does not make Trim purge the
// retry schedules, which no consumer is meant to read: the retry still fires.
func TestTrimKeepsRetrySchedules(t *testing.T) {
	t.Parallel()
	ctx, js := startStreams(t, bus.Topology{})
	deliver := durable(t, js, contract.StreamDeliveries, "deliver", contract.SubjectDeliveries+".>", jetstream.AckExplicitPolicy)
	tap := durable(t, js, contract.StreamDeliveries, "tap", "", jetstream.AckNonePolicy)
	tc, err := tap.Consume(func(jetstream.Msg) {})
	require.NoError(t, err)
	defer tc.Stop()
	go func() { _ = bus.Trim(ctx, js, slog.New(slog.DiscardHandler), testTrim, bus.TrimTargets()...) }()

	_, err = js.Publish(ctx, contract.RetrySubject("msg_1"), []byte("retry"),
		jetstream.WithScheduleAt(time.Now().Add(2*time.Second)), jetstream.WithScheduleTarget(contract.DeliverySubject("acme", "cb")))
	require.NoError(t, err)
	_, err = js.Publish(ctx, contract.DeliverySubject("acme", "cb"), []byte("first"))
	require.NoError(t, err)
	msg, err := deliver.Next(jetstream.FetchMaxWait(5 * time.Second))
	require.NoError(t, err)
	require.Equal(t, "first", string(msg.Data()))
	require.NoError(t, msg.DoubleAck(ctx))

	msg, err = deliver.Next(jetstream.FetchMaxWait(10 * time.Second))
	require.NoError(t, err, "the retry schedule was purged")
	require.Equal(t, "retry", string(msg.Data()))
}

// While a consumer may have redeliveries queued (something pending, no pull
// request waiting), Trim holds its purge back, unless the stream is filling
// up: then it purges anyway.
func TestTrimWaitsForAQuietMomentUnlessFull(t *testing.T) {
	t.Parallel()
	ctx, js := startStreams(t, bus.Topology{StreamMaxBytes: 64 << 10})
	cons := durable(t, js, contract.StreamJobs, "echo", contract.SubjectJobs+".*.echo", jetstream.AckExplicitPolicy)
	publish := func(n, size int) {
		for range n {
			_, err := js.Publish(ctx, contract.JobSubject("acme", "echo"), make([]byte, size))
			require.NoError(t, err)
		}
	}
	publish(4, 10)
	batch, err := cons.Fetch(4, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	var msgs []jetstream.Msg
	for msg := range batch.Messages() {
		msgs = append(msgs, msg)
	}
	require.Len(t, msgs, 4)
	for _, msg := range msgs[:3] {
		require.NoError(t, msg.DoubleAck(ctx))
	}
	go func() { _ = bus.Trim(ctx, js, slog.New(slog.DiscardHandler), testTrim, bus.TrimTargets()...) }()

	time.Sleep(20 * testTrim)
	require.EqualValues(t, 4, streamMsgs(t, js, contract.StreamJobs), "one job pending, no pull request waiting: not quiet")
	publish(3, 4<<10) // more than an eighth of 64 KiB
	require.Eventually(t, func() bool { return streamMsgs(t, js, contract.StreamJobs) == 1+3 },
		10*time.Second, 20*time.Millisecond, "the three acknowledged jobs go when the stream fills up")
}

// startStreams starts a NATS server with hookstream's streams.
func startStreams(t *testing.T, topo bus.Topology) (context.Context, jetstream.JetStream) {
	t.Helper()
	_, js := natstest.Start(t).Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	require.NoError(t, bus.Ensure(ctx, js, topo))
	return ctx, js
}

// durable creates a durable consumer of stream.
func durable(t *testing.T, js jetstream.JetStream, stream, name, filter string, ack jetstream.AckPolicy) jetstream.Consumer {
	t.Helper()
	cons, err := js.CreateOrUpdateConsumer(context.Background(), stream, jetstream.ConsumerConfig{
		Durable: name, FilterSubject: filter, AckPolicy: ack,
	})
	require.NoError(t, err)
	return cons
}

// ackNext fetches the consumer's next n messages and acknowledges them.
func ackNext(ctx context.Context, t *testing.T, cons jetstream.Consumer, n int) {
	t.Helper()
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	got := 0
	for msg := range batch.Messages() {
		require.NoError(t, msg.DoubleAck(ctx))
		got++
	}
	require.Equal(t, n, got)
}

// Events fanned out stay for their ids' de-duplication window: a NATS
// server that restarts rebuilds it from the messages it holds, and an event
// id used again after a restart was taken for a new event (found by review:
// its webhooks were sent again). A target with a short Keep purges them
// once they are older.
func TestTrimKeepsEventsForTheirDuplicateWindow(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func() (jetstream.JetStream, func()) {
		ns, err := embeddednats.Start(embeddednats.Config{StoreDir: dir}, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		nc, js, err := bus.Connect(bus.ConnectOptions{InProcess: ns, Name: t.Name()}, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		return js, func() { nc.Close(); ns.Shutdown(); ns.WaitForShutdown() }
	}
	js, stop := start()
	ctx := t.Context()
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))
	cons := durable(t, js, contract.StreamEvents, "fanout", contract.SubjectEvents+".>", jetstream.AckExplicitPolicy)
	publish := func(js jetstream.JetStream, id string) *jetstream.PubAck {
		ack, err := js.PublishMsg(ctx, bus.EventMsg("acme", "invoice.paid", "acme:"+id, time.Now(), []byte(`{}`)))
		require.NoError(t, err)
		return ack
	}
	for _, id := range []string{"in_1", "in_2", "in_3"} {
		publish(js, id)
	}
	ackNext(ctx, t, cons, 3)
	trimCtx, stopTrim := context.WithCancel(ctx)
	trimmed := make(chan error, 1)
	go func() {
		trimmed <- bus.Trim(trimCtx, js, slog.New(slog.DiscardHandler), testTrim, bus.TrimTargets()...)
	}()
	time.Sleep(10 * testTrim) // rounds of trimming
	stopTrim()
	require.NoError(t, <-trimmed)
	require.EqualValues(t, 3, streamMsgs(t, js, contract.StreamEvents), "acknowledged events younger than the window stay")
	stop()

	js, stop = start()
	defer stop()
	require.True(t, publish(js, "in_2").Duplicate, "the id used again after a restart")
	require.False(t, publish(js, "in_4").Duplicate)

	short := target(contract.StreamEvents)
	short.Keep = time.Nanosecond
	cons, err := js.Consumer(ctx, contract.StreamEvents, "fanout")
	require.NoError(t, err)
	ackNext(ctx, t, cons, 1)
	trimCtx, stopTrim = context.WithCancel(ctx)
	defer stopTrim()
	go func() { _ = bus.Trim(trimCtx, js, slog.New(slog.DiscardHandler), testTrim, short) }()
	require.Eventually(t, func() bool { return streamMsgs(t, js, contract.StreamEvents) == 0 },
		10*time.Second, 20*time.Millisecond, "older than Keep, they go")
}
