package processor_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/processor"
	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/jobevents"
	"github.com/hookstream/hookstream/shared/jobstore"
	"github.com/hookstream/hookstream/shared/natstest"
	"github.com/hookstream/hookstream/shared/secretbox"
)

// bundle is a JetStream server with hookstream's topology, the job store on
// it and a logger that writes to t.Log.
type bundle struct {
	srv    *natstest.Server
	js     jetstream.JetStream
	jobs   *jobstore.Store
	logger *slog.Logger
	// box is the processors' (a random key), as it would be intake's.
	box *secretbox.Box
}

func setup(t *testing.T) *bundle {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx := context.Background()
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))
	jobs, err := jobstore.Open(ctx, js, js)
	require.NoError(t, err)
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	key := make([]byte, secretbox.KeySize)
	_, _ = rand.Read(key)
	box, err := secretbox.New(key)
	require.NoError(t, err)
	return &bundle{srv: srv, js: js, jobs: jobs, logger: logger, box: box}
}

// intakeJobID is the id intake gives the job it publishes at seq with nonce.
func (b *bundle) intakeJobID(seq uint64, nonce string) string {
	return contract.SequenceJobID(seq^b.box.JobIDMask(nonce), nonce)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// running is a processor whose Run goroutine is going.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// start runs a processor until stop or the end of the test. Retries wait a
// few milliseconds unless cfg says otherwise.
func (b *bundle) start(t *testing.T, cfg processor.Config) *running {
	t.Helper()
	if cfg.RetryDelay == nil {
		cfg.RetryDelay = func(int) time.Duration { return 5 * time.Millisecond }
	}
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = time.Second
	}
	if cfg.Box == nil {
		cfg.Box = b.box
	}
	p, err := processor.New(context.Background(), cfg, b.js, b.logger)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop ends Run and waits for it to return; it may be called twice.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("processor did not stop within 10s")
	}
}

// publishJob submits a job straight to NATS, as an internal service does.
func (b *bundle) publishJob(t *testing.T, tenant, jobType, msgID string, data []byte) {
	t.Helper()
	msg := nats.NewMsg(contract.JobSubject(tenant, jobType))
	msg.Data = data
	if msgID != "" {
		msg.Header.Set(contract.HeaderMsgID, msgID)
	}
	_, err := b.js.PublishMsg(context.Background(), msg)
	require.NoError(t, err)
}

func jobRequest(t *testing.T, req contract.JobRequest) []byte {
	t.Helper()
	data, err := json.Marshal(req)
	require.NoError(t, err)
	return data
}

// waitJob waits until the job's record reaches a terminal status.
func (b *bundle) waitJob(t *testing.T, id string) contract.JobRecord {
	t.Helper()
	var rec contract.JobRecord
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got, _, err := b.jobs.Get(context.Background(), id)
		if !assert.NoError(c, err) {
			return
		}
		rec = got
		assert.True(c, contract.Terminal(got.Status), "status %s", got.Status)
	}, 10*time.Second, 10*time.Millisecond, "job %s never finished", id)
	return rec
}

// lastEvent returns the latest event on hookstream.events.<tenant>.job.<status>,
// waiting for it: the event is published just after the job's record is.
func (b *bundle) lastEvent(t *testing.T, tenant, status string) (*jetstream.RawStreamMsg, contract.Job) {
	t.Helper()
	ctx := context.Background()
	s, err := b.js.Stream(ctx, contract.StreamEvents)
	require.NoError(t, err)
	var msg *jetstream.RawStreamMsg
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		msg, err = s.GetLastMsgForSubject(ctx, contract.EventSubject(tenant, "job."+status))
		assert.NoError(c, err)
	}, 10*time.Second, 10*time.Millisecond, "no job.%s event", status)
	var job contract.Job
	require.NoError(t, json.Unmarshal(msg.Data, &job))
	return msg, job
}

// waitJobsSettled waits until the processors' consumers have settled every
// message of the jobs stream (the notifier, not running here, trims them).
func (b *bundle) waitJobsSettled(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		s, err := b.js.Stream(context.Background(), contract.StreamJobs)
		require.NoError(t, err)
		lister := s.ListConsumers(context.Background())
		n := 0
		for ci := range lister.Info() {
			if ci.NumPending > 0 || ci.NumAckPending > 0 {
				return false
			}
			n++
		}
		require.NoError(t, lister.Err())
		return n > 0
	}, 10*time.Second, 10*time.Millisecond, "the jobs stream keeps unsettled messages")
}

var echoOnly = map[string]processor.Handler{"echo": processor.Echo}

// In a cluster, a read of a job's record may be answered by a replica
// behind its leader, with the record as it was before the processor's own
// last write. A job whose record reads as queued after its claim must not
// look finished: it still succeeds, in one attempt, and its message is
// settled only then.
func TestRunRecordsResultWhenReadsLag(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.start(t, processor.Config{Handlers: echoOnly, RecordReader: b.srv.LaggingReader(t), RunningAfter: -1})
	b.publishJob(t, "acme", "echo", "lagging-1", jobRequest(t, contract.JobRequest{Payload: json.RawMessage(`{"n":1}`)}))
	rec := b.waitJob(t, "lagging-1")
	require.Equal(t, contract.StatusSucceeded, rec.Status)
	require.Equal(t, 1, rec.Attempts)
	require.JSONEq(t, `{"n":1}`, string(rec.Result))
	b.waitJobsSettled(t)
}

// Two jobs whose ids differ by hookstream's job_ prefix alone (job_x and x,
// both valid ids of internal publishers) are two jobs with two events: the
// event of one was taken for a duplicate of the other's and dropped.
func TestJobIDsWithAndWithoutPrefixHaveTheirOwnEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.start(t, processor.Config{Handlers: echoOnly})
	b.publishJob(t, "acme", "echo", "job_collide1", jobRequest(t, contract.JobRequest{Payload: json.RawMessage(`"acme"`)}))
	b.publishJob(t, "beta", "echo", "collide1", jobRequest(t, contract.JobRequest{Payload: json.RawMessage(`"beta"`)}))
	for _, tenant := range []string{"acme", "beta"} {
		_, job := b.lastEvent(t, tenant, contract.StatusSucceeded)
		require.JSONEq(t, `"`+tenant+`"`, string(job.Result))
	}
	require.NotEqual(t, jobevents.EventID("job_x", contract.StatusSucceeded), jobevents.EventID("x", contract.StatusSucceeded))
}

