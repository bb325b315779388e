package processor_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/processor"
	"github.com/hookstream/hookstream/shared/contract"
)

// A job whose record fits the NATS server's max_payload, but whose event
// (the same resource with the event's headers) or whose delivery would
// not, has its event published without its result, which its record
// keeps, and with "omitted":["result"] to tell its receiver. Before, the record said succeeded and its event was never
// published: its message came back every second for ever.
func TestEventOfAJobWithAResultNearTheLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	nc, _ := b.srv.Connect(t)
	maxPayload := int(nc.MaxPayload())
	var size atomic.Int64
	size.Store(1)
	h := processor.HandlerFunc(func(context.Context, processor.Job) (json.RawMessage, error) {
		return json.RawMessage(`"` + strings.Repeat("x", int(size.Load())) + `"`), nil
	})
	b.start(t, processor.Config{Handlers: map[string]processor.Handler{"big": h}, RunningAfter: time.Hour})
	ctx := context.Background()
	b.publishJob(t, "acme", "big", "job_small", jobRequest(t, contract.JobRequest{ID: "job_small"}))
	b.waitJob(t, "job_small")
	kv, err := b.js.KeyValue(ctx, contract.BucketJobs)
	require.NoError(t, err)
	e, err := kv.Get(ctx, "job_small")
	require.NoError(t, err)
	size.Store(int64(1 + maxPayload - 100 - len(e.Value()))) // the record leaves ~100 bytes for its headers
	b.publishJob(t, "acme2", "big", "job_large", jobRequest(t, contract.JobRequest{ID: "job_large"}))
	rec := b.waitJob(t, "job_large")
	require.Equal(t, contract.StatusSucceeded, rec.Status)
	require.Len(t, rec.Result, int(size.Load())+2, "the record keeps the result")
	s, err := b.js.Stream(ctx, contract.StreamEvents)
	require.NoError(t, err)
	var event *jetstream.RawStreamMsg
	require.Eventually(t, func() bool {
		event, err = s.GetLastMsgForSubject(ctx, contract.EventSubject("acme2", "job.succeeded"))
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "the job succeeded but its event was never published")
	var job contract.Job
	require.NoError(t, json.Unmarshal(event.Data, &job))
	require.Equal(t, contract.StatusSucceeded, job.Status)
	require.Empty(t, job.Result, "the event goes without the result")
	require.Equal(t, []string{"result"}, job.Omitted, "and says so")
	small, err := s.GetLastMsgForSubject(ctx, contract.EventSubject("acme", "job.succeeded"))
	require.NoError(t, err)
	var fits contract.Job
	require.NoError(t, json.Unmarshal(small.Data, &fits))
	require.Equal(t, "job_small", fits.ID)
	require.Nil(t, fits.Omitted, "a job that fits omits nothing")
}

// A result ready as the shutdown grace ends is recorded: it was written
// with the context that shutdown had ended, lost with its attempt counted,
// and the next processor failed the job (MaxAttempts 1) as "attempts
// exhausted", though its work had succeeded.
func TestResultReadyAtShutdownIsRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	started := make(chan struct{}, 1)
	finishing := processor.HandlerFunc(func(ctx context.Context, _ processor.Job) (json.RawMessage, error) {
		started <- struct{}{}
		<-ctx.Done()
		return json.RawMessage(`"done"`), nil // the work finished as the grace ended
	})
	r := b.start(t, processor.Config{Handlers: map[string]processor.Handler{"w": finishing}, MaxAttempts: 1, RunningAfter: -1, ShutdownGrace: 200 * time.Millisecond})
	b.publishJob(t, "acme", "w", "job_sd", jobRequest(t, contract.JobRequest{}))
	<-started
	r.stop(t)
	rec, _, err := b.jobs.Get(context.Background(), "job_sd")
	require.NoError(t, err)
	require.Equal(t, contract.StatusSucceeded, rec.Status)
	require.JSONEq(t, `"done"`, string(rec.Result))
}
