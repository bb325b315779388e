package intake_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/intake"
	"github.com/hookstream/hookstream/shared/contract"
)

// 202 means durable on every path that stores work, not only a plain job's:
// a job with an Idempotency-Key, a job of an external type (both written
// with their record) and an event. When JetStream cannot store it (the
// stream full, NATS down), each answers 503 with Retry-After, never 202,
// and a full stream leaves no record of a job it refused behind.
func TestEveryWriteAnswers503WhenJetStreamCannotStore(t *testing.T) {
	t.Parallel()
	calls := []struct {
		name        string
		givenPath   string
		givenBody   string
		givenHeader []string
	}{
		{name: "job with an Idempotency-Key", givenPath: "/v1/jobs", givenBody: `{"type":"echo"}`, givenHeader: []string{"Idempotency-Key", "order-503"}},
		{name: "job of an external type", givenPath: "/v1/jobs", givenBody: `{"type":"ocr","payload":{"page":1}}`},
		{name: "event", givenPath: "/v1/events", givenBody: `{"type":"order.paid","data":{"n":1}}`},
	}
	conditions := []struct {
		name  string
		given func(t *testing.T, b *bundle)
	}{
		{name: "stream full", given: fillStreams},
		{name: "NATS down", given: func(t *testing.T, b *bundle) { b.nats.Shutdown(); b.nats.WaitForShutdown() }},
	}
	for _, cond := range conditions {
		for _, call := range calls {
			t.Run(cond.name+"/"+call.name, func(t *testing.T) {
				t.Parallel()
				b := setupWith(t, withExternalOCR)
				cond.given(t, b)
				for range 2 {
					r := b.do(t, http.MethodPost, call.givenPath, keyAcme, "application/json", call.givenBody, call.givenHeader...)
					require.Equal(t, http.StatusServiceUnavailable, r.status, r.body)
					require.NotEmpty(t, r.header.Get("Retry-After"))
					require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
					require.EqualValues(t, http.StatusServiceUnavailable, r.body["status"])
				}
				if cond.name == "stream full" {
					kv, err := b.js.KeyValue(t.Context(), contract.BucketJobs)
					require.NoError(t, err)
					keys, err := kv.ListKeys(t.Context())
					require.NoError(t, err)
					var left []string
					for key := range keys.Keys() {
						left = append(left, key)
					}
					require.Empty(t, left, "the record of a job answered 503 sits queued")
				}
			})
		}
	}
}

// A job with an Idempotency-Key refused by a full stream (503) is stored
// when the client retries with the same key once there is room: 202, and
// its message is in the stream for a processor to run it.
func TestIdempotentJobRefusedByAFullStreamIsStoredOnRetry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fillStreams(t, b)
	const body = `{"type":"echo","payload":{"order":9}}`
	r := b.submit(t, keyAcme, body, "Idempotency-Key", "order-9")
	require.Equal(t, http.StatusServiceUnavailable, r.status, r.body)
	require.NotEmpty(t, r.header.Get("Retry-After"))
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))

	setMaxMsgs(t, b, contract.StreamJobs, -1)
	r = b.submit(t, keyAcme, body, "Idempotency-Key", "order-9")
	require.Equal(t, http.StatusAccepted, r.status, r.body)
	id, _ := r.body["id"].(string)
	require.NotEmpty(t, id)

	s, err := b.js.Stream(t.Context(), contract.StreamJobs)
	require.NoError(t, err)
	msg, err := s.GetLastMsgForSubject(t.Context(), contract.JobSubject("acme", "echo"))
	require.NoError(t, err)
	var req contract.JobRequest
	require.NoError(t, json.Unmarshal(msg.Data, &req))
	require.Equal(t, id, req.ID, "the job's message is not in the stream")
	require.JSONEq(t, `{"order":9}`, string(req.Payload))
	require.True(t, strings.HasPrefix(msg.Header.Get(contract.HeaderMsgID), id+"."))
	got := b.do(t, http.MethodGet, "/v1/jobs/"+id, keyAcme, "", "")
	require.Equal(t, http.StatusOK, got.status, got.body)
	require.Equal(t, "queued", got.body["status"])
}

// A tenant's job that has a record (written at submit for external types
// and Idempotency-Keys, by the processor for the others) is another
// tenant's 404 on every route, and is left as it was.
func TestTenantsSeeOnlyTheirRecordedJobs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const id = "job_recorded_acme"
	b.writeQueuedRecord(t, id)
	now := time.Now().UTC()
	d := contract.Delivery{ID: "msg_rec", Tenant: "acme", EventID: "evt_rec", JobID: id, URL: "https://example.com/hook"}
	b.putDeliveryRecord(t, d.LogKey(), contract.DeliveryRecord{ID: d.ID, EventID: d.EventID, EventType: "job.running", JobID: id, URL: d.URL,
		Status: contract.DeliverySucceeded, CreatedAt: now, UpdatedAt: now})

	for _, call := range []struct{ method, path string }{
		{http.MethodGet, "/v1/jobs/" + id},
		{http.MethodGet, "/v1/jobs/" + id + "?wait=1s"},
		{http.MethodDelete, "/v1/jobs/" + id},
		{http.MethodGet, "/v1/jobs/" + id + "/deliveries"},
		{http.MethodGet, "/v1/jobs/" + id + "/events"},
	} {
		status, header := b.answerHead(t, call.method, call.path, keyOther)
		require.Equal(t, http.StatusNotFound, status, "%s %s", call.method, call.path)
		require.Equal(t, "application/problem+json", header.Get("Content-Type"))
	}

	r := b.do(t, http.MethodGet, "/v1/jobs/"+id, keyAcme, "", "")
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Equal(t, "queued", r.body["status"], "another tenant's DELETE canceled the job")
	r = b.do(t, http.MethodGet, "/v1/jobs/"+id+"?wait=100ms", keyAcme, "", "")
	require.Equal(t, http.StatusOK, r.status, r.body)
	r = b.do(t, http.MethodGet, "/v1/jobs/"+id+"/deliveries", keyAcme, "", "")
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Len(t, r.body["data"], 1)
	require.Equal(t, "job.queued", <-b.jobEventStream(t, id, "event: "))
	r = b.do(t, http.MethodDelete, "/v1/jobs/"+id, keyAcme, "", "")
	require.Equal(t, http.StatusAccepted, r.status, r.body)
	require.Equal(t, "canceled", r.body["status"])
}