// A job published straight to NATS, with no record yet, runs: its record
// appears with the result and its terminal event is published.
func TestRunJobPublishedToNATS(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.start(t, processor.Config{Handlers: echoOnly})

	b.publishJob(t, "acme", "echo", "job_x", jobRequest(t, contract.JobRequest{
		Payload: json.RawMessage(`{"hello":"world"}`), CallbackURL: "https://example.com/hook",
		Metadata: map[string]string{"order": "42"},
	}))
	rec := b.waitJob(t, "job_x")
	require.Equal(t, contract.StatusSucceeded, rec.Status)
	require.JSONEq(t, `{"hello":"world"}`, string(rec.Result))
	require.Equal(t, 1, rec.Attempts)
	require.Equal(t, "acme", rec.Tenant)
	require.Equal(t, "echo", rec.Type)
	require.Equal(t, map[string]string{"order": "42"}, rec.Metadata)
	require.Empty(t, rec.Error)
	require.NotNil(t, rec.CompletedAt)
	require.Equal(t, rec.CreatedAt.Add(7*24*time.Hour), rec.ExpiresAt, "default JobRetention")

	msg, job := b.lastEvent(t, "acme", contract.StatusSucceeded)
	require.Equal(t, contract.EventSubject("acme", contract.EventJobSucceeded), msg.Subject)
	require.Equal(t, jobevents.EventID("job_x", contract.StatusSucceeded), msg.Header.Get(contract.HeaderMsgID))
	require.Equal(t, "job_x", msg.Header.Get(contract.HeaderJobID))
	require.Equal(t, "https://example.com/hook", msg.Header.Get(contract.HeaderCallbackURL))
	require.Equal(t, rec.Job.ID, job.ID)
	require.Equal(t, contract.StatusSucceeded, job.Status)
	require.JSONEq(t, `{"hello":"world"}`, string(job.Result))
	b.waitJobsSettled(t)
}

// The job id comes from the body, else the stream sequence and intake's
// nonce, else Nats-Msg-Id, else the stream sequence.
func TestRunJobID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		givenID   string
		givenBody contract.JobRequest
		wantID    string
	}{
		{name: "id in the body wins", givenID: "job_header", givenBody: contract.JobRequest{ID: "job_body"}, wantID: "job_body"},
		{name: "Nats-Msg-Id", givenID: "job_header", wantID: "job_header"},
		{name: "stream sequence", wantID: "job_s1"},
		{name: "stream sequence, masked, and intake's nonce", givenID: "job_header", givenBody: contract.JobRequest{Nonce: "n0nce"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.start(t, processor.Config{Handlers: echoOnly})
			b.publishJob(t, "acme", "echo", tt.givenID, jobRequest(t, tt.givenBody))
			want := tt.wantID
			if tt.givenBody.Nonce != "" {
				want = b.intakeJobID(1, tt.givenBody.Nonce)
				require.NotEqual(t, "job_s1_n0nce", want, "the sequence is masked")
			}
			require.Equal(t, contract.StatusSucceeded, b.waitJob(t, want).Status)
		})
	}
}

// A job that intake stored as its message alone gets its record from the
// processor in one write, with its result and intake's creation time.
func TestRunIntakeJobRecordWrittenOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Never marked running, however slow the machine.
	b.start(t, processor.Config{Handlers: echoOnly, RunningAfter: time.Hour})
	created := time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC)
	b.publishJob(t, "acme", "echo", "", jobRequest(t, contract.JobRequest{Nonce: "n0nce", CreatedAt: &created, Payload: json.RawMessage(`1`)}))
	id := b.intakeJobID(1, "n0nce")
	rec := b.waitJob(t, id)
	require.Equal(t, contract.StatusSucceeded, rec.Status)
	require.Equal(t, 1, rec.Attempts)
	require.True(t, created.Equal(rec.CreatedAt), "created_at is intake's")
	require.Equal(t, created.Add(7*24*time.Hour), rec.ExpiresAt)
	b.waitJobsSettled(t)
	kv, err := b.js.KeyValue(context.Background(), contract.BucketJobs)
	require.NoError(t, err)
	history, err := kv.History(context.Background(), id)
	require.NoError(t, err)
	require.Len(t, history, 1)
	require.EqualValues(t, 1, history[0].Revision(), "one write: the record with the result")
}

// A job still running after RunningAfter has its record marked running and
// a job.running event published, for the endpoints subscribed to it (not
// its callback URL); a quick job has neither.
func TestRunAnnouncesSlowJobRunning(t *testing.T) {
	t.Parallel()
	b := setup(t)
	started, release := make(chan struct{}), make(chan struct{})
	slow := processor.HandlerFunc(func(_ context.Context, job processor.Job) (json.RawMessage, error) {
		if string(job.Payload) == `"slow"` {
			close(started)
			<-release
		}
		return job.Payload, nil
	})
	b.start(t, processor.Config{Handlers: map[string]processor.Handler{"echo": slow}, RunningAfter: time.Second})
	b.publishJob(t, "acme", "echo", "job_quick", jobRequest(t, contract.JobRequest{Payload: json.RawMessage(`"quick"`)}))
	require.Equal(t, contract.StatusSucceeded, b.waitJob(t, "job_quick").Status)
	b.publishJob(t, "acme", "echo", "job_slow", jobRequest(t, contract.JobRequest{
		Payload: json.RawMessage(`"slow"`), CallbackURL: "https://example.com/hook",
	}))
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow job did not start")
	}
	msg, job := b.lastEvent(t, "acme", contract.StatusRunning)
	require.Equal(t, jobevents.EventID("job_slow", contract.StatusRunning)+"_1", msg.Header.Get(contract.HeaderMsgID), "one event per attempt")
	require.Equal(t, "job_slow", msg.Header.Get(contract.HeaderJobID))
	require.Empty(t, msg.Header.Get(contract.HeaderCallbackURL), "the callback URL gets terminal events only")
	require.Equal(t, "job_slow", job.ID)
	require.Equal(t, contract.StatusRunning, job.Status)
	require.Equal(t, 1, job.Attempts)
	close(release)
	require.Equal(t, contract.StatusSucceeded, b.waitJob(t, "job_slow").Status)
	b.waitJobsSettled(t) // the terminal event is published before the ack
	events, err := b.js.Stream(context.Background(), contract.StreamEvents)
	require.NoError(t, err)
	last, err := events.GetLastMsgForSubject(context.Background(), contract.EventSubject("acme", contract.EventJobSucceeded))
	require.NoError(t, err)
	require.Equal(t, "job_slow", last.Header.Get(contract.HeaderJobID))
	require.Equal(t, "https://example.com/hook", last.Header.Get(contract.HeaderCallbackURL))
	info, err := events.Info(context.Background(), jetstream.WithSubjectFilter(contract.EventSubject("acme", contract.EventJobRunning)))
	require.NoError(t, err)
	running := contract.EventSubject("acme", contract.EventJobRunning)
	require.Equal(t, map[string]uint64{running: 1}, info.State.Subjects, "the quick job was never announced running")
}

// A handler's progress reports show in the job's record while it runs, the
// first one even if it came before the record said running, and the last one
// stays with the result.
func TestRunJobProgress(t *testing.T) {
	t.Parallel()
	b := setup(t)
	release := make(chan struct{})
	slow := processor.HandlerFunc(func(_ context.Context, job processor.Job) (json.RawMessage, error) {
		assert.NoError(t, job.Progress(map[string]int{"done": 1, "total": 2}))
		<-release
		assert.NoError(t, job.Progress(map[string]int{"done": 2, "total": 2}))
		assert.Error(t, job.Progress(func() {}), "not JSON")
		assert.Error(t, job.Progress(strings.Repeat("x", processor.MaxProgressBytes)), "too large")
		return json.RawMessage(`"done"`), nil
	})
	cfg := processor.Config{Handlers: map[string]processor.Handler{"echo": slow}, RunningAfter: 50 * time.Millisecond}
	// One write while it runs: the last report can reach the record only
	// with the result.
	processor.WriteProgressEvery(&cfg, time.Hour)
	b.start(t, cfg)
	b.publishJob(t, "acme", "echo", "job_progress", jobRequest(t, contract.JobRequest{}))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		rec, _, err := b.jobs.Get(context.Background(), "job_progress")
		if assert.NoError(c, err) {
			assert.Equal(c, contract.StatusRunning, rec.Status)
			assert.JSONEq(c, `{"done":1,"total":2}`, string(rec.Progress))
		}
	}, 10*time.Second, 10*time.Millisecond)
	close(release)
	b.waitJobsSettled(t)
	rec := b.waitJob(t, "job_progress")
	require.Equal(t, contract.StatusSucceeded, rec.Status)
	require.JSONEq(t, `{"done":2,"total":2}`, string(rec.Progress))
}

