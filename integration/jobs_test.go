package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/allinone"
	"github.com/hookstream/hookstream/services/processor"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/secretbox"
	"github.com/hookstream/hookstream/shared/signing"
)

// The whole path: 202, the job runs, the callback arrives signed, and the
// job reads succeeded.
func TestJobCallbackIsSignedAndVerifies(t *testing.T) {
	t.Parallel()
	h := start(t)
	rcv := newReceiver(t)
	secret := h.secret(keyAcme)

	sent := time.Now()
	id := h.submit(keyAcme, `{"type":"echo","payload":{"hello":"world"},"callback_url":"`+rcv.URL+`/hook"}`)
	got := rcv.wait(t, 1, 30*time.Second)
	t.Logf("202 to callback: %s", got[0].at.Sub(sent))

	r := got[0]
	verify(t, secret, r)
	require.True(t, strings.HasPrefix(r.id(), "msg_"))
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	require.True(t, strings.HasPrefix(r.header.Get("User-Agent"), "hookstream/"))
	require.Equal(t, "job.succeeded", r.event.Type)
	var job map[string]any
	require.NoError(t, json.Unmarshal(r.event.Data, &job))
	require.Equal(t, id, job["id"])
	require.Equal(t, "succeeded", job["status"])
	require.Equal(t, map[string]any{"hello": "world"}, job["result"])

	// The event's data is the job exactly as the API returns it.
	code, _, api := h.call(http.MethodGet, "/v1/jobs/"+id, keyAcme, "")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, api, job)

	// The other tenant cannot see it.
	code, _, _ = h.call(http.MethodGet, "/v1/jobs/"+id, keyOther, "")
	require.Equal(t, http.StatusNotFound, code)

	// Operations: the counters show the work (Prometheus text format). The
	// notifier counts an attempt once the receiver has answered, which can
	// be just after the receiver has the webhook.
	var text string
	require.Eventually(t, func() bool {
		resp, err := http.Get(h.url + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		text = string(body)
		return strings.Contains(text, `hookstream_webhook_attempts_total{outcome="success"}`)
	}, 5*time.Second, 20*time.Millisecond, "no successful attempt counted")
	require.Contains(t, text, "# TYPE hookstream_jobs_accepted_total counter")
	require.Contains(t, text, `hookstream_webhook_attempts_total{outcome="success"}`)
	require.Contains(t, text, `hookstream_http_responses_total{code="202"}`)
}

// A receiver that fails twice gets the same webhook-id three times, the
// retries scheduled durably in JetStream.
func TestFailingReceiverGetsSameWebhookID(t *testing.T) {
	t.Parallel()
	h := start(t)
	rcv := newReceiver(t, 500, 503)
	secret := h.secret(keyAcme)
	id := h.submit(keyAcme, `{"type":"echo","callback_url":"`+rcv.URL+`"}`)
	got := rcv.wait(t, 3, 30*time.Second)
	for _, r := range got {
		verify(t, secret, r)
		require.Equal(t, got[0].id(), r.id())
		require.Equal(t, string(got[0].body), string(r.body), "the body is the same on every attempt")
	}
	require.GreaterOrEqual(t, got[1].at.Sub(got[0].at), 500*time.Millisecond, "the retry waited for its schedule")

	// The delivery log shows every attempt.
	var deliveries []any
	require.Eventually(t, func() bool {
		_, _, out := h.call(http.MethodGet, "/v1/jobs/"+id+"/deliveries", keyAcme, "")
		deliveries = out["data"].([]any)
		return len(deliveries) == 1 && deliveries[0].(map[string]any)["status"] == "succeeded"
	}, 10*time.Second, 50*time.Millisecond)
	d := deliveries[0].(map[string]any)
	require.Equal(t, got[0].id(), d["id"])
	require.NotContains(t, d, "body")
	var codes []float64
	for _, a := range d["attempts"].([]any) {
		codes = append(codes, a.(map[string]any)["status_code"].(float64))
	}
	require.Equal(t, []float64{500, 503, 200}, codes)
	code, _, _ := h.call(http.MethodGet, "/v1/jobs/"+id+"/deliveries", keyOther, "")
	require.Equal(t, http.StatusNotFound, code)
}

