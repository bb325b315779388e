package intake

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/processor"
	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/jobstore"
	"github.com/hookstream/hookstream/shared/natstest"
	"github.com/hookstream/hookstream/shared/secretbox"
	"github.com/hookstream/hookstream/shared/ssrf"
)

const internalKey = "acme-key-0123456789abcdef"

// internalBundle is an intake on a NATS server of its own, for tests that
// reach inside it: tenant acme (internalKey), job types echo and ocr, ocr
// run outside hookstream.
type internalBundle struct {
	svc *Service
	js  jetstream.JetStream
	box *secretbox.Box
	srv *httptest.Server
}

// startInternal starts an internalBundle; before, if not nil, changes the
// streams first.
func startInternal(t *testing.T, before func(jetstream.JetStream)) *internalBundle {
	t.Helper()
	nc, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))
	if before != nil {
		before(js)
	}
	box, err := secretbox.New(make([]byte, secretbox.KeySize))
	require.NoError(t, err)
	svc, err := New(ctx, Config{
		APIKeys:  []APIKey{{Tenant: "acme", Key: internalKey}},
		JobTypes: []string{"echo", "ocr"}, ExternalJobTypes: []string{"ocr"},
		Guard: ssrf.NewGuard(nil), Box: box, PublishTimeout: 5 * time.Second,
	}, nc, js, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return &internalBundle{svc: svc, js: js, box: box, srv: srv}
}

// writeRecordsThrough makes intake write job records through w.
func (b *internalBundle) writeRecordsThrough(t *testing.T, w bus.Publisher) {
	t.Helper()
	var err error
	b.svc.jobs, err = jobstore.Open(context.Background(), b.js, w)
	require.NoError(t, err)
}

// call makes a request as tenant acme, with headers given as name, value.
func (b *internalBundle) call(t *testing.T, method, path, body string, headers ...string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+internalKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return resp, out
}

// failFirstRecordWrite fails the first write to the job records bucket
// (as a timeout would) and passes everything else through.
type failFirstRecordWrite struct {
	js     jetstream.JetStream
	failed atomic.Bool
}

func (f *failFirstRecordWrite) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if strings.HasPrefix(msg.Subject, "$KV."+contract.BucketJobs+".") && f.failed.CompareAndSwap(false, true) {
		return nil, context.DeadlineExceeded
	}
	return f.js.PublishMsg(ctx, msg, opts...)
}

// A job of an external type whose message was stored and whose record was
// written only on the second try is answered 202 with its id. It was
// answered 202 with an empty one: stored, run, and not to be found.
func TestExternalJobRecordWrittenOnSecondTry(t *testing.T) {
	t.Parallel()
	b := startInternal(t, nil)
	writes := &failFirstRecordWrite{js: b.js}
	b.writeRecordsThrough(t, writes)
	resp, body := b.call(t, http.MethodPost, "/v1/jobs", `{"type":"ocr","payload":{"page":1}}`)
	require.True(t, writes.failed.Load(), "the first record write did not fail: the test shows nothing")
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	require.NotEmpty(t, body["id"], "a 202 names the job it stored")
	require.Equal(t, "/v1/jobs/"+body["id"].(string), resp.Header.Get("Location"))
	require.Equal(t, "ocr", body["type"])
	rec, _, err := b.svc.jobs.Get(context.Background(), body["id"].(string))
	require.NoError(t, err)
	require.Equal(t, contract.StatusQueued, rec.Status)
}

// holdFirstRecordWrite holds the first write to the job records bucket
// until a record under its key exists: a processor made it first.
type holdFirstRecordWrite struct {
	js   jetstream.JetStream
	kv   jetstream.KeyValue
	held atomic.Bool
}

func (h *holdFirstRecordWrite) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if key, ok := strings.CutPrefix(msg.Subject, "$KV."+contract.BucketJobs+"."); ok && h.held.CompareAndSwap(false, true) {
		for ctx.Err() == nil {
			if _, err := h.kv.Get(ctx, key); err == nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return h.js.PublishMsg(ctx, msg, opts...)
}

// The first request with an Idempotency-Key is no replay when a processor
// took its message and made the job's record before intake wrote it: it
// was answered Idempotent-Replayed, and not counted as accepted.
func TestFirstIdempotentSubmitIsNotAReplay(t *testing.T) {
	t.Parallel()
	b := startInternal(t, nil)
	ctx := context.Background()
	kv, err := b.js.KeyValue(ctx, contract.BucketJobs)
	require.NoError(t, err)
	writes := &holdFirstRecordWrite{js: b.js, kv: kv}
	b.writeRecordsThrough(t, writes)
	p, err := processor.New(ctx, processor.Config{Handlers: map[string]processor.Handler{"echo": processor.Echo}, Box: b.box}, b.js, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- p.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-ran })

	const job = `{"type":"echo","payload":{"n":1}}`
	resp, first := b.call(t, http.MethodPost, "/v1/jobs", job, "Idempotency-Key", "order-1")
	require.True(t, writes.held.Load())
	require.Equal(t, http.StatusAccepted, resp.StatusCode, first)
	require.Empty(t, resp.Header.Get("Idempotent-Replayed"), "the first request is no replay")
	rec, _, err := b.svc.jobs.Get(ctx, first["id"].(string))
	require.NoError(t, err)
	require.Equal(t, first["created_at"], rec.CreatedAt.Format(time.RFC3339Nano), "the record made from the message has the request's created_at")

	resp, again := b.call(t, http.MethodPost, "/v1/jobs", job, "Idempotency-Key", "order-1")
	require.Equal(t, http.StatusAccepted, resp.StatusCode, again)
	require.Equal(t, "true", resp.Header.Get("Idempotent-Replayed"), "the second one is")
	require.Equal(t, first["id"], again["id"])
}

