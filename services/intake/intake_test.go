package intake_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/intake"
	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/jobstore"
	"github.com/hookstream/hookstream/shared/natstest"
	"github.com/hookstream/hookstream/shared/secretbox"
	"github.com/hookstream/hookstream/shared/ssrf"
)

const (
	keyAcme  = "acme-key-0123456789abcdef"
	keyOther = "other-key-0123456789abcdef"
)

type bundle struct {
	nats *natstest.Server
	js   jetstream.JetStream
	srv  *httptest.Server
}

func setup(t *testing.T) *bundle {
	t.Helper()
	return setupWith(t, func(*intake.Config) {})
}

// setupWith is setup with a config changed by change.
func setupWith(t *testing.T, change func(*intake.Config)) *bundle {
	t.Helper()
	return setupTopology(t, bus.Topology{}, change)
}

// setupTopology is setupWith on streams and buckets set up as topo says.
func setupTopology(t *testing.T, topo bus.Topology, change func(*intake.Config)) *bundle {
	t.Helper()
	ns := natstest.Start(t)
	nc, js := ns.Connect(t)
	ctx := context.Background()
	require.NoError(t, bus.Ensure(ctx, js, topo))
	cfg := intake.Config{
		APIKeys:        []intake.APIKey{{Tenant: "acme", Key: keyAcme}, {Tenant: "other", Key: keyOther}},
		JobTypes:       []string{"echo"},
		Guard:          ssrf.NewGuard(nil),
		Box:            testBox(t),
		MaxBodyBytes:   4096,
		MaxJSONDepth:   5,
		PublishTimeout: 2 * time.Second,
	}
	change(&cfg)
	svc, err := intake.New(ctx, cfg, nc, js, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	require.NoError(t, err)
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	return &bundle{nats: ns, js: js, srv: srv}
}

func testBox(t *testing.T) *secretbox.Box {
	box, err := secretbox.New(make([]byte, secretbox.KeySize))
	require.NoError(t, err)
	return box
}

// testWriter sends a service's log to t.Log, and fails the test on a line
// that carries a secret (secretInLog), which it does not repeat.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	if secretInLog.MatchString(line) {
		w.t.Errorf("a secret was logged: %s", secretInLog.ReplaceAllString(line, "[SECRET]"))
		return len(p), nil
	}
	w.t.Log(line)
	return len(p), nil
}

// secretInLog matches what must never be logged: an endpoint or signing
// secret (whsec_…), the API keys of these tests, an issued key (hs_…), the
// admin token of these tests, and a bearer token (an Authorization header).
var secretInLog = regexp.MustCompile(`whsec_[^\s"]*|` + regexp.QuoteMeta(keyAcme) + `|` + regexp.QuoteMeta(keyOther) +
	`|hs_[0-9a-v]+_[A-Za-z0-9_-]{16,}|admin-token-0123456789|(?i:bearer)\s+[^\s<"][^\s"]*`)

type reply struct {
	status int
	header http.Header
	body   map[string]any
}

func (b *bundle) do(t *testing.T, method, path, key, contentType, body string, headers ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	out := reply{status: resp.StatusCode, header: resp.Header}
	if len(data) > 0 {
		require.NoError(t, json.Unmarshal(data, &out.body), string(data))
	}
	return out
}

func (b *bundle) submit(t *testing.T, key, body string, headers ...string) reply {
	t.Helper()
	return b.do(t, http.MethodPost, "/v1/jobs", key, "application/json", body, headers...)
}

func TestSubmitAccepted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.submit(t, keyAcme, `{"type":"echo","payload":{"n":1},"metadata":{"order":"42"}}`)
	require.Equal(t, http.StatusAccepted, r.status)
	id := r.body["id"].(string)
	require.True(t, strings.HasPrefix(id, "job_"))
	require.Equal(t, "/v1/jobs/"+id, r.header.Get("Location"))
	require.Equal(t, "1", r.header.Get("Retry-After"))
	require.Equal(t, "queued", r.body["status"])
	require.NotEmpty(t, r.body["expires_at"])

	// 202 means the job message is in the stream, at the sequence its id
	// names; the processor writes the job's record.
	ctx := context.Background()
	s, err := b.js.Stream(ctx, contract.StreamJobs)
	require.NoError(t, err)
	msg, err := s.GetLastMsgForSubject(ctx, contract.JobSubject("acme", "echo"))
	require.NoError(t, err)
	var req contract.JobRequest
	require.NoError(t, json.Unmarshal(msg.Data, &req))
	require.Equal(t, contract.SequenceJobID(msg.Sequence^testBox(t).JobIDMask(req.Nonce), req.Nonce), id)
	require.NotEqual(t, contract.SequenceJobID(msg.Sequence, req.Nonce), id, "the id hides the stream sequence")
	require.JSONEq(t, `{"n":1}`, string(req.Payload))
	kv, err := b.js.KeyValue(ctx, contract.BucketJobs)
	require.NoError(t, err)
	_, err = kv.Get(ctx, id)
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound, "no record written at submit")

	// Until then the job is read from its message.
	got := b.do(t, http.MethodGet, "/v1/jobs/"+id, keyAcme, "", "")
	require.Equal(t, http.StatusOK, got.status)
	require.Equal(t, "queued", got.body["status"])
	require.Equal(t, "1", got.header.Get("Retry-After"))
	require.Equal(t, r.body["created_at"], got.body["created_at"])
	require.Equal(t, r.body["expires_at"], got.body["expires_at"])
	require.Equal(t, map[string]any{"order": "42"}, got.body["metadata"])
	require.NotContains(t, got.body, "tenant")
	require.NotContains(t, got.body, "request_hash")
	require.NotContains(t, got.body, "payload")

	// Another nonce with the same number, or the sequence and nonce but
	// spelled otherwise, is no job.
	masked, _, ok := contract.ParseSequenceJobID(id)
	require.True(t, ok)
	for _, other := range []string{
		contract.SequenceJobID(masked, "0123456789abcdefghijklmnop"),
		contract.SequenceJobID(msg.Sequence^testBox(t).JobIDMask("0123456789abcdefghijklmnop"), "0123456789abcdefghijklmnop"),
		strings.Replace(id, "job_s", "job_s0", 1),
		"job_s99999_abc",
	} {
		require.Equal(t, http.StatusNotFound, b.do(t, http.MethodGet, "/v1/jobs/"+other, keyAcme, "", "").status, other)
		require.Equal(t, http.StatusNotFound, b.do(t, http.MethodDelete, "/v1/jobs/"+other, keyAcme, "", "").status, other)
	}
}

// A job whose message outlived JobRetention is gone, not queued again: its
// record, written after the message, may have expired already.
func TestJobOlderThanRetentionIsGone(t *testing.T) {
	t.Parallel()
	b := setupWith(t, func(c *intake.Config) { c.JobRetention = 3 * time.Second }) // the first GET well within it
	id := b.submit(t, keyAcme, `{"type":"echo"}`).body["id"].(string)
	require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/v1/jobs/"+id, keyAcme, "", "").status)
	require.Eventually(t, func() bool {
		return b.do(t, http.MethodGet, "/v1/jobs/"+id, keyAcme, "", "").status == http.StatusNotFound
	}, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, http.StatusNotFound, b.do(t, http.MethodDelete, "/v1/jobs/"+id, keyAcme, "", "").status)
}