// The short tier retries in process, with the same webhook-id.
func TestInProcessRetries(t *testing.T) {
	t.Parallel()
	h := start(t, withSchedule(time.Second, 50*time.Millisecond, 50*time.Millisecond))
	rcv := newReceiver(t, 500, 500)
	h.submit(keyAcme, `{"type":"echo","callback_url":"`+rcv.URL+`"}`)
	got := rcv.wait(t, 3, 30*time.Second)
	require.Equal(t, got[0].id(), got[2].id())
}

// A retry pending in JetStream when the app stops is sent after a restart,
// with the same webhook-id.
func TestRetrySurvivesRestart(t *testing.T) {
	t.Parallel()
	h := start(t, withSchedule(time.Nanosecond, 3*time.Second))
	rcv := newReceiver(t, 500)
	secret := h.secret(keyAcme)
	h.submit(keyAcme, `{"type":"echo","callback_url":"`+rcv.URL+`"}`)
	first := rcv.wait(t, 1, 30*time.Second)[0]
	h.restart()
	got := rcv.wait(t, 2, 30*time.Second)
	verify(t, secret, got[1])
	require.Equal(t, first.id(), got[1].id())
	time.Sleep(time.Second)
	require.Len(t, rcv.all(), 2, "delivered once after the restart, not again")
}

// A job that keeps failing ends failed after its attempts, with a
// job.failed webhook carrying the error.
func TestFailingJobEndsFailed(t *testing.T) {
	t.Parallel()
	calls := 0
	h := start(t,
		withHandler("flaky", processor.HandlerFunc(func(context.Context, processor.Job) (json.RawMessage, error) {
			calls++
			return nil, errFlaky
		})),
		withHandler("doomed", processor.HandlerFunc(func(context.Context, processor.Job) (json.RawMessage, error) {
			return nil, processor.Permanent(errPermanent)
		})),
	)
	rcv := newReceiver(t)
	flaky := h.submit(keyAcme, `{"type":"flaky","callback_url":"`+rcv.URL+`"}`)
	job := h.waitStatus(keyAcme, flaky, "failed")
	require.EqualValues(t, 5, job["attempts"], "the default MaxAttempts")
	require.Contains(t, job["error"], errFlaky.Error())

	doomed := h.submit(keyAcme, `{"type":"doomed","callback_url":"`+rcv.URL+`"}`)
	job = h.waitStatus(keyAcme, doomed, "failed")
	require.EqualValues(t, 1, job["attempts"], "a permanent error is not retried")

	got := rcv.wait(t, 2, 30*time.Second)
	for _, r := range got {
		require.Equal(t, "job.failed", r.event.Type)
	}
}

// A canceled job is not run, and its callback gets job.canceled.
func TestCanceledJobIsNotRun(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	h := start(t, withHandler("slow", processor.HandlerFunc(func(ctx context.Context, _ processor.Job) (json.RawMessage, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return json.RawMessage(`"done"`), nil
	})))
	rcv := newReceiver(t)
	id := h.submit(keyAcme, `{"type":"slow","callback_url":"`+rcv.URL+`"}`)
	h.waitStatus(keyAcme, id, "running")
	code, _, _ := h.call(http.MethodDelete, "/v1/jobs/"+id, keyAcme, "")
	require.Equal(t, http.StatusAccepted, code)
	close(release)
	got := rcv.wait(t, 1, 30*time.Second)
	require.Equal(t, "job.canceled", got[0].event.Type)
	// The result that came after the cancellation is dropped.
	time.Sleep(time.Second)
	_, _, job := h.call(http.MethodGet, "/v1/jobs/"+id, keyAcme, "")
	require.Equal(t, "canceled", job["status"])
	require.Len(t, rcv.all(), 1)
}

