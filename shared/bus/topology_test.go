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
	// Job records hold the Idempotency-Keys: kept at least 24 h (invariant
	// 8), by default 7 days; attempt logs outlive the retry schedule.
	records, err := js.KeyValue(ctx, contract.BucketJobs)
	require.NoError(t, err)
	st, err := records.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, 7*24*time.Hour, st.TTL())
	logs, err := js.KeyValue(ctx, contract.BucketDeliveries)
	require.NoError(t, err)
	st, err = logs.Status(ctx)
	require.NoError(t, err)
	require.Greater(t, st.TTL(), retryWindow)
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

// A second Ensure of the same topology changes nothing on the server: an
// update makes it check the streams' storage reservation again, which
// failed a restart once the disk had filled.
func TestEnsureLeavesWhatIsAsGivenAlone(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))
	changes, err := nc.SubscribeSync("$JS.API.STREAM.*.>")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))
	require.NoError(t, nc.Flush())
	for {
		msg, err := changes.NextMsg(100 * time.Millisecond)
		if err != nil {
			break
		}
		require.NotRegexp(t, `^\$JS\.API\.STREAM\.(CREATE|UPDATE)\.`, msg.Subject, "an Ensure of what is there already")
	}
}

// With KeepHigher (the services of a split deployment), a stream or bucket
// with a longer retention or more room than the process's settings keeps
// them, and each is reported; without it (serve) they are set as given.
func TestEnsureKeepsHigherSettings(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	longer := bus.Topology{StreamMaxBytes: 2 << 30, JobRetention: 240 * time.Hour, DeliveryRetention: 240 * time.Hour}
	require.NoError(t, bus.Ensure(ctx, js, longer))
	settings := func() (jobsBytes int64, deliveriesAge, recordsTTL time.Duration) {
		jobs, err := js.Stream(ctx, contract.StreamJobs)
		require.NoError(t, err)
		deliveries, err := js.Stream(ctx, contract.StreamDeliveries)
		require.NoError(t, err)
		records, err := js.Stream(ctx, "KV_"+contract.BucketJobs)
		require.NoError(t, err)
		return jobs.CachedInfo().Config.MaxBytes, deliveries.CachedInfo().Config.MaxAge, records.CachedInfo().Config.MaxAge
	}
	var kept []string
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{KeepHigher: true, Kept: func(what string) { kept = append(kept, what) }}))
	jobsBytes, deliveriesAge, recordsTTL := settings()
	require.EqualValues(t, 2<<30, jobsBytes)
	require.Equal(t, 240*time.Hour, deliveriesAge)
	require.Equal(t, 240*time.Hour, recordsTTL)
	require.Contains(t, kept, "stream HOOKSTREAM_JOBS keeps max bytes 2147483648, more than this process's 1073741824")
	require.Contains(t, kept, "bucket "+contract.BucketJobs+" keeps max age 240h0m0s, more than this process's 168h0m0s")

	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))
	jobsBytes, deliveriesAge, recordsTTL = settings()
	require.EqualValues(t, bus.DefaultStreamMaxBytes, jobsBytes)
	require.Equal(t, bus.DefaultDeliveryRetention, deliveriesAge)
	require.Equal(t, bus.DefaultJobRetention, recordsTTL)
}
