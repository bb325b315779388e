package bus

import (
	"context"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/embeddednats"
)

// A consumer created after Trim listed the readers, before it purges,
// keeps what it has not read: the purge waits for a round that lists it.
func TestTrimWaitsForAConsumerCreatedMeanwhile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns, err := embeddednats.Start(embeddednats.Config{StoreDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}})
	require.NoError(t, err)
	for range 5 {
		_, err := js.Publish(ctx, "t.a", []byte("x"))
		require.NoError(t, err)
	}
	first, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "first", FilterSubject: "t.a", AckPolicy: jetstream.AckAllPolicy})
	require.NoError(t, err)
	batch, err := first.Fetch(5)
	require.NoError(t, err)
	var last jetstream.Msg
	for msg := range batch.Messages() {
		last = msg
	}
	require.NoError(t, last.DoubleAck(ctx))

	st := &streamTrim{TrimTarget: TrimTarget{Stream: "T"}, stream: stream, filters: map[string]*filterTrim{}}
	readers, err := st.readers(ctx)
	require.NoError(t, err)
	_, err = stream.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "second", FilterSubject: "t.a", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	require.NoError(t, st.purge(ctx, "t.a", readers))
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(5), info.State.Msgs, "nothing purged")

	readers, err = st.readers(ctx) // the next round: the second has read nothing
	require.NoError(t, err)
	require.NoError(t, st.purge(ctx, "t.a", readers))
	info, err = stream.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(5), info.State.Msgs, "still nothing: the second's floor is 0")
}