// An Idempotency-Key returns the same job after a restart: the record is
// durable, not a memory of the process.
func TestIdempotencyKeySurvivesRestart(t *testing.T) {
	t.Parallel()
	h := start(t)
	id := h.submit(keyAcme, `{"type":"echo"}`, "Idempotency-Key", "abc")
	h.waitStatus(keyAcme, id, "succeeded")
	h.restart()
	require.Equal(t, id, h.submit(keyAcme, `{"type":"echo"}`, "Idempotency-Key", "abc"))
}

// An app without a processor stores jobs and leaves them queued; a processor
// process connected to its NATS later runs every one, batched or not (job
// batches on, as with HOOKSTREAM_GROUP_COMMIT=on).
func TestJobsWaitForProcessorElsewhere(t *testing.T) {
	t.Parallel()
	h := start(t, withNATSListen(), withoutProcessor())
	rcv := newReceiver(t)
	ids := make([]string, 16)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() { ids[i] = h.submit(keyAcme, `{"type":"echo","callback_url":"`+rcv.URL+`"}`) })
	}
	wg.Wait()
	time.Sleep(300 * time.Millisecond)
	for _, id := range ids {
		_, _, job := h.call(http.MethodGet, "/v1/jobs/"+id, keyAcme, "")
		require.Equal(t, "queued", job["status"], id)
	}
	require.Empty(t, rcv.all())
	js := h.natsClient()
	stream, err := js.Stream(context.Background(), contract.StreamJobs)
	require.NoError(t, err)
	_, err = stream.GetLastMsgForSubject(context.Background(), contract.JobBatchSubject("acme", "echo"))
	require.NoError(t, err, "16 jobs at once make at least one job batch")

	key, err := secretbox.KeyFile(h.cfg.DataDir)
	require.NoError(t, err)
	box, err := secretbox.New(key)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	proc, err := processor.New(ctx, processor.Config{Handlers: map[string]processor.Handler{"echo": processor.Echo}, Box: box}, js, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- proc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	for _, id := range ids {
		h.waitStatus(keyAcme, id, "succeeded")
	}
	require.Len(t, rcv.wait(t, len(ids), 30*time.Second), len(ids))
}

// An app restarted on the same data with another secret key is refused: its
// job ids and signing secrets would not match the stored ones.
func TestOtherSecretKeyIsRefused(t *testing.T) {
	t.Parallel()
	h := start(t)
	id := h.submit(keyAcme, `{"type":"echo"}`)
	h.waitStatus(keyAcme, id, "succeeded")
	h.stop()
	other := h.cfg
	other.SecretKey = bytes.Repeat([]byte{9}, secretbox.KeySize)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := allinone.New(other, slog.New(slog.DiscardHandler)).Run(ctx)
	require.ErrorIs(t, err, signing.ErrKeyMismatch)
	require.ErrorContains(t, err, "HOOKSTREAM_SECRET_KEY")
	h.boot() // its own key still starts, and still names the job
	h.waitStatus(keyAcme, id, "succeeded")
}

var errFlaky = &flakyError{}

type flakyError struct{}

func (*flakyError) Error() string { return "worker hiccup" }

// GET /v1/jobs/{id}/events streams the job's status changes and ends after
// the terminal one.
func TestJobEventStream(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	h := start(t, withHandler("slow", processor.HandlerFunc(func(ctx context.Context, _ processor.Job) (json.RawMessage, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return json.RawMessage(`"done"`), nil
	})))
	id := h.submit(keyAcme, `{"type":"slow"}`)
	h.waitStatus(keyAcme, id, "running")
	req, _ := http.NewRequest(http.MethodGet, h.url+"/v1/jobs/"+id+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+keyAcme)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	close(release)
	body, err := io.ReadAll(resp.Body) // ends after the terminal status
	require.NoError(t, err)
	require.Contains(t, string(body), "event: job.running\ndata: {")
	require.Contains(t, string(body), "event: job.succeeded\ndata: {")
	require.Contains(t, string(body), `"result":"done"`)
}