// A failed attempt's progress is not shown while its retry waits, nor
// after: each attempt starts over.
func TestRunRetryStartsProgressOver(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var runs atomic.Int32
	flaky := processor.HandlerFunc(func(_ context.Context, job processor.Job) (json.RawMessage, error) {
		if runs.Add(1) == 1 {
			assert.NoError(t, job.Progress("half way"))
			return nil, errors.New("hiccup")
		}
		return json.RawMessage(`"done"`), nil
	})
	b.start(t, processor.Config{
		Handlers: map[string]processor.Handler{"echo": flaky}, RunningAfter: -1,
		RetryDelay: func(int) time.Duration { return time.Second },
	})
	b.publishJob(t, "acme", "echo", "job_retried", jobRequest(t, contract.JobRequest{}))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		rec, _, err := b.jobs.Get(context.Background(), "job_retried")
		if assert.NoError(c, err) {
			assert.Equal(c, contract.StatusQueued, rec.Status)
			assert.Equal(c, 1, rec.Attempts)
		}
	}, 10*time.Second, 5*time.Millisecond, "the retry's wait was not seen")
	waiting, _, err := b.jobs.Get(context.Background(), "job_retried")
	require.NoError(t, err)
	require.Empty(t, waiting.Progress, "the failed attempt's progress, shown while the retry waits")
	rec := b.waitJob(t, "job_retried")
	require.Equal(t, contract.StatusSucceeded, rec.Status)
	require.Equal(t, 2, rec.Attempts)
	require.Empty(t, rec.Progress, "the second attempt reported none")
}

// A job canceled while its first quick run is under way, before it has a
// record, stays canceled: the run's result is dropped.
func TestRunIntakeJobCanceledWhileRunning(t *testing.T) {
	t.Parallel()
	b := setup(t)
	started, release := make(chan struct{}), make(chan struct{})
	slow := processor.HandlerFunc(func(context.Context, processor.Job) (json.RawMessage, error) {
		close(started)
		<-release
		return json.RawMessage(`"done"`), nil
	})
	b.start(t, processor.Config{Handlers: map[string]processor.Handler{"echo": slow}, RunningAfter: time.Hour})
	b.publishJob(t, "acme", "echo", "", jobRequest(t, contract.JobRequest{Nonce: "n0nce"}))
	id := b.intakeJobID(1, "n0nce")
	<-started
	now := time.Now().UTC()
	_, err := b.jobs.Create(context.Background(), contract.JobRecord{
		Job:    contract.Job{ID: id, Type: "echo", Status: contract.StatusCanceled, CreatedAt: now, UpdatedAt: now, CompletedAt: &now},
		Tenant: "acme",
	})
	require.NoError(t, err)
	close(release)
	_, job := b.lastEvent(t, "acme", contract.StatusCanceled)
	require.Equal(t, id, job.ID)
	b.waitJobsSettled(t)
	rec, _, err := b.jobs.Get(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, contract.StatusCanceled, rec.Status)
	require.Empty(t, rec.Result)
}

// A handler that fails is retried after RetryDelay, with the attempt number
// counted in the record; a permanent error or the last attempt fails the
// job with a job.failed event.
func TestRunRetries(t *testing.T) {
	t.Parallel()
	errHiccup := errors.New("worker hiccup")
	tests := []struct {
		name         string
		givenFails   int  // failing attempts before success
		givenPerm    bool // fail with processor.Permanent
		wantStatus   string
		wantAttempts int
		wantError    string
	}{
		{name: "fails then succeeds", givenFails: 2, wantStatus: contract.StatusSucceeded, wantAttempts: 3},
		{name: "fails every attempt", givenFails: 100, wantStatus: contract.StatusFailed, wantAttempts: 4, wantError: "worker hiccup"},
		{name: "permanent error", givenFails: 100, givenPerm: true, wantStatus: contract.StatusFailed, wantAttempts: 1, wantError: "worker hiccup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			var mu sync.Mutex
			var attempts []int
			delays := []int{}
			flaky := processor.HandlerFunc(func(_ context.Context, job processor.Job) (json.RawMessage, error) {
				mu.Lock()
				defer mu.Unlock()
				attempts = append(attempts, job.Attempt)
				if len(attempts) <= tt.givenFails {
					if tt.givenPerm {
						return nil, processor.Permanent(errHiccup)
					}
					return nil, errHiccup
				}
				return json.RawMessage(`"ok"`), nil
			})
			b.start(t, processor.Config{
				Handlers:    map[string]processor.Handler{"flaky": flaky},
				MaxAttempts: 4,
				RetryDelay: func(n int) time.Duration {
					mu.Lock()
					defer mu.Unlock()
					delays = append(delays, n)
					return 5 * time.Millisecond
				},
			})
			b.publishJob(t, "acme", "flaky", "job_flaky", jobRequest(t, contract.JobRequest{}))
			rec := b.waitJob(t, "job_flaky")
			require.Equal(t, tt.wantStatus, rec.Status)
			require.Equal(t, tt.wantAttempts, rec.Attempts)
			if tt.wantError == "" {
				require.Empty(t, rec.Error)
			} else {
				require.Contains(t, rec.Error, tt.wantError)
			}
			b.waitJobsSettled(t)

			mu.Lock()
			defer mu.Unlock()
			wantSeen := make([]int, tt.wantAttempts)
			for i := range wantSeen {
				wantSeen[i] = i + 1
			}
			require.Equal(t, wantSeen, attempts, "Job.Attempt counts from 1, once per run")
			require.Equal(t, wantSeen[:tt.wantAttempts-1], delays, "RetryDelay gets the number of the failed attempt")
			_, job := b.lastEvent(t, "acme", tt.wantStatus)
			require.Equal(t, "job_flaky", job.ID)
		})
	}
}

// A handler that panics fails its job instead of the processor.
func TestRunHandlerPanicFailsJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.start(t, processor.Config{Handlers: map[string]processor.Handler{
		"boom": processor.HandlerFunc(func(context.Context, processor.Job) (json.RawMessage, error) { panic("boom") }),
		"echo": processor.Echo,
	}})
	b.publishJob(t, "acme", "boom", "job_boom", jobRequest(t, contract.JobRequest{}))
	rec := b.waitJob(t, "job_boom")
	require.Equal(t, contract.StatusFailed, rec.Status)
	require.Equal(t, 1, rec.Attempts)
	require.Contains(t, rec.Error, "panicked")

	b.publishJob(t, "acme", "echo", "job_after", jobRequest(t, contract.JobRequest{}))
	require.Equal(t, contract.StatusSucceeded, b.waitJob(t, "job_after").Status, "the processor keeps running")
}