// The jobs of a type run outside hookstream get their record at submit, next
// to a message with their id, as the NATS contract promises such processors.
func TestSubmitExternalTypeWritesRecord(t *testing.T) {
	t.Parallel()
	b := setupWith(t, func(c *intake.Config) {
		c.JobTypes = append(c.JobTypes, "ocr")
		c.ExternalJobTypes = []string{"ocr"}
	})
	r := b.submit(t, keyAcme, `{"type":"ocr","payload":{"page":1}}`)
	require.Equal(t, http.StatusAccepted, r.status)
	id := r.body["id"].(string)
	ctx := context.Background()
	kv, err := b.js.KeyValue(ctx, contract.BucketJobs)
	require.NoError(t, err)
	entry, err := kv.Get(ctx, id)
	require.NoError(t, err)
	var rec contract.JobRecord
	require.NoError(t, json.Unmarshal(entry.Value(), &rec))
	require.Equal(t, contract.StatusQueued, rec.Status)
	s, err := b.js.Stream(ctx, contract.StreamJobs)
	require.NoError(t, err)
	msg, err := s.GetLastMsgForSubject(ctx, contract.JobSubject("acme", "ocr"))
	require.NoError(t, err)
	require.Equal(t, id, msg.Header.Get(contract.HeaderMsgID))
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	deep := strings.Repeat(`{"a":`, 6) + "1" + strings.Repeat("}", 6)
	tests := []struct {
		name         string
		givenKey     string
		givenType    string
		givenBody    string
		wantStatus   int
		wantInDetail string
	}{
		{name: "no key", givenType: "application/json", givenBody: `{"type":"echo"}`, wantStatus: 401},
		{name: "wrong key", givenKey: "nope-nope-nope-nope-nope", givenType: "application/json", givenBody: `{"type":"echo"}`, wantStatus: 401},
		{name: "malformed JSON", givenKey: keyAcme, givenType: "application/json", givenBody: `{"type":`, wantStatus: 400},
		{name: "empty body", givenKey: keyAcme, givenType: "application/json", givenBody: ``, wantStatus: 400},
		{name: "trailing data", givenKey: keyAcme, givenType: "application/json", givenBody: `{"type":"echo"} {}`, wantStatus: 400, wantInDetail: "trailing"},
		{name: "not UTF-8", givenKey: keyAcme, givenType: "application/json", givenBody: "{\"type\":\"echo\",\"payload\":\"A\xffB\"}", wantStatus: 400, wantInDetail: "UTF-8"},
		{name: "too large", givenKey: keyAcme, givenType: "application/json", givenBody: `{"type":"echo","payload":"` + strings.Repeat("x", 5000) + `"}`, wantStatus: 413},
		{name: "wrong content type", givenKey: keyAcme, givenType: "text/plain", givenBody: `{"type":"echo"}`, wantStatus: 415},
		{name: "no content type", givenKey: keyAcme, givenBody: `{"type":"echo"}`, wantStatus: 415},
		{name: "too deep", givenKey: keyAcme, givenType: "application/json", givenBody: `{"type":"echo","payload":` + deep + `}`, wantStatus: 422, wantInDetail: "nested"},
		{name: "unknown type", givenKey: keyAcme, givenType: "application/json", givenBody: `{"type":"resize"}`, wantStatus: 422, wantInDetail: "unknown job type"},
		{name: "missing type", givenKey: keyAcme, givenType: "application/json", givenBody: `{"payload":1}`, wantStatus: 422, wantInDetail: "type"},
		{name: "unknown field", givenKey: keyAcme, givenType: "application/json", givenBody: `{"type":"echo","colour":1}`, wantStatus: 422, wantInDetail: "colour"},
		{name: "wrong field type", givenKey: keyAcme, givenType: "application/json", givenBody: `{"type":7}`, wantStatus: 422},
		{name: "metadata value null", givenKey: keyAcme, givenType: "application/json", givenBody: `{"type":"echo","metadata":{"order":null}}`, wantStatus: 422, wantInDetail: "metadata.order"},
		{name: "metadata value a number", givenKey: keyAcme, givenType: "application/json", givenBody: `{"type":"echo","metadata":{"order":7}}`, wantStatus: 422, wantInDetail: "metadata.order"},
		{name: "not an object", givenKey: keyAcme, givenType: "application/json", givenBody: `[1]`, wantStatus: 422},
		{name: "private callback", givenKey: keyAcme, givenType: "application/json", givenBody: `{"type":"echo","callback_url":"http://127.0.0.1/x"}`, wantStatus: 422, wantInDetail: "HOOKSTREAM_ALLOWED_CALLBACK_NETWORKS"},
		{name: "ftp callback", givenKey: keyAcme, givenType: "application/json", givenBody: `{"type":"echo","callback_url":"ftp://example.com/x"}`, wantStatus: 422, wantInDetail: "scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := b.do(t, http.MethodPost, "/v1/jobs", tt.givenKey, tt.givenType, tt.givenBody)
			require.Equal(t, tt.wantStatus, r.status, r.body)
			require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
			require.EqualValues(t, tt.wantStatus, r.body["status"])
			require.NotEmpty(t, r.body["title"])
			require.NotEmpty(t, r.body["type"])
			require.Contains(t, r.body["detail"], tt.wantInDetail)
		})
	}
}

func TestTenantsSeeOnlyTheirJobs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.submit(t, keyAcme, `{"type":"echo"}`).body["id"].(string)
	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		r := b.do(t, method, "/v1/jobs/"+id, keyOther, "", "")
		require.Equal(t, http.StatusNotFound, r.status, method)
	}
	require.Equal(t, http.StatusNotFound, b.do(t, http.MethodGet, "/v1/jobs/job_nope", keyAcme, "", "").status)
	require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/v1/jobs/"+id, keyAcme, "", "").status)
	// The same Idempotency-Key of another tenant is another job.
	a := b.submit(t, keyAcme, `{"type":"echo"}`, "Idempotency-Key", "k1")
	require.Equal(t, http.StatusAccepted, a.status, a.body)
	o := b.submit(t, keyOther, `{"type":"echo"}`, "Idempotency-Key", "k1")
	require.Equal(t, http.StatusAccepted, o.status, "another tenant's use of the key shows: %v", o.body)
	require.NotEmpty(t, o.body["id"])
	require.NotEqual(t, a.body["id"], o.body["id"])
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := b.submit(t, keyAcme, `{"type":"echo","payload":{"a":1,"b":2}}`, "Idempotency-Key", "order-7")
	require.Equal(t, http.StatusAccepted, first.status)
	again := b.submit(t, keyAcme, `{"payload": {"a":1, "b":2}, "type":"echo"}`, "Idempotency-Key", "order-7")
	require.Equal(t, http.StatusAccepted, again.status)
	require.Equal(t, first.body["id"], again.body["id"])
	require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
	other := b.submit(t, keyAcme, `{"type":"echo","payload":{"a":2}}`, "Idempotency-Key", "order-7")
	require.Equal(t, http.StatusUnprocessableEntity, other.status)
	require.Contains(t, other.body["detail"], "Idempotency-Key")

	// One job message for the two accepted submissions. The 422'd request's
	// message is de-duplicated apart from it (the processor drops it), so
	// that, had it come first, it could not have taken the job's place.
	s, err := b.js.Stream(context.Background(), contract.StreamJobs)
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 2, info.State.Msgs)
	var hashes []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		msg, err := s.GetMsg(context.Background(), seq)
		require.NoError(t, err)
		var req contract.JobRequest
		require.NoError(t, json.Unmarshal(msg.Data, &req))
		require.Equal(t, first.body["id"], req.ID)
		require.True(t, strings.HasPrefix(msg.Header.Get(contract.HeaderMsgID), req.ID+"."+req.RequestHash[:16]))
		hashes = append(hashes, req.RequestHash)
	}
	require.NotEqual(t, hashes[0], hashes[1])
}

