package processor_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/processor"
	"github.com/hookstream/hookstream/shared/contract"
)

// A job that runs longer than AckWait keeps its lease: JetStream does not
// hand it to another worker meanwhile.
func TestRunLongJobKeepsLease(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var runs atomic.Int32
	slow := processor.HandlerFunc(func(ctx context.Context, _ processor.Job) (json.RawMessage, error) {
		runs.Add(1)
		select {
		case <-time.After(1500 * time.Millisecond):
		case <-ctx.Done():
		}
		return json.RawMessage(`"slow"`), nil
	})
	b.start(t, processor.Config{Handlers: map[string]processor.Handler{"slow": slow}, AckWait: time.Second})
	b.publishJob(t, "acme", "slow", "job_slow", jobRequest(t, contract.JobRequest{}))
	rec := b.waitJob(t, "job_slow")
	require.Equal(t, contract.StatusSucceeded, rec.Status)
	require.Equal(t, 1, rec.Attempts)
	require.EqualValues(t, 1, runs.Load(), "in-progress acks kept the job from being redelivered")
}

// Processors that run different job types share the cluster: each job is
// run by a processor that has its handler. This is the case of a scaled-out
// deployment with dedicated workers, and of a rolling upgrade that adds a
// job type while old processors still run.
func TestRunProcessorsWithDifferentTypes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.start(t, processor.Config{Handlers: map[string]processor.Handler{"echo": processor.Echo}})
	b.start(t, processor.Config{Handlers: map[string]processor.Handler{"resize": processor.Echo}})
	ids := map[string]string{"job_e1": "echo", "job_r1": "resize", "job_e2": "echo", "job_r2": "resize"}
	for id, jobType := range ids {
		b.publishJob(t, "acme", jobType, id, jobRequest(t, contract.JobRequest{Payload: json.RawMessage(`1`)}))
	}
	for id := range ids {
		rec := b.waitJob(t, id)
		require.Equal(t, contract.StatusSucceeded, rec.Status, "%s: %s", id, rec.Error)
		require.Equal(t, 1, rec.Attempts)
	}
}
