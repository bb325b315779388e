package processor

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/jobstore"
	"github.com/hookstream/hookstream/shared/natstest"
	"github.com/hookstream/hookstream/shared/secretbox"
)

// markStoredButFailed stores the first record write that says running (the
// timed mark), then answers it with a timeout, as when the PubAck is lost.
type markStoredButFailed struct {
	js   jetstream.JetStream
	done atomic.Bool
}

func (m *markStoredButFailed) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	ack, err := m.js.PublishMsg(ctx, msg, opts...)
	if err == nil && strings.HasPrefix(msg.Subject, "$KV."+contract.BucketJobs+".") &&
		bytes.Contains(msg.Data, []byte(`"status":"running"`)) && m.done.CompareAndSwap(false, true) {
		return nil, context.DeadlineExceeded
	}
	return ack, err
}

// startWithRecordWriter runs a processor of echo jobs whose record writes
// go through w (nil: straight to JetStream); stop stops it and waits.
func startWithRecordWriter(t *testing.T, js jetstream.JetStream, box *secretbox.Box, h Handler, w bus.Publisher) (*Processor, func()) {
	t.Helper()
	ctx := context.Background()
	p, err := New(ctx, Config{Handlers: map[string]Handler{"echo": h}, Box: box, RunningAfter: 50 * time.Millisecond, ShutdownGrace: 200 * time.Millisecond,
		RetryDelay: func(int) time.Duration { return 5 * time.Millisecond }}, js, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	if w != nil {
		p.jobs, err = jobstore.Open(ctx, js, w)
		require.NoError(t, err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- p.Run(runCtx) }()
	var stopped atomic.Bool
	stopFn := func() {
		if stopped.CompareAndSwap(false, true) {
			stop()
			<-ran
		}
	}
	t.Cleanup(stopFn)
	return p, stopFn
}

// publishIntakeJob publishes an echo job as intake stores it: its message
// alone, with the nonce n1.
func publishIntakeJob(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	msg := nats.NewMsg(contract.JobSubject("acme", "echo"))
	msg.Data = []byte(`{"nonce":"n1","payload":"x"}`)
	_, err := js.PublishMsg(context.Background(), msg)
	require.NoError(t, err)
}

// startMarkTest starts a NATS server with hookstream's streams, and
// returns the job store and the id of the job publishIntakeJob publishes.
func startMarkTest(t *testing.T) (jetstream.JetStream, *secretbox.Box, *jobstore.Store, string) {
	t.Helper()
	_, js := natstest.Start(t).Connect(t)
	require.NoError(t, bus.Ensure(context.Background(), js, bus.Topology{}))
	box, err := secretbox.New(make([]byte, secretbox.KeySize))
	require.NoError(t, err)
	store, err := jobstore.Open(context.Background(), js, js)
	require.NoError(t, err)
	return js, box, store, contract.SequenceJobID(1^box.JobIDMask("n1"), "n1")
}

// A job whose running mark was stored but answered with an error (its
// PubAck lost) counts its attempt once: the mark is its claim.
func TestRunWhoseRunningMarkWasStoredUnawaresCountsOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, box, store, id := startMarkTest(t)
	w := &markStoredButFailed{js: js}
	h := HandlerFunc(func(_ context.Context, job Job) (json.RawMessage, error) {
		time.Sleep(300 * time.Millisecond)
		return job.Payload, nil
	})
	startWithRecordWriter(t, js, box, h, w)
	publishIntakeJob(t, js)
	var rec contract.JobRecord
	var err error
	require.Eventually(t, func() bool {
		rec, _, err = store.Get(ctx, id)
		return err == nil && contract.Terminal(rec.Status)
	}, 10*time.Second, 10*time.Millisecond)
	require.True(t, w.done.Load())
	require.Equal(t, contract.StatusSucceeded, rec.Status)
	require.Equal(t, 1, rec.Attempts)
}

// The same, then the processor shuts down mid-run: the attempt cut short
// is given back, and the run of the redelivery is the job's first. It was
// counted: attempts 2 for one run.
func TestRunWhoseRunningMarkWasStoredUnawaresGivesBackItsAttempt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, box, store, id := startMarkTest(t)

	w := &markStoredButFailed{js: js}
	var runs atomic.Int32
	h := HandlerFunc(func(ctx context.Context, job Job) (json.RawMessage, error) {
		if runs.Add(1) == 1 {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return job.Payload, nil
	})
	_, stop := startWithRecordWriter(t, js, box, h, w)
	publishIntakeJob(t, js)
	require.Eventually(t, func() bool { return w.done.Load() }, 10*time.Second, 10*time.Millisecond)
	stop()
	rec, _, err := store.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, contract.StatusQueued, rec.Status, "the attempt cut short is given back")
	require.Zero(t, rec.Attempts)

	startWithRecordWriter(t, js, box, h, nil)
	require.Eventually(t, func() bool {
		rec, _, err = store.Get(ctx, id)
		return err == nil && contract.Terminal(rec.Status)
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, rec.Attempts, "the attempt cut short by shutdown was counted")
}