// A request sent again with its payload written otherwise (members in
// another order, escapes, 1.0 for 1) is the same request: a client whose
// retry encodes the body again got 422 instead of its job (found by
// review). A number is still not its string.
func TestIdempotencyKeyComparesThePayloadAsJSON(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := b.submit(t, keyAcme, `{"type":"echo","payload":{"s":"ü","a":1},"metadata":{"x":"1","y":"2"}}`, "Idempotency-Key", "k")
	require.Equal(t, http.StatusAccepted, first.status)
	again := b.submit(t, keyAcme, `{"metadata":{"y":"2","x":"1"},"payload":{"a":1.0,"s":"\u00fc"},"type":"echo"}`, "Idempotency-Key", "k")
	require.Equal(t, http.StatusAccepted, again.status, again.body)
	require.Equal(t, first.body["id"], again.body["id"])
	require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
	other := b.submit(t, keyAcme, `{"type":"echo","payload":{"s":"ü","a":"1"},"metadata":{"x":"1","y":"2"}}`, "Idempotency-Key", "k")
	require.Equal(t, http.StatusUnprocessableEntity, other.status)

	// The job's own message is stored once: the retry published it again
	// (it might never have been stored), de-duplicated on its id and hash.
	s, err := b.js.Stream(t.Context(), contract.StreamJobs)
	require.NoError(t, err)
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	own := 0
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		msg, err := s.GetMsg(t.Context(), seq)
		require.NoError(t, err)
		var req contract.JobRequest
		require.NoError(t, json.Unmarshal(msg.Data, &req))
		require.Equal(t, first.body["id"], req.ID)
		if string(req.Payload) == `{"s":"ü","a":1}` {
			own++
		}
	}
	require.Equal(t, 1, own, "the job's own message")

	// Without a payload too (it was 422: from the NATS contract review).
	bare := b.submit(t, keyAcme, `{"type":"echo","metadata":{"x":"1","y":"2"}}`, "Idempotency-Key", "bare")
	require.Equal(t, http.StatusAccepted, bare.status, bare.body)
	bareAgain := b.submit(t, keyAcme, `{ "metadata": {"y":"2","x":"1"}, "type": "echo" }`, "Idempotency-Key", "bare")
	require.Equal(t, http.StatusAccepted, bareAgain.status, bareAgain.body)
	require.Equal(t, bare.body["id"], bareAgain.body["id"])
}

// A replay that finds its job finished has no Retry-After: there is
// nothing to wait for (found by review). Nor has an event's 202.
func TestNoRetryAfterForAFinishedJobOrAnEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := b.submit(t, keyAcme, `{"type":"echo"}`, "Idempotency-Key", "k")
	require.Equal(t, http.StatusAccepted, first.status)
	require.NotEmpty(t, first.header.Get("Retry-After"))
	require.Equal(t, http.StatusAccepted, b.do(t, http.MethodDelete, "/v1/jobs/"+first.body["id"].(string), keyAcme, "", "").status)
	again := b.submit(t, keyAcme, `{"type":"echo"}`, "Idempotency-Key", "k")
	require.Equal(t, http.StatusAccepted, again.status)
	require.Equal(t, "canceled", again.body["status"])
	require.Empty(t, again.header.Get("Retry-After"))
	ev := b.do(t, http.MethodPost, "/v1/events", keyAcme, "application/json", `{"type":"invoice.paid","data":{}}`)
	require.Equal(t, http.StatusAccepted, ev.status, ev.body)
	require.Empty(t, ev.header.Get("Retry-After"))
}

func TestCancel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.submit(t, keyAcme, `{"type":"echo"}`).body["id"].(string)
	r := b.do(t, http.MethodDelete, "/v1/jobs/"+id, keyAcme, "", "")
	require.Equal(t, http.StatusAccepted, r.status)
	require.Equal(t, "canceled", r.body["status"])
	require.NotEmpty(t, r.body["completed_at"])
	r = b.do(t, http.MethodDelete, "/v1/jobs/"+id, keyAcme, "", "")
	require.Equal(t, http.StatusConflict, r.status)
	got := b.do(t, http.MethodGet, "/v1/jobs/"+id, keyAcme, "", "")
	require.Equal(t, "canceled", got.body["status"])
	require.Empty(t, got.header.Get("Retry-After"), "a finished job has no Retry-After")
}

func TestLongPollReturnsOnChange(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.submit(t, keyAcme, `{"type":"echo"}`).body["id"].(string)
	done := make(chan reply, 1)
	go func() { done <- b.do(t, http.MethodGet, "/v1/jobs/"+id+"?wait=30s", keyAcme, "", "") }()
	b.awaitWatch(t, id, map[string]bool{}, func() bool { return len(done) > 0 }) // the assertion does not depend on it
	require.Equal(t, http.StatusAccepted, b.do(t, http.MethodDelete, "/v1/jobs/"+id, keyAcme, "", "").status)
	r := <-done
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "canceled", r.body["status"])

	bad := b.do(t, http.MethodGet, "/v1/jobs/"+id+"?wait=forever", keyAcme, "", "")
	require.Equal(t, http.StatusBadRequest, bad.status)

	// A job that nothing changes (no processor here, so no record either)
	// is answered as it is when the wait ends.
	queued := b.submit(t, keyAcme, `{"type":"echo"}`).body["id"].(string)
	r = b.do(t, http.MethodGet, "/v1/jobs/"+queued+"?wait=300ms", keyAcme, "", "")
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "queued", r.body["status"])
}

