package processor_test

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/processor"
	"github.com/hookstream/hookstream/shared/contract"
)

// A job that runs longer than AckWait keeps its lease: JetStream does not
// hand it to another worker meanwhile. So do the jobs that wait for a
// worker while every one runs such a job.
func TestRunLongJobKeepsLease(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var mu sync.Mutex
	runs := map[string]int{}
	slow := processor.HandlerFunc(func(ctx context.Context, job processor.Job) (json.RawMessage, error) {
		mu.Lock()
		runs[job.ID]++
		mu.Unlock()
		select {
		case <-time.After(2500 * time.Millisecond):
		case <-ctx.Done():
		}
		return json.RawMessage(`"slow"`), nil
	})
	// Kept alive every third of AckWait: a slow machine's stall of up to
	// two thirds of it (1.3 s) does not hand a job out again.
	b.start(t, processor.Config{Handlers: map[string]processor.Handler{"slow": slow}, AckWait: 2 * time.Second, Concurrency: 2})
	ids := []string{"job_slow1", "job_slow2", "job_slow3", "job_slow4", "job_slow5"}
	for _, id := range ids {
		b.publishJob(t, "acme", "slow", id, jobRequest(t, contract.JobRequest{ID: id}))
	}
	for _, id := range ids {
		rec := b.waitJob(t, id)
		require.Equal(t, contract.StatusSucceeded, rec.Status, id)
		require.Equal(t, 1, rec.Attempts, id)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		require.Equal(t, 1, runs[id], "%s: in-progress acks kept the job from being redelivered", id)
	}
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

// A job done quickly has its record written once, with its result; a slow
// one is marked running while it runs. Either way its attempt is counted.
func TestRunMarksOnlySlowJobsRunning(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name              string
		givenRunTime      time.Duration
		givenRunningAfter time.Duration // for the quick job, longer than any stall of a slow machine
		wantStatuses      []string
	}{
		{"quick job", 0, time.Hour, []string{contract.StatusQueued, contract.StatusSucceeded}},
		{"slow job", time.Second, 50 * time.Millisecond, []string{contract.StatusQueued, contract.StatusRunning, contract.StatusSucceeded}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := context.Background()
			work := processor.HandlerFunc(func(context.Context, processor.Job) (json.RawMessage, error) {
				time.Sleep(tt.givenRunTime)
				return json.RawMessage(`"done"`), nil
			})
			b.start(t, processor.Config{Handlers: map[string]processor.Handler{"work": work}, RunningAfter: tt.givenRunningAfter})
			const id = "job_timed"
			now := time.Now().UTC()
			_, err := b.jobs.Create(ctx, contract.JobRecord{
				Job:    contract.Job{ID: id, Type: "work", Status: contract.StatusQueued, CreatedAt: now, UpdatedAt: now},
				Tenant: "acme",
			})
			require.NoError(t, err)
			kv, err := b.js.KeyValue(ctx, contract.BucketJobs)
			require.NoError(t, err)
			watchCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			w, err := kv.Watch(watchCtx, id)
			require.NoError(t, err)
			defer func() { _ = w.Stop() }()
			var statuses []string
			var last contract.JobRecord
			// The job is published once the watch has the queued record
			// (its initial values end with nil): a job done sooner would
			// leave the watch only its result.
			published := false
			for !contract.Terminal(last.Status) {
				select {
				case entry := <-w.Updates():
					if entry == nil {
						if !published {
							b.publishJob(t, "acme", "work", id, jobRequest(t, contract.JobRequest{ID: id}))
							published = true
						}
						continue
					}
					require.NoError(t, json.Unmarshal(entry.Value(), &last))
					statuses = append(statuses, last.Status)
				case <-watchCtx.Done():
					t.Fatalf("job not finished; statuses so far %v", statuses)
				}
			}
			require.Equal(t, tt.wantStatuses, statuses)
			require.Equal(t, 1, last.Attempts)
			require.JSONEq(t, `"done"`, string(last.Result))
		})
	}
}

// A job whose running mark failed for JetStream while it ran (here the
// records bucket refuses every write for a moment) has its outcome
// recorded once it is done, its attempt counted once; it was run again,
// its result thrown away.
func TestRunWhoseRunningMarkFailedIsNotRunAgain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	records, err := b.js.Stream(ctx, "KV_"+contract.BucketJobs)
	require.NoError(t, err)
	cfg := records.CachedInfo().Config
	cfg.MaxMsgSize = 64 // every record is larger
	_, err = b.js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	var runs atomic.Int32
	handler := processor.HandlerFunc(func(_ context.Context, job processor.Job) (json.RawMessage, error) {
		if runs.Add(1) == 1 {
			time.Sleep(time.Second) // the running mark, at 50 ms, fails
			cfg.MaxMsgSize = -1
			_, err := b.js.UpdateStream(ctx, cfg)
			require.NoError(t, err)
		}
		return job.Payload, nil
	})
	b.start(t, processor.Config{Handlers: map[string]processor.Handler{"echo": handler}, RunningAfter: 50 * time.Millisecond})
	b.publishJob(t, "acme", "echo", "", []byte(`{"nonce":"n1","payload":"x"}`)) // as intake stores it: no record
	rec := b.waitJob(t, b.intakeJobID(1, "n1"))
	require.Equal(t, contract.StatusSucceeded, rec.Status)
	require.Equal(t, 1, rec.Attempts)
	require.JSONEq(t, `"x"`, string(rec.Result))
	require.Equal(t, int32(1), runs.Load(), "run again")
}