// publishBatch publishes jobs as one message, as intake writes the jobs
// that wait for the same subject, and returns its stream sequence.
func (b *bundle) publishBatch(t *testing.T, tenant, jobType string, jobs ...contract.JobRequest) uint64 {
	t.Helper()
	msg := nats.NewMsg(contract.JobBatchSubject(tenant, jobType))
	data, err := json.Marshal(contract.JobBatch{Jobs: jobs})
	require.NoError(t, err)
	msg.Data = data
	msg.Header.Set(contract.HeaderJobBatch, strconv.Itoa(len(jobs)))
	ack, err := b.js.PublishMsg(context.Background(), msg)
	require.NoError(t, err)
	return ack.Sequence
}

// The jobs of a batch message run at once, within Concurrency, each with
// its own id, record and event. A job of it that fails is written again as
// a message of its own, which runs once its retry is due; the batch is
// acknowledged, and its other jobs run once.
func TestRunBatchOfJobs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var running, most, flakyRuns atomic.Int32
	var flakyAt [2]atomic.Int64 // Unix nanoseconds
	runs := map[string]*atomic.Int32{}
	for _, n := range []string{"a", "b", "c", "d"} {
		runs[n] = new(atomic.Int32)
	}
	handler := processor.HandlerFunc(func(_ context.Context, job processor.Job) (json.RawMessage, error) {
		now := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
		}
		var name string
		_ = json.Unmarshal(job.Payload, &name)
		runs[name].Add(1)
		time.Sleep(20 * time.Millisecond)
		if name == "b" {
			run := flakyRuns.Add(1)
			flakyAt[run-1].Store(time.Now().UnixNano())
			if run == 1 {
				return nil, errors.New("hiccup")
			}
		}
		return job.Payload, nil
	})
	const retryDelay = 300 * time.Millisecond
	b.start(t, processor.Config{
		Handlers: map[string]processor.Handler{"echo": handler}, Concurrency: 2,
		RetryDelay: func(int) time.Duration { return retryDelay },
	})

	var jobs []contract.JobRequest
	for _, n := range []string{"a", "b", "c", "d"} {
		jobs = append(jobs, contract.JobRequest{Nonce: "n0nce" + n, Payload: json.RawMessage(`"` + n + `"`)})
	}
	seq := b.publishBatch(t, "acme", "echo", jobs...)
	for _, job := range jobs {
		id := b.intakeJobID(seq, job.Nonce)
		rec := b.waitJob(t, id)
		require.Equal(t, contract.StatusSucceeded, rec.Status, id)
		require.JSONEq(t, string(job.Payload), string(rec.Result))
	}
	b.waitJobsSettled(t)
	require.LessOrEqual(t, most.Load(), int32(2), "at most Concurrency jobs run at once")
	require.Equal(t, int32(2), most.Load(), "the jobs of a batch run at once")
	for n, c := range runs {
		want := int32(1)
		if n == "b" {
			want = 2
		}
		require.Equal(t, want, c.Load(), "runs of %s", n)
	}
	events, err := b.js.Stream(context.Background(), contract.StreamEvents)
	require.NoError(t, err)
	succeeded := contract.EventSubject("acme", contract.EventJobSucceeded)
	info, err := events.Info(context.Background(), jetstream.WithSubjectFilter(succeeded))
	require.NoError(t, err)
	require.Equal(t, uint64(4), info.State.Subjects[succeeded], "one event per job")
	rec := b.waitJob(t, b.intakeJobID(seq, "n0ncea"))
	require.Equal(t, 1, rec.Attempts)
	idB := b.intakeJobID(seq, "n0nceb")
	rec = b.waitJob(t, idB)
	require.Equal(t, 2, rec.Attempts)
	require.GreaterOrEqual(t, time.Duration(flakyAt[1].Load()-flakyAt[0].Load()), retryDelay, "the retry waited for its delay")

	jobsStream, err := b.js.Stream(context.Background(), contract.StreamJobs)
	require.NoError(t, err)
	again, err := jobsStream.GetLastMsgForSubject(context.Background(), contract.JobSubject("acme", "echo"))
	require.NoError(t, err)
	require.Equal(t, idB+".handoff", again.Header.Get(contract.HeaderMsgID))
	var req contract.JobRequest
	require.NoError(t, json.Unmarshal(again.Data, &req))
	require.Equal(t, idB, req.ID)
	require.NotNil(t, req.NotBefore)
	require.JSONEq(t, `"b"`, string(req.Payload))
}

// A batch delivered again (here: its processor stopped while one of its
// jobs ran) does not run the job that it handed off after a failure: that
// job runs from its own message when its retry is due. The interrupted job
// runs again.
func TestRunBatchDeliveredAgainKeepsHandedOffJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var runsB, runsC atomic.Int32
	var ranB [3]atomic.Int64 // Unix nanoseconds of b's runs
	started := make(chan struct{})
	handler := processor.HandlerFunc(func(ctx context.Context, job processor.Job) (json.RawMessage, error) {
		var name string
		_ = json.Unmarshal(job.Payload, &name)
		if name == "b" {
			run := runsB.Add(1)
			ranB[min(run, 3)-1].Store(time.Now().UnixNano())
			if run < 3 {
				return nil, errors.New("hiccup")
			}
		}
		if name == "c" && runsC.Add(1) == 1 {
			close(started)
			<-ctx.Done() // runs until its processor stops
			return nil, ctx.Err()
		}
		return job.Payload, nil
	})
	const secondDelay = time.Second
	cfg := processor.Config{
		Handlers: map[string]processor.Handler{"echo": handler}, Concurrency: 2, ShutdownGrace: 100 * time.Millisecond,
		RetryDelay: func(attempt int) time.Duration {
			if attempt == 1 {
				return 50 * time.Millisecond
			}
			return secondDelay
		},
	}
	first := b.start(t, cfg)
	seq := b.publishBatch(t, "acme", "echo",
		contract.JobRequest{Nonce: "n0nceb", Payload: json.RawMessage(`"b"`)},
		contract.JobRequest{Nonce: "n0ncec", Payload: json.RawMessage(`"c"`)})
	<-started
	idB, idC := b.intakeJobID(seq, "n0nceb"), b.intakeJobID(seq, "n0ncec")
	require.Eventually(t, func() bool {
		rec, _, err := b.jobs.Get(context.Background(), idB)
		return err == nil && rec.Attempts == 2 && rec.Status == contract.StatusQueued
	}, 5*time.Second, time.Millisecond, "b failed twice, the second time from its own message")
	first.stop(t)

	b.start(t, cfg)
	require.Equal(t, contract.StatusSucceeded, b.waitJob(t, idB).Status)
	require.Equal(t, contract.StatusSucceeded, b.waitJob(t, idC).Status)
	b.waitJobsSettled(t)
	require.Equal(t, int32(3), runsB.Load())
	require.GreaterOrEqual(t, time.Duration(ranB[2].Load()-ranB[1].Load()), secondDelay,
		"b's third run waited for its retry, not run at once by the batch")
	require.Equal(t, int32(2), runsC.Load(), "c: interrupted, then again")
}