// A long-poll on a job without a record does not end at the record's first
// write when that write says queued too (a redelivered job's processor
// writes it before running the job): it waits for a change to show.
func TestLongPollWaitsPastUnchangedFirstRecord(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.submit(t, keyAcme, `{"type":"echo"}`).body["id"].(string)
	done := make(chan reply, 1)
	go func() { done <- b.do(t, http.MethodGet, "/v1/jobs/"+id+"?wait=10s", keyAcme, "", "") }()
	ended := func() bool { return len(done) > 0 }
	seen := map[string]bool{}
	b.awaitWatch(t, id, seen, ended) // the poll waits for the first record
	b.writeQueuedRecord(t, id)
	b.awaitWatch(t, id, seen, ended) // it took the record, and waits on
	require.Equal(t, http.StatusAccepted, b.do(t, http.MethodDelete, "/v1/jobs/"+id, keyAcme, "", "").status)
	r := <-done
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "canceled", r.body["status"])
}

// writeQueuedRecord writes the first record of an acme echo job, queued, as
// the processor of a redelivered job does before running it.
func (b *bundle) writeQueuedRecord(t *testing.T, id string) {
	t.Helper()
	jobs, err := jobstore.Open(context.Background(), b.js, b.js)
	require.NoError(t, err)
	now := time.Now().UTC()
	_, err = jobs.Create(context.Background(), contract.JobRecord{
		Job:    contract.Job{ID: id, Type: "echo", Status: contract.StatusQueued, CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)},
		Tenant: "acme",
	})
	require.NoError(t, err)
}

// The event stream of a job without a record does not send job.queued again
// at the record's first write when that write says queued too.
func TestJobEventsSkipUnchangedFirstRecord(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.submit(t, keyAcme, `{"type":"echo"}`).body["id"].(string)
	events := b.jobEventStream(t, id, "event: ")
	require.Equal(t, "job.queued", <-events)
	seen := map[string]bool{}
	b.awaitWatch(t, id, seen, nil) // the stream waits for the first record
	b.writeQueuedRecord(t, id)
	b.awaitWatch(t, id, seen, nil) // it took the record, and waits on
	require.Equal(t, http.StatusAccepted, b.do(t, http.MethodDelete, "/v1/jobs/"+id, keyAcme, "", "").status)
	var rest []string
	for event := range events {
		rest = append(rest, event)
	}
	require.Equal(t, []string{"job.canceled"}, rest)
}

// awaitWatch waits until a watch on the record of job id that is not in
// seen is open on the server (jobstore.WaitChange, which a long-poll and an
// event stream call each time they wait), and adds it to seen; or until
// ended (if not nil) tells that the wait is over.
func (b *bundle) awaitWatch(t *testing.T, id string, seen map[string]bool, ended func() bool) {
	t.Helper()
	records, err := b.js.Stream(t.Context(), "KV_"+contract.BucketJobs)
	require.NoError(t, err)
	subject := "$KV." + contract.BucketJobs + "." + id
	require.Eventually(t, func() bool {
		if ended != nil && ended() {
			return true
		}
		found := false
		for info := range records.ListConsumers(t.Context()).Info() {
			if info.Config.FilterSubject == subject && !seen[info.Name] {
				seen[info.Name], found = true, true
			}
		}
		return found
	}, 10*time.Second, 5*time.Millisecond, "no new watch on %s", id)
}

// jobEventStream reads GET /v1/jobs/{id}/events until the stream or the
// test ends: each line that starts with prefix, without it.
func (b *bundle) jobEventStream(t *testing.T, id, prefix string) <-chan string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.srv.URL+"/v1/jobs/"+id+"/events", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+keyAcme)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	events := make(chan string, 16)
	go func() {
		defer close(events)
		defer resp.Body.Close()
		lines := bufio.NewScanner(resp.Body)
		for lines.Scan() {
			if line, ok := strings.CutPrefix(lines.Text(), prefix); ok {
				events <- line
			}
		}
	}()
	return events
}

// With NATS gone, a submission is answered 503 with Retry-After, never 202.
func TestNATSDownAnswers503(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.nats.Shutdown()
	b.nats.WaitForShutdown()
	for range 3 {
		r := b.submit(t, keyAcme, `{"type":"echo"}`)
		require.Equal(t, http.StatusServiceUnavailable, r.status, r.body)
		require.NotEmpty(t, r.header.Get("Retry-After"))
		require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
	}
	require.Equal(t, http.StatusServiceUnavailable, b.do(t, http.MethodGet, "/readyz", "", "", "").status)
	require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/healthz", "", "", "").status)
}

// A query string that does not parse answers 400, instead of its
// parameters (a page cursor, a filter) dropped unseen.
func TestMalformedQueryAnswers400(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, path := range []string{"/v1/deliveries?before=%zz", "/v1/deliveries?limit=1;status=failed", "/v1/endpoints?after=%"} {
		r := b.do(t, http.MethodGet, path, keyAcme, "", "")
		require.Equal(t, http.StatusBadRequest, r.status, path)
		require.Contains(t, r.body["detail"], "query string", path)
	}
	require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/v1/deliveries?limit=1", keyAcme, "", "").status)
}

// A path with a trailing slash is not a route: 404 as a problem, not a
// redirect answered in HTML before the key is checked, which a client
// following a 307 POSTs again (found by review).
func TestTrailingSlashIsNotARoute(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tt := range []struct{ method, path string }{
		{http.MethodGet, "/v1/endpoints/"}, {http.MethodPost, "/v1/endpoints/"}, {http.MethodDelete, "/v1/jobs/x/"}, {http.MethodGet, "/healthz/"},
	} {
		r := b.do(t, tt.method, tt.path, keyAcme, "application/json", `{"url":"https://example.com/hook"}`)
		require.Equal(t, http.StatusNotFound, r.status, tt.path)
		require.Equal(t, "application/problem+json", r.header.Get("Content-Type"), tt.path)
	}
}

// The operations endpoints answer HEAD as GET, without the body: uptime
// checkers ask with HEAD.
func TestOperationsAnswerHead(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, path := range []string{"/healthz", "/readyz", "/openapi.json", "/metrics"} {
		r := b.do(t, http.MethodHead, path, "", "", "")
		require.Equal(t, http.StatusOK, r.status, path)
	}
}

// A full jobs stream (DiscardNew) refuses new work: 503, and nothing is lost.
func TestFullStreamAnswers503(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	s, err := b.js.Stream(ctx, contract.StreamJobs)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	cfg.MaxMsgs = 2
	_, err = b.js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, b.submit(t, keyAcme, `{"type":"echo"}`).status)
	require.Equal(t, http.StatusAccepted, b.submit(t, keyAcme, `{"type":"echo"}`).status)
	r := b.submit(t, keyAcme, `{"type":"echo"}`)
	require.Equal(t, http.StatusServiceUnavailable, r.status, r.body)
	require.NotEmpty(t, r.header.Get("Retry-After"))
}