// Nothing a client gives or gets as a secret reaches the log: API keys and
// the Authorization header, endpoint and signing secrets (testWriter fails
// the test on a line that carries one), on successful calls and on failed
// ones.
func TestSecretsAreNotLogged(t *testing.T) {
	t.Parallel()
	const admin = "admin-token-0123456789"
	b := setupWith(t, func(c *intake.Config) { c.AdminToken = admin })
	r := b.do(t, http.MethodPost, "/v1/endpoints", keyAcme, "application/json", `{"url":"https://example.com/hook","event_types":["order.paid"]}`)
	require.Equal(t, http.StatusCreated, r.status, r.body)
	require.True(t, strings.HasPrefix(r.body["secret"].(string), "whsec_"))
	ep := "/v1/endpoints/" + r.body["id"].(string)
	for _, call := range []struct {
		method, path, key string
		wantStatus        int
	}{
		{http.MethodGet, ep + "/secret", keyAcme, http.StatusOK},
		{http.MethodPost, ep + "/secret/rotate", keyAcme, http.StatusOK},
		{http.MethodGet, "/v1/signing-secret", keyAcme, http.StatusOK},
		{http.MethodPost, "/v1/signing-secret/rotate", keyAcme, http.StatusOK},
		{http.MethodGet, ep, keyOther, http.StatusNotFound},
		{http.MethodGet, ep, keyAcme + "x", http.StatusUnauthorized},
		{http.MethodPost, "/v1/admin/tenants", admin, http.StatusCreated},
		{http.MethodPost, "/v1/admin/tenants/globex/keys", admin, http.StatusCreated},
		{http.MethodGet, "/v1/admin/tenants", keyAcme, http.StatusForbidden}, // a tenant's key, not the admin token
		{http.MethodGet, "/v1/admin/tenants", admin + "x", http.StatusUnauthorized},
	} {
		body, contentType := "", ""
		if call.path == "/v1/admin/tenants" && call.method == http.MethodPost {
			body, contentType = `{"id":"globex"}`, "application/json"
		}
		r := b.do(t, call.method, call.path, call.key, contentType, body)
		require.Equal(t, call.wantStatus, r.status, "%s %s: %v", call.method, call.path, r.body)
	}
	// Failures are logged with their error: JetStream gone.
	b.nats.Shutdown()
	b.nats.WaitForShutdown()
	r = b.do(t, http.MethodPost, "/v1/endpoints", keyAcme, "application/json", `{"url":"https://example.com/hook"}`)
	require.Equal(t, http.StatusServiceUnavailable, r.status, r.body)
	r = b.do(t, http.MethodPost, ep+"/secret/rotate", keyAcme, "", "")
	require.Equal(t, http.StatusServiceUnavailable, r.status, r.body)
}

// answerHead is the status and header of a call's answer, without its body:
// an event stream (or a long-poll) answered when it should have been
// refused does not hold the test up.
func (b *bundle) answerHead(t *testing.T, method, path, key string) (int, http.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, b.srv.URL+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	return resp.StatusCode, resp.Header
}

func withExternalOCR(c *intake.Config) {
	c.JobTypes = append(c.JobTypes, "ocr")
	c.ExternalJobTypes = []string{"ocr"}
}

// fillStreams makes the jobs and events streams full (DiscardNew): each
// takes one message, and holds one.
func fillStreams(t *testing.T, b *bundle) {
	t.Helper()
	setMaxMsgs(t, b, contract.StreamJobs, 1)
	setMaxMsgs(t, b, contract.StreamEvents, 1)
	require.Equal(t, http.StatusAccepted, b.submit(t, keyAcme, `{"type":"echo"}`).status)
	r := b.do(t, http.MethodPost, "/v1/events", keyAcme, "application/json", `{"type":"order.made","data":{}}`)
	require.Equal(t, http.StatusAccepted, r.status, r.body)
}

func setMaxMsgs(t *testing.T, b *bundle, stream string, most int64) {
	t.Helper()
	ctx := context.Background()
	s, err := b.js.Stream(ctx, stream)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	require.Equal(t, jetstream.DiscardNew, cfg.Discard, stream)
	cfg.MaxMsgs = most
	_, err = b.js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
}