// A job of a batch is handed off once: when the batch is delivered again
// (its processor stopped or crashed) while the job runs from its own
// message elsewhere, past JetStream's duplicate window, the batch leaves
// it to that run instead of writing its message again, which another
// processor would run at the same time.
func TestRunBatchHandsOffAJobOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const window = 500 * time.Millisecond
	s := b.shortenDuplicates(t, contract.StreamJobs, window)

	var runsB, runningB, mostB atomic.Int32
	cStarted, bRunning := make(chan struct{}, 3), make(chan struct{}, 3)
	releaseB := make(chan struct{})
	release := sync.OnceFunc(func() { close(releaseB) })
	handler := func(cWaits bool) processor.Handler {
		return processor.HandlerFunc(func(ctx context.Context, job processor.Job) (json.RawMessage, error) {
			var name string
			_ = json.Unmarshal(job.Payload, &name)
			switch {
			case name == "b" && runsB.Add(1) == 1:
				return nil, errors.New("hiccup") // in the batch: handed off
			case name == "b":
				now := runningB.Add(1)
				defer runningB.Add(-1)
				for m := mostB.Load(); now > m && !mostB.CompareAndSwap(m, now); m = mostB.Load() {
				}
				bRunning <- struct{}{}
				<-releaseB // a long run, which goes on whatever its context
			case name == "c" && cWaits:
				cStarted <- struct{}{}
				<-ctx.Done() // holds the batch until its processor stops
				return nil, ctx.Err()
			}
			return job.Payload, nil
		})
	}
	cfg := func(cWaits bool) processor.Config {
		return processor.Config{
			Handlers: map[string]processor.Handler{"echo": handler(cWaits)}, Concurrency: 2, ShutdownGrace: 50 * time.Millisecond,
			RetryDelay: func(int) time.Duration { return 10 * time.Millisecond },
		}
	}
	first := b.start(t, cfg(true))
	seq := b.publishBatch(t, "acme", "echo",
		contract.JobRequest{Nonce: "n0nceb", Payload: json.RawMessage(`"b"`)},
		contract.JobRequest{Nonce: "n0ncec", Payload: json.RawMessage(`"c"`)})
	idB, idC := b.intakeJobID(seq, "n0nceb"), b.intakeJobID(seq, "n0ncec")
	<-cStarted
	<-bRunning // from its own message
	time.Sleep(window + 100*time.Millisecond)

	// The batch's delivery ends (c is interrupted) while b's run goes on, as
	// it would in another process.
	first.cancel()
	first.cancel = nil
	b.start(t, cfg(false))
	t.Cleanup(release) // before the processors stop
	require.Equal(t, contract.StatusSucceeded, b.waitJob(t, idC).Status)
	require.Eventually(t, func() bool {
		c, err := b.js.Consumer(context.Background(), contract.StreamJobs, processor.BatchConsumerName("echo"))
		require.NoError(t, err)
		info, err := c.Info(context.Background())
		require.NoError(t, err)
		return info.NumPending == 0 && info.NumAckPending == 0
	}, 10*time.Second, 10*time.Millisecond, "the batch is acknowledged")
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(contract.JobSubject("acme", "echo")))
	require.NoError(t, err)
	require.Equal(t, map[string]uint64{contract.JobSubject("acme", "echo"): 1}, info.State.Subjects, "b's message was written once")

	release()
	require.Equal(t, contract.StatusSucceeded, b.waitJob(t, idB).Status)
	b.waitJobsSettled(t)
	require.Equal(t, int32(1), mostB.Load(), "b never ran twice at once")
	select {
	case err := <-first.done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the first processor did not stop")
	}
}

// shortenDuplicates sets the stream's de-duplication window to d, in
// place of minutes, and returns the stream.
func (b *bundle) shortenDuplicates(t *testing.T, stream string, d time.Duration) jetstream.Stream {
	t.Helper()
	s, err := b.js.Stream(context.Background(), stream)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	cfg.Duplicates = d
	_, err = b.js.UpdateStream(context.Background(), cfg)
	require.NoError(t, err)
	return s
}

// A job's message published again past JetStream's de-duplication window
// (by a repeated Idempotency-Key, or an internal publisher) neither runs
// the job a second time while it runs from its first message, nor
// publishes its event again once it has finished.
func TestAnotherMessageOfAJobIsDropped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const window = 200 * time.Millisecond
	b.shortenDuplicates(t, contract.StreamJobs, window)
	events := b.shortenDuplicates(t, contract.StreamEvents, window)
	var runs atomic.Int32
	started, releaseRun := make(chan struct{}, 2), make(chan struct{})
	release := sync.OnceFunc(func() { close(releaseRun) })
	handler := processor.HandlerFunc(func(_ context.Context, job processor.Job) (json.RawMessage, error) {
		runs.Add(1)
		started <- struct{}{}
		<-releaseRun
		return job.Payload, nil
	})
	b.start(t, processor.Config{Handlers: map[string]processor.Handler{"echo": handler}, Concurrency: 2, RunningAfter: time.Millisecond})
	t.Cleanup(release)
	data := jobRequest(t, contract.JobRequest{ID: "job_twice", Payload: json.RawMessage(`"x"`)})
	b.publishJob(t, "acme", "echo", "job_twice", data)
	<-started
	time.Sleep(window + 50*time.Millisecond)
	b.publishJob(t, "acme", "echo", "job_twice", data) // past the window: stored
	select {
	case <-started:
		t.Fatal("the job ran again while it ran from its first message")
	case <-time.After(500 * time.Millisecond):
	}
	release()
	require.Equal(t, contract.StatusSucceeded, b.waitJob(t, "job_twice").Status)
	b.waitJobsSettled(t)

	time.Sleep(window + 50*time.Millisecond)
	b.publishJob(t, "acme", "echo", "job_twice", data)
	b.waitJobsSettled(t)
	require.Equal(t, int32(1), runs.Load())
	info, err := events.Info(context.Background(), jetstream.WithSubjectFilter(contract.EventSubject("acme", "job.>")))
	require.NoError(t, err)
	require.Equal(t, map[string]uint64{
		contract.EventSubject("acme", "job.running"): 1, contract.EventSubject("acme", "job.succeeded"): 1,
	}, info.State.Subjects, "one event of each")
}

// Nor do two messages of a job still queued, taken at the same time (a
// backlog, or no processor for a while), both run it: only the message its
// record was made for runs quickly; the other waits, then finds the job
// done. Both ran it before either recorded it.
func TestTwoMessagesOfAQueuedJobRunItOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const window = 200 * time.Millisecond
	b.shortenDuplicates(t, contract.StreamJobs, window)
	const id, hash = "job_idem0000000000000000000001", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	now := time.Now().UTC()
	_, err := b.jobs.Create(context.Background(), contract.JobRecord{
		Job:    contract.Job{ID: id, Type: "echo", Status: contract.StatusQueued, CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)},
		Tenant: "acme", Payload: json.RawMessage(`"x"`), RequestHash: hash,
	})
	require.NoError(t, err)
	data := jobRequest(t, contract.JobRequest{ID: id, Payload: json.RawMessage(`"x"`), RequestHash: hash})
	b.publishJob(t, "acme", "echo", id+"."+hash[:16], data)
	time.Sleep(window + 50*time.Millisecond)
	b.publishJob(t, "acme", "echo", id+"."+hash[:16], data) // a repeated request past the window: stored again

	b.requireRunOnce(t, id)
}