func TestSigningSecret(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := b.do(t, http.MethodGet, "/v1/signing-secret", keyAcme, "", "")
	require.Equal(t, http.StatusOK, first.status)
	secret := first.body["secret"].(string)
	require.True(t, strings.HasPrefix(secret, "whsec_"))
	require.Equal(t, secret, b.do(t, http.MethodGet, "/v1/signing-secret", keyAcme, "", "").body["secret"])
	require.NotEqual(t, secret, b.do(t, http.MethodGet, "/v1/signing-secret", keyOther, "", "").body["secret"])

	rotated := b.do(t, http.MethodPost, "/v1/signing-secret/rotate", keyAcme, "", "")
	require.Equal(t, http.StatusOK, rotated.status)
	require.NotEqual(t, secret, rotated.body["secret"])
	prev := rotated.body["previous"].([]any)
	require.Len(t, prev, 1)
	require.Equal(t, secret, prev[0].(map[string]any)["secret"])
}

func TestTenantRateLimitAnswers429(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	nc, js := ns.Connect(t)
	ctx := context.Background()
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))
	svc, err := intake.New(ctx, intake.Config{
		APIKeys:  []intake.APIKey{{Tenant: "acme", Key: keyAcme}, {Tenant: "other", Key: keyOther}},
		JobTypes: []string{"echo"}, Guard: ssrf.NewGuard(nil), Box: testBox(t),
		// One a second: the burst of one second's worth is one job, and the
		// requests refused after it are quick, so a slow machine does not
		// take the second it would need for another token.
		TenantRate: 1,
	}, nc, js, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	b := &bundle{nats: ns, js: js, srv: srv}
	codes := map[int]int{}
	for range 6 {
		r := b.submit(t, keyAcme, `{"type":"echo"}`)
		codes[r.status]++
		if r.status == http.StatusTooManyRequests {
			require.NotEmpty(t, r.header.Get("Retry-After"))
			require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
		}
	}
	require.Equal(t, 1, codes[http.StatusAccepted], "a burst of one second's worth")
	require.Equal(t, 5, codes[http.StatusTooManyRequests])
	require.Equal(t, http.StatusAccepted, b.submit(t, keyOther, `{"type":"echo"}`).status, "other tenants have their own rate")

	// Every write takes the rate, a test ping or a retry by hand (a
	// delivery stored and a webhook sent) as a job does; reads do not.
	for _, w := range []struct{ method, path, body string }{
		{http.MethodPost, "/v1/endpoints", `{"url":"https://example.com/hook"}`},
		{http.MethodPost, "/v1/endpoints/ep_x/test", ""},
		{http.MethodPost, "/v1/deliveries/msg_x/retry", ""},
		{http.MethodPatch, "/v1/endpoints/ep_x", `{"description":"x"}`},
		{http.MethodDelete, "/v1/jobs/job_x", ""},
		{http.MethodPost, "/v1/signing-secret/rotate", ""},
	} {
		r := b.do(t, w.method, w.path, keyAcme, "application/json", w.body)
		require.Equal(t, http.StatusTooManyRequests, r.status, "%s %s: %v", w.method, w.path, r.body)
	}
	require.Equal(t, http.StatusOK, b.do(t, http.MethodGet, "/v1/endpoints", keyAcme, "", "").status)
}

// An endpoint's body is at most 128 KiB, whatever HOOKSTREAM_MAX_BODY_BYTES
// allows: it is decoded more than once before its limits are checked.
func TestEndpointBodyIsSmall(t *testing.T) {
	t.Parallel()
	b := setup(t)
	big := `{"url":"https://example.com/hook","description":"` + strings.Repeat("x", 130<<10) + `"}`
	r := b.do(t, http.MethodPost, "/v1/endpoints", keyAcme, "application/json", big)
	require.Equal(t, http.StatusRequestEntityTooLarge, r.status, r.body)
	id := b.createEndpoint(t, keyAcme, `{"url":"https://example.com/hook"}`)
	r = b.do(t, http.MethodPatch, "/v1/endpoints/"+id, keyAcme, "application/json", big)
	require.Equal(t, http.StatusRequestEntityTooLarge, r.status, r.body)
}

func TestUnknownRoute(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(t, http.MethodGet, "/v2/nothing", keyAcme, "", "")
	require.Equal(t, http.StatusNotFound, r.status)
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
	r = b.do(t, http.MethodPut, "/v1/jobs", keyAcme, "", "")
	require.Equal(t, http.StatusMethodNotAllowed, r.status)
}

// A key or an endpoint made while its tenant is being deleted (its
// tombstone written, its keys and endpoints not yet all removed) is removed
// again: the delete, which listed them before, would leave them behind.
func TestNothingIsMadeForATenantBeingDeleted(t *testing.T) {
	t.Parallel()
	const admin = "admin-token-0123456789"
	b := setupWith(t, func(c *intake.Config) { c.AdminToken = admin })
	r := b.do(t, http.MethodPost, "/v1/admin/tenants", admin, "application/json", `{"id":"globex"}`)
	require.Equal(t, http.StatusCreated, r.status, r.body)
	r = b.do(t, http.MethodPost, "/v1/admin/tenants/globex/keys", admin, "", "")
	require.Equal(t, http.StatusCreated, r.status, r.body)
	key := r.body["key"].(string)

	tenants, err := b.js.KeyValue(context.Background(), contract.BucketTenants)
	require.NoError(t, err)
	_, err = tenants.Put(context.Background(), contract.TenantDeletedKey("globex"), []byte(`{"deleted_at":"2026-12-01T00:00:00Z"}`))
	require.NoError(t, err)

	r = b.do(t, http.MethodPost, "/v1/admin/tenants/globex/keys", admin, "", "")
	require.Equal(t, http.StatusConflict, r.status, r.body)
	require.Contains(t, r.body["detail"], "being deleted")
	r = b.do(t, http.MethodGet, "/v1/admin/tenants/globex/keys", admin, "", "")
	require.Len(t, r.body["data"], 1, "the key issued meanwhile was revoked")

	r = b.do(t, http.MethodPost, "/v1/endpoints", key, "application/json", `{"url":"https://example.com/hook"}`)
	require.Equal(t, http.StatusConflict, r.status, r.body)
	r = b.do(t, http.MethodGet, "/v1/endpoints", key, "", "")
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Empty(t, r.body["data"], "the endpoint made meanwhile was deleted")
}

// The Authorization scheme is case-insensitive; anything else is 401.
func TestBearerScheme(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for header, want := range map[string]int{
		"Bearer " + keyAcme:       http.StatusAccepted,
		"bearer " + keyAcme:       http.StatusAccepted,
		"BEARER  " + keyAcme:      http.StatusAccepted,
		"Basic " + keyAcme:        http.StatusUnauthorized,
		"Bearer" + keyAcme:        http.StatusUnauthorized,
		keyAcme:                   http.StatusUnauthorized,
		"Bearer " + keyAcme + "x": http.StatusUnauthorized,
	} {
		r := b.do(t, http.MethodPost, "/v1/jobs", "", "application/json", `{"type":"echo"}`, "Authorization", header)
		require.Equal(t, want, r.status, "Authorization: %s", header)
	}
}

