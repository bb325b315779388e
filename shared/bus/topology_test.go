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
	"github.com/hookstream/hookstream/shared/natstest"
)

// retryWindow is the whole default retry schedule with +20 % jitter.
const retryWindow = time.Duration(float64(5*time.Second+5*time.Minute+30*time.Minute+(2+5+10+14+20+24)*time.Hour) * 1.2)

func TestEnsureDeclaresDurableStreams(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}), "Ensure must be idempotent")

	for _, name := range []string{contract.StreamJobs, contract.StreamEvents, contract.StreamDeliveries} {
		s, err := js.Stream(ctx, name)
		require.NoError(t, err)
		cfg := s.CachedInfo().Config
		require.Equal(t, jetstream.FileStorage, cfg.Storage, name)
		require.Equal(t, jetstream.LimitsPolicy, cfg.Retention, name+": acks are trimmed, not synced removals")
		require.Greater(t, cfg.MaxAge, retryWindow, name)
		if name == contract.StreamDeliveries {
			require.True(t, cfg.AllowMsgSchedules)
			require.EqualValues(t, -1, cfg.MaxBytes, "nothing may ever be discarded from deliveries")
			require.EqualValues(t, -1, cfg.MaxMsgs)
		} else {
			require.Equal(t, jetstream.DiscardNew, cfg.Discard, name)
			require.Positive(t, cfg.MaxBytes, name)
		}
	}
	for _, name := range []string{contract.BucketJobs, contract.BucketDeliveries, contract.BucketTenants} {
		kv, err := js.KeyValue(ctx, name)
		require.NoError(t, err)
		st, err := kv.Status(ctx)
		require.NoError(t, err)
		require.Equal(t, jetstream.FileStorage, st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Storage)
	}
}

// A retry scheduled in the deliveries stream arrives on its delivery subject
// when due, and the schedule is removed.
func TestScheduledRetryArrives(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))
	cons, err := js.CreateOrUpdateConsumer(ctx, contract.StreamDeliveries, jetstream.ConsumerConfig{
		Durable: "t", FilterSubject: contract.SubjectDeliveries + ".>", AckPolicy: jetstream.AckExplicitPolicy,
	})
	require.NoError(t, err)
	_, err = js.Publish(ctx, contract.RetrySubject("msg_1"), []byte("retry"),
		jetstream.WithScheduleAt(time.Now().Add(time.Second)), jetstream.WithScheduleTarget(contract.DeliverySubject("acme", "cb")))
	require.NoError(t, err)
	msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	require.NoError(t, err)
	require.Equal(t, "retry", string(msg.Data()))
	require.NoError(t, msg.DoubleAck(ctx))
	trimCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_ = bus.Trim(trimCtx, js, slog.New(slog.DiscardHandler), testTrim, target(contract.StreamDeliveries))
	}()
	require.Eventually(t, func() bool {
		s, err := js.Stream(ctx, contract.StreamDeliveries)
		require.NoError(t, err)
		info, err := s.Info(ctx)
		require.NoError(t, err)
		return info.State.Msgs == 0
	}, 5*time.Second, 50*time.Millisecond, "the fired schedule and the acked delivery are gone")
}
