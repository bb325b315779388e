package bus_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/embeddednats"
)

// TestPublishAnswersAsJetStream: GroupCommit's own publish (it reads
// PubAcks by hand) gives what nats.go's PublishMsg gives, for each kind of
// reply a real server sends.
func TestPublishAnswersAsJetStream(t *testing.T) {
	t.Parallel()
	_, js := startStream(t, false)
	pub := bus.NewGroupCommit(js, false)
	t.Cleanup(pub.Close)
	ctx := context.Background()
	msg := func(subject, id string, expectLast string) *nats.Msg {
		m := nats.NewMsg(subject)
		m.Data = []byte("x")
		if id != "" {
			m.Header.Set(jetstream.MsgIDHeader, id)
		}
		if expectLast != "" {
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, expectLast)
		}
		return m
	}

	ack, err := pub.PublishMsg(ctx, msg("t.a", "one", ""))
	require.NoError(t, err)
	require.Equal(t, &jetstream.PubAck{Stream: "T", Sequence: 1}, ack)
	want, err := js.PublishMsg(ctx, msg("t.b", "two", ""))
	require.NoError(t, err)
	ack, err = pub.PublishMsg(ctx, msg("t.c", "three", ""))
	require.NoError(t, err)
	require.Equal(t, &jetstream.PubAck{Stream: "T", Sequence: want.Sequence + 1}, ack)

	t.Run("duplicate", func(t *testing.T) {
		want, err := js.PublishMsg(ctx, msg("t.a", "one", ""))
		require.NoError(t, err)
		got, err := pub.PublishMsg(ctx, msg("t.a", "one", ""))
		require.NoError(t, err)
		require.Equal(t, want, got)
		require.True(t, got.Duplicate)
	})
	t.Run("wrong last sequence", func(t *testing.T) {
		_, want := js.PublishMsg(ctx, msg("t.a", "", "0"))
		_, got := pub.PublishMsg(ctx, msg("t.a", "", "0"))
		require.Error(t, got)
		require.Equal(t, want.Error(), got.Error())
		require.True(t, bus.IsWrongLastSequence(got))
	})
	t.Run("no stream", func(t *testing.T) {
		_, want := js.PublishMsg(ctx, msg("elsewhere", "", ""))
		_, got := pub.PublishMsg(ctx, msg("elsewhere", "", ""))
		require.ErrorIs(t, want, jetstream.ErrNoStreamResponse)
		require.ErrorIs(t, got, jetstream.ErrNoStreamResponse)
		require.True(t, bus.IsUnavailable(got))
	})
	t.Run("context ended", func(t *testing.T) {
		ended, cancel := context.WithCancel(ctx)
		cancel()
		_, got := pub.PublishMsg(ended, msg("t.d", "", ""))
		require.ErrorIs(t, got, context.Canceled)
	})
}

// BenchmarkPublish: one synchronous JetStream publish at a time from each of
// 16 goroutines, with an interval sync, through nats.go's PublishMsg and
// through GroupCommit's own publish (group commits off).
func BenchmarkPublish(b *testing.B) {
	ns, err := embeddednats.Start(embeddednats.Config{StoreDir: b.TempDir()}, slog.New(slog.DiscardHandler))
	require.NoError(b, err)
	b.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, js, err := bus.Connect(bus.ConnectOptions{InProcess: ns, Name: b.Name()}, slog.New(slog.DiscardHandler))
	require.NoError(b, err)
	b.Cleanup(nc.Close)
	ctx := context.Background()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage})
	require.NoError(b, err)
	pub := bus.NewGroupCommit(js, false)
	b.Cleanup(pub.Close)
	for name, p := range map[string]bus.Publisher{"nats.go": js, "bus": pub} {
		b.Run(name, func(b *testing.B) {
			b.SetParallelism(8) // 16 publishers on 2 cores
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					m := nats.NewMsg("t.x")
					m.Data = []byte(`{"id":"job_1","status":"succeeded"}`)
					if _, err := p.PublishMsg(ctx, m); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