// A job within HOOKSTREAM_MAX_BODY_BYTES whose message, or whose record
// only, the NATS server would not take (its max_payload) answers 413 and is
// not stored: a retry would fail the same way, and a processor could never
// store its outcome.
func TestJobLargerThanANATSMessageAnswers413(t *testing.T) {
	t.Parallel()
	b := setupWith(t, func(c *intake.Config) { c.MaxBodyBytes = 16 << 20 })
	for _, payload := range []string{ // the test server takes 8 MiB
		strings.Repeat("x", 9<<20),
		strings.Repeat("x", 8<<20-300),
		strings.Repeat("<", 2<<20), // 12 MiB in a record: encoding/json writes \u003c
	} {
		big := `{"type":"echo","payload":"` + payload + `"}`
		for _, headers := range [][]string{nil, {"Idempotency-Key", fmt.Sprintf("big-%d", len(payload))}} {
			r := b.submit(t, keyAcme, big, headers...)
			require.Equal(t, http.StatusRequestEntityTooLarge, r.status, r.body)
			require.Empty(t, r.header.Get("Retry-After"))
		}
	}
	jobs, err := b.js.Stream(context.Background(), contract.StreamJobs)
	require.NoError(t, err)
	info, err := jobs.Info(context.Background())
	require.NoError(t, err)
	require.Zero(t, info.State.Msgs)
}

// A job of an external type whose message is stored but whose record could
// not be written answers 503 with its message withdrawn: the client sends
// it again, and it must not then be stored twice.
func TestExternalJobWithoutItsRecordIsWithdrawn(t *testing.T) {
	t.Parallel()
	b := setupWith(t, func(c *intake.Config) {
		c.JobTypes = append(c.JobTypes, "ocr")
		c.ExternalJobTypes = []string{"ocr"}
	})
	ctx := context.Background()
	records, err := b.js.Stream(ctx, "KV_"+contract.BucketJobs)
	require.NoError(t, err)
	cfg := records.CachedInfo().Config
	cfg.MaxMsgSize = 64 // every record is larger: its write fails, the message's does not
	_, err = b.js.UpdateStream(ctx, cfg)
	require.NoError(t, err)

	for range 2 {
		r := b.submit(t, keyAcme, `{"type":"ocr","payload":{"page":1}}`)
		require.Equal(t, http.StatusServiceUnavailable, r.status, r.body)
	}
	jobs, err := b.js.Stream(ctx, contract.StreamJobs)
	require.NoError(t, err)
	info, err := jobs.Info(ctx, jetstream.WithSubjectFilter(contract.JobSubject("acme", "ocr")))
	require.NoError(t, err)
	require.Zero(t, info.State.Subjects[contract.JobSubject("acme", "ocr")], "no job message is left for a request answered 503")
}

// A job of an external type canceled while its job.canceled event could
// not be stored is answered 503, not 202: no processor of hookstream's
// republishes that event, as it does for its own types. The DELETE retried
// stores the event, then answers 409 as for any finished job.
func TestCanceledExternalJobKeepsItsEvent(t *testing.T) {
	t.Parallel()
	b := setupWith(t, func(c *intake.Config) {
		c.JobTypes = append(c.JobTypes, "ocr")
		c.ExternalJobTypes = []string{"ocr"}
	})
	ctx := context.Background()
	r := b.submit(t, keyAcme, `{"type":"ocr","payload":{"page":1}}`)
	require.Equal(t, http.StatusAccepted, r.status)
	id := r.body["id"].(string)
	events, err := b.js.Stream(ctx, contract.StreamEvents)
	require.NoError(t, err)
	cfg := events.CachedInfo().Config
	cfg.MaxMsgSize = 64 // the events stream refuses the event, as when full
	_, err = b.js.UpdateStream(ctx, cfg)
	require.NoError(t, err)

	r = b.do(t, http.MethodDelete, "/v1/jobs/"+id, keyAcme, "", "")
	require.Equal(t, http.StatusServiceUnavailable, r.status, r.body)
	require.NotEmpty(t, r.header.Get("Retry-After"))
	require.Contains(t, r.body["detail"], "retry the DELETE")
	_, err = events.GetLastMsgForSubject(ctx, contract.EventSubject("acme", "job.canceled"))
	require.ErrorIs(t, err, jetstream.ErrMsgNotFound)

	cfg.MaxMsgSize = -1
	_, err = b.js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	r = b.do(t, http.MethodDelete, "/v1/jobs/"+id, keyAcme, "", "")
	require.Equal(t, http.StatusConflict, r.status, r.body)
	msg, err := events.GetLastMsgForSubject(ctx, contract.EventSubject("acme", "job.canceled"))
	require.NoError(t, err, "the retried DELETE stores the event")
	require.Equal(t, id, msg.Header.Get(contract.HeaderJobID))
	r = b.do(t, http.MethodDelete, "/v1/jobs/"+id, keyAcme, "", "")
	require.Equal(t, http.StatusConflict, r.status, r.body)
	info, err := events.Info(ctx, jetstream.WithSubjectFilter(contract.EventSubject("acme", "job.canceled")))
	require.NoError(t, err)
	require.EqualValues(t, 1, info.State.Subjects[contract.EventSubject("acme", "job.canceled")], "stored once")
}

// An id no record can have is not found, on every route that takes one,
// without reaching NATS: an id of some 4 KiB made a subject longer than the
// server's control line, and the server closed intake's connection for
// good (every later request 503).
func TestOverlongIDsAreNotFound(t *testing.T) {
	t.Parallel()
	const admin = "admin-token-0123456789"
	b := setupWith(t, func(c *intake.Config) { c.AdminToken = admin })
	id := b.submit(t, keyAcme, `{"type":"echo"}`).body["id"].(string)
	long := strings.Repeat("a", 5000)
	for _, call := range []struct{ method, path, key, body string }{
		{http.MethodGet, "/v1/jobs/job_" + long, keyAcme, ""},
		{http.MethodGet, "/v1/jobs/job_" + long + "?wait=1s", keyAcme, ""},
		{http.MethodDelete, "/v1/jobs/job_" + long, keyAcme, ""},
		{http.MethodGet, "/v1/jobs/job_" + long + "/deliveries", keyAcme, ""},
		{http.MethodGet, "/v1/jobs/job_" + long + "/events", keyAcme, ""},
		{http.MethodGet, "/v1/endpoints/ep_" + long, keyAcme, ""},
		{http.MethodPatch, "/v1/endpoints/ep_" + long, keyAcme, `{"enabled":true}`},
		{http.MethodDelete, "/v1/endpoints/ep_" + long, keyAcme, ""},
		{http.MethodGet, "/v1/endpoints/ep_" + long + "/secret", keyAcme, ""},
		{http.MethodPost, "/v1/endpoints/ep_" + long + "/secret/rotate", keyAcme, ""},
		{http.MethodPost, "/v1/endpoints/ep_" + long + "/test", keyAcme, ""},
		{http.MethodPost, "/v1/endpoints/ep_" + long + "/recover", keyAcme, `{"since":"2026-01-01T00:00:00Z"}`},
		{http.MethodPost, "/v1/deliveries/msg_" + long + "/retry", keyAcme, ""},
		{http.MethodGet, "/v1/tasks/task_" + long, keyAcme, ""},
		{http.MethodGet, "/v1/admin/tenants/" + long, admin, ""},
		{http.MethodDelete, "/v1/admin/tenants/" + long, admin, ""},
		{http.MethodGet, "/v1/admin/tenants/" + long + "/keys", admin, ""},
		{http.MethodPost, "/v1/admin/tenants/" + long + "/keys", admin, ""},
		{http.MethodDelete, "/v1/admin/tenants/acme/keys/key_" + long, admin, ""},
	} {
		contentType := ""
		if call.body != "" {
			contentType = "application/json"
		}
		r := b.do(t, call.method, call.path, call.key, contentType, call.body)
		require.Equal(t, http.StatusNotFound, r.status, "%s %.40s…: %v", call.method, call.path, r.body)
	}
	r := b.do(t, http.MethodGet, "/v1/jobs/"+id, keyAcme, "", "")
	require.Equal(t, http.StatusOK, r.status, "intake still reaches NATS: %v", r.body)
}

