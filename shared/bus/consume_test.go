package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/bus"
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