// The same when the record is younger than the first message: a request
// answered 503 (its record not written, its message stored) and retried
// past the de-duplication window writes the record, and a second message.
func TestTwoMessagesOfAJobWhoseRecordCameLaterRunItOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const window = 200 * time.Millisecond
	b.shortenDuplicates(t, contract.StreamJobs, window)
	const id, hash = "job_idem0000000000000000000002", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	first := time.Now().UTC()
	b.publishJob(t, "acme", "echo", id+"."+hash[:16], jobRequest(t, contract.JobRequest{ID: id, Payload: json.RawMessage(`"x"`), RequestHash: hash, CreatedAt: &first}))
	time.Sleep(window + 50*time.Millisecond)
	now := time.Now().UTC()
	_, err := b.jobs.Create(context.Background(), contract.JobRecord{
		Job:    contract.Job{ID: id, Type: "echo", Status: contract.StatusQueued, CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)},
		Tenant: "acme", Payload: json.RawMessage(`"x"`), RequestHash: hash,
	})
	require.NoError(t, err)
	b.publishJob(t, "acme", "echo", id+"."+hash[:16], jobRequest(t, contract.JobRequest{ID: id, Payload: json.RawMessage(`"x"`), RequestHash: hash, CreatedAt: &now}))
	b.requireRunOnce(t, id)
}

// And when an internal publisher reuses a job id past the window, with no
// record: whichever message makes the record, the other waits. Repeated,
// since which one makes it is a race.
func TestTwoMessagesOfAnInternalPublishersJobRunItOnce(t *testing.T) {
	t.Parallel()
	for i := range 5 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			const window = 200 * time.Millisecond
			b.shortenDuplicates(t, contract.StreamJobs, window)
			id := "job_pub" + strconv.Itoa(i)
			data := jobRequest(t, contract.JobRequest{ID: id, Payload: json.RawMessage(`"x"`)})
			b.publishJob(t, "acme", "echo", id, data)
			time.Sleep(window + 50*time.Millisecond)
			b.publishJob(t, "acme", "echo", id, data)
			b.requireRunOnce(t, id)
		})
	}
}

// requireRunOnce starts a processor on the job's messages, stored by the
// caller, and checks that it runs the job once, with one attempt. Its runs
// take 50 ms, within RunningAfter (100 ms): quick ones are never claimed.
func (b *bundle) requireRunOnce(t *testing.T, id string) {
	t.Helper()
	var runs atomic.Int32
	handler := processor.HandlerFunc(func(_ context.Context, job processor.Job) (json.RawMessage, error) {
		runs.Add(1)
		time.Sleep(50 * time.Millisecond)
		return job.Payload, nil
	})
	b.start(t, processor.Config{Handlers: map[string]processor.Handler{"echo": handler}, Concurrency: 4})
	rec := b.waitJob(t, id)
	b.waitJobsSettled(t)
	require.Equal(t, contract.StatusSucceeded, rec.Status)
	require.Equal(t, 1, rec.Attempts)
	require.Equal(t, int32(1), runs.Load(), "the job ran from both its messages")
}

// Nor does such a message run early a job that waits for its retry: its
// first message runs it when the retry is due.
func TestAnotherMessageOfAJobWaitingForItsRetry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const window, retry = 200 * time.Millisecond, 2 * time.Second
	b.shortenDuplicates(t, contract.StreamJobs, window)
	var runs atomic.Int32
	var ranAt [3]atomic.Int64
	handler := processor.HandlerFunc(func(_ context.Context, job processor.Job) (json.RawMessage, error) {
		n := runs.Add(1)
		ranAt[min(n, 3)-1].Store(time.Now().UnixNano())
		if n == 1 {
			return nil, errors.New("hiccup")
		}
		return job.Payload, nil
	})
	b.start(t, processor.Config{
		Handlers: map[string]processor.Handler{"echo": handler}, Concurrency: 2, RunningAfter: time.Second,
		RetryDelay: func(int) time.Duration { return retry },
	})
	data := jobRequest(t, contract.JobRequest{ID: "job_retrying", Payload: json.RawMessage(`"x"`)})
	b.publishJob(t, "acme", "echo", "job_retrying", data)
	require.Eventually(t, func() bool {
		rec, _, err := b.jobs.Get(context.Background(), "job_retrying")
		return err == nil && rec.Status == contract.StatusQueued && rec.Attempts == 1
	}, 10*time.Second, 10*time.Millisecond, "the first run failed")
	time.Sleep(window + 50*time.Millisecond)
	b.publishJob(t, "acme", "echo", "job_retrying", data)
	require.Equal(t, contract.StatusSucceeded, b.waitJob(t, "job_retrying").Status)
	b.waitJobsSettled(t)
	require.Equal(t, int32(2), runs.Load())
	require.GreaterOrEqual(t, time.Duration(ranAt[1].Load()-ranAt[0].Load()), retry, "the retry waited for its delay")
}

// A job whose result would make its record larger than the NATS server
// takes in a message fails, without its result, instead of running again
// for ever.
func TestJobWhoseResultIsTooLargeFails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var runs atomic.Int32
	big := json.RawMessage(`"` + strings.Repeat("x", 9<<20) + `"`) // the test server takes 8 MiB
	handler := processor.HandlerFunc(func(context.Context, processor.Job) (json.RawMessage, error) {
		runs.Add(1)
		return big, nil
	})
	for _, quick := range []time.Duration{time.Hour, time.Nanosecond} { // its record written once, or twice
		id := "job_big_" + quick.String()
		b.start(t, processor.Config{Handlers: map[string]processor.Handler{"echo": handler}, RunningAfter: quick})
		b.publishJob(t, "acme", "echo", id, jobRequest(t, contract.JobRequest{ID: id, Payload: json.RawMessage(`"x"`)}))
		rec := b.waitJob(t, id)
		require.Equal(t, contract.StatusFailed, rec.Status)
		require.Contains(t, rec.Error, "max_payload")
		require.Nil(t, rec.Result)
		// Its event follows its record: out before the next job's, which
		// is looked for as the last (it once came after it, in CI).
		require.Eventually(t, func() bool { _, job := b.lastEvent(t, "acme", contract.StatusFailed); return job.ID == id },
			10*time.Second, 10*time.Millisecond, "no job.failed event of %s", id)
	}

	// An internal publisher's job whose message fits but whose record does
	// not (encoding/json writes each < as \u003c) fails without running.
	b.publishJob(t, "acme", "echo", "job_html", []byte(`{"id":"job_html","payload":"`+strings.Repeat("<", 2<<20)+`"}`))
	rec := b.waitJob(t, "job_html")
	require.Equal(t, contract.StatusFailed, rec.Status)
	require.Nil(t, rec.Payload)
	_, job := b.lastEvent(t, "acme", contract.StatusFailed)
	require.Equal(t, "job_html", job.ID)
	b.waitJobsSettled(t)
	require.Equal(t, int32(2), runs.Load(), "each ran once; the last not at all")
}