// A DELETE of an external type's job canceled a while ago answers 409
// without storing its job.canceled event again: past the events stream's
// de-duplication window that would be a second webhook, at every DELETE.
// Soon after the cancel (a DELETE retried after a 503) it is stored again,
// and taken for the first (TestCanceledExternalJobKeepsItsEvent).
func TestLateDeleteOfACanceledJobDoesNotRepublishItsEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := startInternal(t, func(js jetstream.JetStream) {
		events, err := js.Stream(ctx, contract.StreamEvents)
		require.NoError(t, err)
		cfg := events.CachedInfo().Config
		cfg.Duplicates = 400 * time.Millisecond
		_, err = js.UpdateStream(ctx, cfg)
		require.NoError(t, err)
	})
	require.Equal(t, 400*time.Millisecond, b.svc.eventDuplicates)
	resp, job := b.call(t, http.MethodPost, "/v1/jobs", `{"type":"ocr","payload":{"page":1}}`)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, job)
	id := job["id"].(string)
	resp, _ = b.call(t, http.MethodDelete, "/v1/jobs/"+id, "")
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	for range 3 {
		time.Sleep(300 * time.Millisecond) // the last two past the window
		resp, _ = b.call(t, http.MethodDelete, "/v1/jobs/"+id, "")
		require.Equal(t, http.StatusConflict, resp.StatusCode)
	}
	events, err := b.js.Stream(ctx, contract.StreamEvents)
	require.NoError(t, err)
	info, err := events.Info(ctx, jetstream.WithSubjectFilter(contract.EventSubject("acme", "job.canceled")))
	require.NoError(t, err)
	require.EqualValues(t, 1, info.State.Subjects[contract.EventSubject("acme", "job.canceled")], "job.canceled stored again")
}

// A keyed job whose record a processor outside hookstream made from its
// message before intake's write landed (without the request's hash) is
// the request's own job, with a payload or without one: it was 422 for a
// job without a payload (from the NATS contract review).
func TestKeyedJobWhoseRecordAProcessorMadeFirst(t *testing.T) {
	t.Parallel()
	b := startInternal(t, nil)
	ctx := context.Background()
	now := time.Now().UTC()
	store, err := jobstore.Open(ctx, b.js, b.js)
	require.NoError(t, err)
	made := contract.JobRecord{
		Job: contract.Job{
			ID: idempotentID("job_", "acme", "made-first"), Type: "ocr", Status: contract.StatusQueued,
			CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour), Metadata: map[string]string{"a": "1"},
		},
		Tenant: "acme",
	}
	_, err = store.Create(ctx, made)
	require.NoError(t, err)
	resp, body := b.call(t, http.MethodPost, "/v1/jobs", `{"type":"ocr","metadata":{"a":"1"}}`, "Idempotency-Key", "made-first")
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	require.Equal(t, made.ID, body["id"])
}

// A recover task left pending by a request that never finished (a crash)
// does not hold its Idempotency-Key: a retry an hour later makes the task
// (it answered 409 for 7 days). And a task stored again with its key after
// a first try whose record was removed (its message stored, its ack lost,
// answered 503) publishes a message of its own: the first's id swallowed it
// as a duplicate, and the 202's task never ran (from the last review).
func TestRecoverKeyAfterACrashOrALostAck(t *testing.T) {
	t.Parallel()
	b := startInternal(t, nil)
	ctx := context.Background()
	resp, ep := b.call(t, http.MethodPost, "/v1/endpoints", `{"url":"https://example.com/hook"}`)
	require.Equal(t, http.StatusCreated, resp.StatusCode, ep)
	path := "/v1/endpoints/" + ep["id"].(string) + "/recover"
	since := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	hourAgo := time.Now().Add(-time.Hour).UTC()
	stale := contract.Task{ID: idempotentID("task_", "acme", "stale"), Kind: "recover", EndpointID: ep["id"].(string), Since: since,
		Status: contract.TaskPending, CreatedAt: hourAgo, UpdatedAt: hourAgo}
	data, _ := json.Marshal(stale)
	_, err := b.svc.tenants.Create(ctx, contract.TaskKey("acme", stale.ID), data)
	require.NoError(t, err)
	resp, body := b.call(t, http.MethodPost, path, `{"since":"2026-01-01T00:00:00Z"}`, "Idempotency-Key", "stale")
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	require.Equal(t, contract.TaskQueued, body["status"])

	resp, body = b.call(t, http.MethodPost, path, `{"since":"2026-01-01T00:00:00Z"}`, "Idempotency-Key", "lost-ack")
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	entry, err := b.svc.tenants.Get(ctx, contract.TaskKey("acme", body["id"].(string)))
	require.NoError(t, err)
	b.svc.purgeTenantKey(ctx, entry.Key(), entry.Revision()) // as after a publish whose ack was lost
	resp, again := b.call(t, http.MethodPost, path, `{"since":"2026-01-01T00:00:00Z"}`, "Idempotency-Key", "lost-ack")
	require.Equal(t, http.StatusAccepted, resp.StatusCode, again)
	require.Equal(t, body["id"], again["id"])
	stream, err := b.js.Stream(ctx, contract.StreamTasks)
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(3), info.State.Msgs, "the stale key's task, and the lost-ack key's two records' messages")
}