// The deliveries of a job whose id is not one token of a key (an internal
// publisher's, with a dot or longer than 64) are listed: the notifier logs
// them under the id's hash (contract.KeyToken).
func TestDeliveriesOfAJobWithAnyID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	jobs, err := jobstore.Open(ctx, b.js, b.js)
	require.NoError(t, err)
	for _, id := range []string{"job_order.42", "job_" + strings.Repeat("x", 70), "job_plain"} {
		now := time.Now().UTC()
		_, err = jobs.Create(ctx, contract.JobRecord{
			Job:    contract.Job{ID: id, Type: "echo", Status: contract.StatusSucceeded, CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)},
			Tenant: "acme",
		})
		require.NoError(t, err)
		d := contract.Delivery{ID: "msg_1", Tenant: "acme", EventID: "evt_x", JobID: id, URL: "https://example.com"}
		b.putDeliveryRecord(t, d.LogKey(), contract.DeliveryRecord{ID: d.ID, EventID: d.EventID, EventType: "job.succeeded", JobID: id, URL: d.URL,
			Status: contract.DeliverySucceeded, CreatedAt: now, UpdatedAt: now})
		r := b.do(t, http.MethodGet, "/v1/jobs/"+id+"/deliveries", keyAcme, "", "")
		require.Equal(t, http.StatusOK, r.status, r.body)
		require.Len(t, r.body["data"], 1, "job %s", id)
	}
}