// A batch that cannot be read is terminated; a malformed job of a batch is
// dropped alone.
func TestRunMalformedBatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		givenCount string
		givenBody  string
	}{
		{name: "bad JSON", givenCount: "2", givenBody: `{"jobs":[`},
		{name: "no jobs", givenCount: "0", givenBody: `{"jobs":[]}`},
		{name: "one job's body", givenCount: "1", givenBody: `{"nonce":"n0nce"}`},
		{name: "count does not match", givenCount: "3", givenBody: `{"jobs":[{"nonce":"a"},{"nonce":"b"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.start(t, processor.Config{Handlers: echoOnly, Concurrency: 1})
			msg := nats.NewMsg(contract.JobBatchSubject("acme", "echo"))
			msg.Data = []byte(tt.givenBody)
			msg.Header.Set(contract.HeaderJobBatch, tt.givenCount)
			ack, err := b.js.PublishMsg(context.Background(), msg)
			require.NoError(t, err)
			b.waitJobsSettled(t)
			for _, nonce := range []string{"n0nce", "a", "b"} {
				_, _, err := b.jobs.Get(context.Background(), b.intakeJobID(ack.Sequence, nonce))
				require.ErrorIs(t, err, jobstore.ErrNotFound, "no job of the malformed batch ran")
			}
		})
	}
	t.Run("jobs without a nonce", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.start(t, processor.Config{Handlers: echoOnly})
		seq := b.publishBatch(t, "acme", "echo", contract.JobRequest{}, contract.JobRequest{ID: "job_other"}, contract.JobRequest{Nonce: "n0nce"})
		require.Equal(t, contract.StatusSucceeded, b.waitJob(t, b.intakeJobID(seq, "n0nce")).Status)
		b.waitJobsSettled(t)
		for _, id := range []string{contract.SequenceJobID(seq, ""), "job_other"} {
			_, _, err := b.jobs.Get(context.Background(), id)
			require.ErrorIs(t, err, jobstore.ErrNotFound, id)
		}
	})
}

// A job's not_before is honoured up to an hour ahead; one further ahead
// (which no processor sets) runs at once: put back for years, its message
// held the trimming of every later job of its type until the jobs stream
// was full.
func TestNotBeforeFarAheadIsNotHonoured(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.start(t, processor.Config{Handlers: echoOnly})
	soon, far := time.Now().Add(30*time.Minute), time.Now().AddDate(4, 0, 0)
	b.publishJob(t, "acme", "echo", "job_soon", jobRequest(t, contract.JobRequest{NotBefore: &soon}))
	b.publishJob(t, "acme", "echo", "job_far", jobRequest(t, contract.JobRequest{NotBefore: &far}))
	require.Equal(t, contract.StatusSucceeded, b.waitJob(t, "job_far").Status)
	cons, err := b.js.Consumer(context.Background(), contract.StreamJobs, processor.ConsumerName("echo"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.Delivered.Stream >= 2 && info.NumAckPending == 1
	}, 10*time.Second, 10*time.Millisecond, "the job due in 30 minutes was taken and put back")
	_, _, err = b.jobs.Get(context.Background(), "job_soon")
	require.ErrorIs(t, err, jobstore.ErrNotFound, "a job due in 30 minutes waits")
}

// A job message with bytes that are not UTF-8 (an internal publisher's, or
// an older intake's) runs with the stray bytes read as U+FFFD: its result
// and webhooks are valid JSON text. A
// batch holding such a job runs every job of it.
func TestJobNotUTF8RunsWithReplacementCharacters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.start(t, processor.Config{Handlers: echoOnly})
	b.publishJob(t, "acme", "echo", "job_latin1", []byte("{\"payload\":\"caf\xe9\"}"))
	rec := b.waitJob(t, "job_latin1")
	require.Equal(t, contract.StatusSucceeded, rec.Status)
	require.True(t, utf8.Valid(rec.Result), "%q", rec.Result)
	require.JSONEq(t, `"caf\ufffd"`, string(rec.Result))

	msg := nats.NewMsg(contract.JobBatchSubject("acme", "echo"))
	msg.Data = []byte("{\"jobs\":[{\"nonce\":\"a\",\"payload\":\"\xff\"},{\"nonce\":\"b\",\"payload\":1}]}")
	msg.Header.Set(contract.HeaderJobBatch, "2")
	ack, err := b.js.PublishMsg(context.Background(), msg)
	require.NoError(t, err)
	for nonce, want := range map[string]string{"a": `"\ufffd"`, "b": `1`} {
		rec := b.waitJob(t, b.intakeJobID(ack.Sequence, nonce))
		require.Equal(t, contract.StatusSucceeded, rec.Status)
		require.JSONEq(t, want, string(rec.Result))
	}
}

// A handler's result that is not UTF-8 (raw JSON from a service that
// answers Latin-1) is stored, and sent, with U+FFFD for the stray bytes:
// GET /v1/jobs/{id} and the webhook show the same valid JSON text.
func TestHandlerResultNotUTF8IsStoredAsValidText(t *testing.T) {
	t.Parallel()
	b := setup(t)
	latin1 := processor.HandlerFunc(func(context.Context, processor.Job) (json.RawMessage, error) {
		return json.RawMessage("{\"city\":\"Z\xfcrich\"}"), nil
	})
	b.start(t, processor.Config{Handlers: map[string]processor.Handler{"echo": latin1}})
	b.publishJob(t, "acme", "echo", "job_latin1", jobRequest(t, contract.JobRequest{}))
	rec := b.waitJob(t, "job_latin1")
	require.Equal(t, contract.StatusSucceeded, rec.Status)
	require.True(t, utf8.Valid(rec.Result), "%q", rec.Result) // a JSON decoder would read either as U+FFFD
	require.JSONEq(t, `{"city":"Z\ufffdrich"}`, string(rec.Result))
	msg, _ := b.lastEvent(t, "acme", contract.StatusSucceeded)
	require.True(t, utf8.Valid(msg.Data), "%q", msg.Data)
}

// A message that cannot be a job is terminated and does not hold up the
// jobs behind it.
func TestRunMalformedJobIsTerminated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		givenID   string
		givenBody string
	}{
		{name: "bad JSON", givenID: "job_bad", givenBody: `{"payload":`},
		{name: "not an object", givenID: "job_bad", givenBody: `[1,2,3]`},
		{name: "invalid job id", givenID: "job:bad id", givenBody: `{}`},
		{name: "job id too long", givenID: "job_" + strings.Repeat("x", 200), givenBody: `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.start(t, processor.Config{Handlers: echoOnly, Concurrency: 1})
			b.publishJob(t, "acme", "echo", tt.givenID, []byte(tt.givenBody))
			b.publishJob(t, "acme", "echo", "job_good", jobRequest(t, contract.JobRequest{Payload: json.RawMessage(`1`)}))
			require.Equal(t, contract.StatusSucceeded, b.waitJob(t, "job_good").Status)
			b.waitJobsSettled(t)
			_, _, err := b.jobs.Get(context.Background(), "job_bad")
			require.ErrorIs(t, err, jobstore.ErrNotFound, "no record for the malformed message")
		})
	}
}

// A message reusing the id of another tenant's job neither runs nor touches
// that job.
func TestRunJobIDOfAnotherTenantIsDropped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var runs atomic.Int32
	counting := processor.HandlerFunc(func(ctx context.Context, job processor.Job) (json.RawMessage, error) {
		runs.Add(1)
		return processor.Echo(ctx, job)
	})
	b.start(t, processor.Config{Handlers: map[string]processor.Handler{"echo": counting}})
	b.publishJob(t, "acme", "echo", "job_shared", jobRequest(t, contract.JobRequest{Payload: json.RawMessage(`"acme's"`)}))
	first := b.waitJob(t, "job_shared")

	b.publishJob(t, "other", "echo", "", jobRequest(t, contract.JobRequest{ID: "job_shared", Payload: json.RawMessage(`"other's"`)}))
	b.waitJobsSettled(t)
	got, _, err := b.jobs.Get(context.Background(), "job_shared")
	require.NoError(t, err)
	require.Equal(t, first, got)
	require.EqualValues(t, 1, runs.Load())
}

// The message intake publishes for a request that reused another request's
// Idempotency-Key (answered 422) is dropped: the job stored under that key
// is not run with the other request's payload.
func TestRunMessageOfAnotherRequestIsDropped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var payloads []string
	var mu sync.Mutex
	recording := processor.HandlerFunc(func(ctx context.Context, job processor.Job) (json.RawMessage, error) {
		mu.Lock()
		payloads = append(payloads, string(job.Payload))
		mu.Unlock()
		return processor.Echo(ctx, job)
	})
	now := time.Now().UTC()
	_, err := b.jobs.Create(context.Background(), contract.JobRecord{
		Job:    contract.Job{ID: "job_keyed", Type: "echo", Status: contract.StatusQueued, CreatedAt: now, UpdatedAt: now},
		Tenant: "acme", Payload: json.RawMessage(`"first"`), RequestHash: "hash-first",
	})
	require.NoError(t, err)
	b.publishJob(t, "acme", "echo", "", jobRequest(t, contract.JobRequest{ID: "job_keyed", Payload: json.RawMessage(`"second"`), RequestHash: "hash-second"}))
	b.publishJob(t, "acme", "echo", "", jobRequest(t, contract.JobRequest{ID: "job_keyed", Payload: json.RawMessage(`"first"`), RequestHash: "hash-first"}))
	b.start(t, processor.Config{Handlers: map[string]processor.Handler{"echo": recording}})
	rec := b.waitJob(t, "job_keyed")
	b.waitJobsSettled(t)
	require.Equal(t, contract.StatusSucceeded, rec.Status)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{`"first"`}, payloads)
}

// A record under a job's id that belongs to another request is checked on
// the bucket's leader before the job's message is dropped: a replica behind
// it may still serve a record removed since (intake removes the record of
// a job whose message it could not store) when the id was used again.
func TestRunJobIDReusedIsCheckedOnTheLeader(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	lagging := b.srv.LaggingReader(t)
	now := time.Now().UTC()
	record := func(hash string) contract.JobRecord {
		return contract.JobRecord{
			Job:    contract.Job{ID: "job_reused", Type: "echo", Status: contract.StatusQueued, CreatedAt: now, UpdatedAt: now},
			Tenant: "acme", Payload: json.RawMessage(`"x"`), RequestHash: hash,
		}
	}
	rev, err := b.jobs.Create(ctx, record("hash-removed"))
	require.NoError(t, err)
	stale, err := jobstore.Open(ctx, lagging, b.js)
	require.NoError(t, err)
	_, _, err = stale.Get(ctx, "job_reused") // the lagging reader keeps this one
	require.NoError(t, err)
	require.NoError(t, b.jobs.Delete(ctx, "job_reused", rev))
	_, err = b.jobs.Create(ctx, record("hash-now"))
	require.NoError(t, err)

	b.publishJob(t, "acme", "echo", "", jobRequest(t, contract.JobRequest{ID: "job_reused", Payload: json.RawMessage(`"x"`), RequestHash: "hash-now"}))
	b.start(t, processor.Config{Handlers: echoOnly, RecordReader: lagging})
	rec := b.waitJob(t, "job_reused")
	require.Equal(t, contract.StatusSucceeded, rec.Status)
	b.waitJobsSettled(t)
}

// A job whose record is already terminal (say, canceled before it ran) is
// not run; its event is published again.
func TestRunSkipsFinishedJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var runs atomic.Int32
	counting := processor.HandlerFunc(func(context.Context, processor.Job) (json.RawMessage, error) {
		runs.Add(1)
		return nil, nil
	})
	now := time.Now().UTC()
	_, err := b.jobs.Create(context.Background(), contract.JobRecord{
		Job:    contract.Job{ID: "job_gone", Type: "echo", Status: contract.StatusCanceled, CreatedAt: now, UpdatedAt: now, CompletedAt: &now},
		Tenant: "acme",
	})
	require.NoError(t, err)
	b.start(t, processor.Config{Handlers: map[string]processor.Handler{"echo": counting}})
	b.publishJob(t, "acme", "echo", "job_gone", jobRequest(t, contract.JobRequest{}))
	b.waitJobsSettled(t)
	require.Zero(t, runs.Load())
	_, job := b.lastEvent(t, "acme", contract.StatusCanceled)
	require.Equal(t, "job_gone", job.ID)
}

// A job interrupted by a shutdown goes back to the queue without counting
// the attempt, and the next processor runs it.
func TestRunShutdownReleasesJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	started := make(chan struct{}, 1)
	hang := processor.HandlerFunc(func(ctx context.Context, _ processor.Job) (json.RawMessage, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	first := b.start(t, processor.Config{Handlers: map[string]processor.Handler{"echo": hang}, ShutdownGrace: 10 * time.Millisecond})
	b.publishJob(t, "acme", "echo", "job_long", jobRequest(t, contract.JobRequest{Payload: json.RawMessage(`"again"`)}))
	<-started
	first.stop(t)

	rec, _, err := b.jobs.Get(context.Background(), "job_long")
	require.NoError(t, err)
	require.Equal(t, contract.StatusQueued, rec.Status)
	require.Zero(t, rec.Attempts, "a shutdown is not a failed attempt")
	require.Empty(t, rec.Error)

	b.start(t, processor.Config{Handlers: echoOnly})
	rec = b.waitJob(t, "job_long")
	require.Equal(t, contract.StatusSucceeded, rec.Status)
	require.Equal(t, 1, rec.Attempts)
	require.JSONEq(t, `"again"`, string(rec.Result))
}

// An HTTP worker job type end to end: the worker's answer becomes the
// result, and a permanent answer fails the job without retries.
func TestRunHTTPWorker(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ok := newWorker(t, answerWith(200, "application/json", `{"thumb":"cat-small.png"}`))
	bad := newWorker(t, answerWith(400, "text/plain", "image missing"))
	b.start(t, processor.Config{Handlers: map[string]processor.Handler{
		"resize": processor.HTTPWorker{URL: ok.URL},
		"broken": processor.HTTPWorker{URL: bad.URL},
	}})
	b.publishJob(t, "acme", "resize", "job_ok", jobRequest(t, contract.JobRequest{Payload: json.RawMessage(`{"image":"cat.png"}`)}))
	b.publishJob(t, "acme", "broken", "job_bad", jobRequest(t, contract.JobRequest{}))

	rec := b.waitJob(t, "job_ok")
	require.Equal(t, contract.StatusSucceeded, rec.Status)
	require.JSONEq(t, `{"thumb":"cat-small.png"}`, string(rec.Result))
	got := <-ok.got
	require.JSONEq(t, `{"image":"cat.png"}`, string(got.body))
	require.Equal(t, "job_ok", got.header.Get("Idempotency-Key"))

	rec = b.waitJob(t, "job_bad")
	require.Equal(t, contract.StatusFailed, rec.Status)
	require.Equal(t, 1, rec.Attempts)
	require.Contains(t, rec.Error, "image missing")
}