// A recover window that ends before it starts is refused, not run as a
// task that finds nothing.
func TestRecoverWindowIsChecked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(t, http.MethodPost, "/v1/endpoints", keyAcme, "application/json", `{"url":"https://example.com/hook"}`)
	require.Equal(t, http.StatusCreated, r.status, r.body)
	require.Equal(t, "no-store", r.header.Get("Cache-Control"), "the answer carries the endpoint's secret")
	path := "/v1/endpoints/" + r.body["id"].(string) + "/recover"
	r = b.do(t, http.MethodPost, path, keyAcme, "application/json", `{"since":"2026-01-02T00:00:00Z","until":"2026-01-01T00:00:00Z"}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.status, r.body)
	require.Contains(t, r.body["detail"], "until")
	r = b.do(t, http.MethodPost, path, keyAcme, "application/json", `{"since":"2026-01-01T00:00:00Z","until":"2026-01-02T00:00:00Z"}`)
	require.Equal(t, http.StatusAccepted, r.status, r.body)
}

// A write that changes nothing a client sees (here the processor's note of
// a batch's hand-off, after a failed attempt) neither ends a long-poll nor
// sends the event stream the same job again.
func TestWaitsIgnoreWritesThatShowNothingNew(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	jobs, err := jobstore.Open(ctx, b.js, b.js)
	require.NoError(t, err)
	create := func(id string) {
		now := time.Now().UTC()
		_, err := jobs.Create(ctx, contract.JobRecord{
			Job:    contract.Job{ID: id, Type: "echo", Status: contract.StatusQueued, Attempts: 1, Error: "boom", CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)},
			Tenant: "acme",
		})
		require.NoError(t, err)
	}
	note := func(id string) {
		_, err := jobs.Update(ctx, id, func(r *contract.JobRecord) error { r.HandedOff = true; return nil })
		require.NoError(t, err)
	}

	create("job_poll")
	time.AfterFunc(300*time.Millisecond, func() { note("job_poll") })
	start := time.Now()
	r := b.do(t, http.MethodGet, "/v1/jobs/job_poll?wait=2s", keyAcme, "", "")
	require.Equal(t, http.StatusOK, r.status)
	require.GreaterOrEqual(t, time.Since(start), 2*time.Second, "the long-poll ended with nothing new")

	create("job_stream")
	events := b.jobEventStream(t, "job_stream", "data: ")
	<-events
	note("job_stream")
	_, err = jobs.Update(ctx, "job_stream", func(r *contract.JobRecord) error { r.Status = contract.StatusRunning; r.Attempts = 2; return nil })
	require.NoError(t, err)
	select {
	case next := <-events:
		require.Contains(t, next, `"status":"running"`, "the unchanged job was sent again")
	case <-time.After(10 * time.Second):
		t.Fatal("the change was not sent")
	}
}

// A delivery whose record was kept without its body (too large for NATS
// with its attempts) is not retried with the body "null": 409.
func TestRetryOfADeliveryWithoutItsBody(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now().UTC()
	b.putDeliveryRecord(t, "acme.evt_x.msg_nobody", contract.DeliveryRecord{ID: "msg_nobody", EventID: "evt_x", EventType: "order.paid", URL: "https://example.com/hook",
		Status: contract.DeliveryFailed, CreatedAt: now, UpdatedAt: now})
	r := b.do(t, http.MethodPost, "/v1/deliveries/msg_nobody/retry", keyAcme, "", "")
	require.Equal(t, http.StatusConflict, r.status, r.body)
	require.Contains(t, r.body["detail"], "without its body")
}

// A tenant's long-polls and event streams open at once are bounded (each
// holds a watch on the server): one more answers 429 with Retry-After, and
// other tenants are not held back.
func TestWaitsPerTenantAreBounded(t *testing.T) {
	t.Parallel()
	b := setupWith(t, func(c *intake.Config) { c.MaxWaitsPerTenant = 2 })
	job := b.submit(t, keyAcme, `{"type":"echo"}`).body["id"].(string) // queued: no processor here
	b.jobEventStream(t, job, "event: ")
	b.jobEventStream(t, job, "event: ")
	require.Eventually(t, func() bool {
		r := b.do(t, http.MethodGet, "/v1/jobs/"+job+"?wait=1s", keyAcme, "", "")
		return r.status == http.StatusTooManyRequests && r.header.Get("Retry-After") != ""
	}, 5*time.Second, 20*time.Millisecond, "a third wait was let through")
	r := b.do(t, http.MethodGet, "/v1/jobs/"+job, keyAcme, "", "")
	require.Equal(t, http.StatusOK, r.status, "a read without ?wait= is not a wait")
	other := b.submit(t, keyOther, `{"type":"echo"}`).body["id"].(string)
	start := time.Now()
	r = b.do(t, http.MethodGet, "/v1/jobs/"+other+"?wait=300ms", keyOther, "", "")
	require.Equal(t, http.StatusOK, r.status)
	require.GreaterOrEqual(t, time.Since(start), 250*time.Millisecond, "another tenant's wait waits")
}

// A retry asked for twice before the first one's attempt is recorded (a
// double click) is one replay: one message, one webhook.
func TestRetryAskedTwiceIsOneReplay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now().UTC()
	b.putDeliveryRecord(t, "acme.evt_x.msg_twice", contract.DeliveryRecord{ID: "msg_twice", EventID: "evt_x", EventType: "order.paid", URL: "https://example.com/hook",
		Status: contract.DeliveryFailed, Body: json.RawMessage(`{"type":"order.paid"}`), CreatedAt: now, UpdatedAt: now,
		Attempts: []contract.Attempt{{At: now, StatusCode: 500}}})
	for range 2 {
		r := b.do(t, http.MethodPost, "/v1/deliveries/msg_twice/retry", keyAcme, "", "")
		require.Equal(t, http.StatusAccepted, r.status, r.body)
	}
	stream, err := b.js.Stream(t.Context(), contract.StreamDeliveries)
	require.NoError(t, err)
	info, err := stream.Info(t.Context(), jetstream.WithSubjectFilter(contract.DeliverySubject("acme", "cb")))
	require.NoError(t, err)
	require.EqualValues(t, 1, info.State.Msgs, "two replays queued")
}

// An event whose webhook would leave no room for its delivery in a NATS
// message answers 413 and is not stored: the notifier could only
// dead-letter it. Within the limit, it is taken.
func TestEventTooLargeForItsWebhookAnswers413(t *testing.T) {
	t.Parallel()
	b := setupWith(t, func(c *intake.Config) { c.MaxBodyBytes = 16 << 20 })
	for _, data := range []string{ // the test server takes 8 MiB
		strings.Repeat("x", 8<<20-1000),
		strings.Repeat("<", 2<<20), // 12 MiB in a webhook: encoding/json writes \u003c
	} {
		r := b.do(t, http.MethodPost, "/v1/events", keyAcme, "application/json", `{"type":"big.one","data":"`+data+`"}`)
		require.Equal(t, http.StatusRequestEntityTooLarge, r.status, r.body)
	}
	events, err := b.js.Stream(t.Context(), contract.StreamEvents)
	require.NoError(t, err)
	info, err := events.Info(t.Context())
	require.NoError(t, err)
	require.Zero(t, info.State.Msgs)
	r := b.do(t, http.MethodPost, "/v1/events", keyAcme, "application/json", `{"type":"big.one","data":"`+strings.Repeat("<", 1<<20)+`"}`)
	require.Equal(t, http.StatusAccepted, r.status, r.body)
}

// An event id used again within the de-duplication window is not stored
// again: the same event is answered as a replay, with the first one's time;
// another event (type or data) with the id answers 422 instead of a 202 for
// an event that would never be sent. Another tenant's id is its own.
func TestEventIDUsedAgain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	post := func(key, body string) reply {
		return b.do(t, http.MethodPost, "/v1/events", key, "application/json", body)
	}
	first := post(keyAcme, `{"id":"dup-1","type":"order.paid","data":{"v":1,"w":"é"}}`)
	require.Equal(t, http.StatusAccepted, first.status, first.body)
	require.Empty(t, first.header.Get("Idempotent-Replayed"))
	again := post(keyAcme, `{"id":"dup-1","type":"order.paid","data": { "w": "\u00e9", "v": 1.0 }}`)
	require.Equal(t, http.StatusAccepted, again.status, again.body)
	require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
	require.Equal(t, first.body["created_at"], again.body["created_at"])
	for _, other := range []string{
		`{"id":"dup-1","type":"order.shipped","data":{"v":1,"w":"é"}}`,
		`{"id":"dup-1","type":"order.paid","data":{"v":2,"w":"é"}}`,
	} {
		r := post(keyAcme, other)
		require.Equal(t, http.StatusUnprocessableEntity, r.status, r.body)
		require.Contains(t, r.body["detail"], "another event")
	}
	for _, id := range []string{"evt_x", "evt-x_succeeded", "evt-x_running_2"} { // hookstream's: job events are evt-<id>_<status>
		r := post(keyAcme, `{"id":"`+id+`","type":"order.paid","data":{}}`)
		require.Equal(t, http.StatusUnprocessableEntity, r.status, id)
	}
	for _, id := range []string{"evt-123", "evt-x_2"} { // the tenant's own
		r := post(keyAcme, `{"id":"`+id+`","type":"order.paid","data":{}}`)
		require.Equal(t, http.StatusAccepted, r.status, id)
	}
	r := post(keyOther, `{"id":"dup-1","type":"order.shipped","data":{"v":1}}`)
	require.Equal(t, http.StatusAccepted, r.status, r.body)
	require.Empty(t, r.header.Get("Idempotent-Replayed"))
	events, err := b.js.Stream(t.Context(), contract.StreamEvents)
	require.NoError(t, err)
	info, err := events.Info(t.Context())
	require.NoError(t, err)
	require.EqualValues(t, 4, info.State.Msgs, "one event per tenant and id")
}

// One key given to two tenants, or a key that is the admin token, is a bad
// configuration: the last tenant listed signed in with the first's key.
func TestConfigRefusesAKeyOfTwo(t *testing.T) {
	t.Parallel()
	const key, admin = "0123456789abcdef0123", "admin-token-0123456789"
	base := intake.Config{JobTypes: []string{"echo"}, Guard: ssrf.NewGuard(nil), Box: testBox(t)}
	twice := base
	twice.APIKeys = []intake.APIKey{{Tenant: "alpha", Key: key}, {Tenant: "beta", Key: key}}
	require.ErrorContains(t, twice.WithDefaults().Validate(), "the same key")
	asAdmin := base
	asAdmin.APIKeys, asAdmin.AdminToken = []intake.APIKey{{Tenant: "alpha", Key: admin}}, admin
	require.ErrorContains(t, asAdmin.WithDefaults().Validate(), "admin token")
	again := base
	again.APIKeys = []intake.APIKey{{Tenant: "alpha", Key: key}, {Tenant: "alpha", Key: key}}
	require.NoError(t, again.WithDefaults().Validate(), "the same tenant's key twice is harmless")
}

// putDeliveryRecord writes a delivery's record to the log bucket, as the
// notifier does, under key.
func (b *bundle) putDeliveryRecord(t *testing.T, key string, rec contract.DeliveryRecord) {
	t.Helper()
	logs, err := b.js.KeyValue(t.Context(), contract.BucketDeliveries)
	require.NoError(t, err)
	data, err := json.Marshal(rec)
	require.NoError(t, err)
	_, err = logs.Put(t.Context(), key, data)
	require.NoError(t, err)
}
