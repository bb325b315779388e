// Package integration runs end-to-end tests over the whole all-in-one app:
// embedded JetStream on disk, intake over real HTTP, processors, notifier
// and httptest receivers that verify every webhook with the Standard
// Webhooks reference library.
package integration

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/allinone"
	"github.com/hookstream/hookstream/services/intake"
	"github.com/hookstream/hookstream/services/notifier"
	"github.com/hookstream/hookstream/services/processor"
	"github.com/hookstream/hookstream/shared/ssrf"
)

const (
	keyAcme  = "acme-key-0123456789abcdef"
	keyOther = "other-key-0123456789abcdef"
)

// harness is one all-in-one app on a data dir that survives restarts.
type harness struct {
	t      *testing.T
	cfg    allinone.Config
	url    string
	app    *allinone.App
	cancel context.CancelFunc
	done   chan error
}

type option func(*allinone.Config)

func withSchedule(inProcessMax time.Duration, waits ...time.Duration) option {
	return func(c *allinone.Config) {
		c.Notifier.Schedule = waits
		c.Notifier.InProcessMax = inProcessMax
	}
}

func withNotifier(change func(*notifier.Config)) option {
	return func(c *allinone.Config) { change(&c.Notifier) }
}

func withNATSListen() option {
	return func(c *allinone.Config) { c.NATSListen = "127.0.0.1:0" }
}

// withoutProcessor runs the app as `hookstream serve` with
// HOOKSTREAM_PROCESSOR_CONCURRENCY=0.
func withoutProcessor() option {
	return func(c *allinone.Config) { c.NoProcessor = true }
}

func withAdminToken(token string) option {
	return func(c *allinone.Config) { c.Intake.AdminToken = token }
}

func withHandler(jobType string, h processor.Handler) option {
	return func(c *allinone.Config) {
		c.Processor.Handlers[jobType] = h
		c.Intake.JobTypes = append(c.Intake.JobTypes, jobType)
	}
}

func start(t *testing.T, opts ...option) *harness {
	t.Helper()
	guard := ssrf.NewGuard([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	cfg := allinone.Config{
		DataDir:    t.TempDir(),
		SyncAlways: true,
		Intake: intake.Config{
			Addr:     "127.0.0.1:0",
			APIKeys:  []intake.APIKey{{Tenant: "acme", Key: keyAcme}, {Tenant: "other", Key: keyOther}},
			JobTypes: []string{"echo"},
			Guard:    guard,
			// As `hookstream serve` runs by default: every write synced,
			// in group commits, and jobs in job batches.
			GroupCommit: true,
			JobBatches:  true,
		},
		Processor: processor.Config{
			Handlers: map[string]processor.Handler{"echo": processor.Echo}, RetryDelay: func(int) time.Duration { return 100 * time.Millisecond },
			GroupCommit: true,
		},
		Notifier: notifier.Config{Guard: guard, Schedule: []time.Duration{time.Second, time.Second}, InProcessMax: time.Nanosecond, GroupCommit: true},
	}
	for _, o := range opts {
		o(&cfg)
	}
	h := &harness{t: t, cfg: cfg}
	h.boot()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) boot() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	app := allinone.New(h.cfg, slog.New(slog.NewTextHandler(testWriter{h.t}, &slog.HandlerOptions{Level: slog.LevelInfo})))
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- app.Run(ctx) }()
	select {
	case <-app.Ready():
	case err := <-h.done:
		h.t.Fatalf("app did not start: %v", err)
	case <-time.After(30 * time.Second):
		h.t.Fatal("app not ready after 30s")
	}
	h.url = "http://" + app.HTTPAddr()
	h.app = app
}

// stop shuts the app down gracefully and waits; it may be called twice.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		require.NoError(h.t, err)
	case <-time.After(30 * time.Second):
		h.t.Fatal("app did not stop within 30s")
	}
}

func (h *harness) restart() {
	h.t.Helper()
	h.stop()
	h.boot()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// call makes an API request and decodes the JSON answer.
func (h *harness) call(method, path, key, body string, headers ...string) (int, http.Header, map[string]any) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, strings.NewReader(body))
	require.NoError(h.t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(h.t, err)
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	if len(data) > 0 {
		require.NoError(h.t, json.Unmarshal(data, &out), string(data))
	}
	return resp.StatusCode, resp.Header, out
}

// submit posts a job and returns its id.
func (h *harness) submit(key, body string, headers ...string) string {
	h.t.Helper()
	status, _, out := h.call(http.MethodPost, "/v1/jobs", key, body, headers...)
	require.Equal(h.t, http.StatusAccepted, status, out)
	return out["id"].(string)
}

func (h *harness) secret(key string) string {
	h.t.Helper()
	status, _, out := h.call(http.MethodGet, "/v1/signing-secret", key, "")
	require.Equal(h.t, http.StatusOK, status)
	return out["secret"].(string)
}

// received is one webhook a receiver got.
type received struct {
	at     time.Time
	header http.Header
	body   []byte
	event  struct {
		Type      string          `json:"type"`
		Timestamp time.Time       `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}
}

func (r received) id() string { return r.header.Get("webhook-id") }

// receiver is an httptest server that records webhooks and answers with the
// statuses it is given in turn (200 once they run out).
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	got      []received
	statuses []int
	arrived  chan struct{}
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	r := &receiver{statuses: statuses, arrived: make(chan struct{}, 1000)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		rec := received{at: time.Now(), header: req.Header.Clone(), body: body}
		_ = json.Unmarshal(body, &rec.event)
		r.mu.Lock()
		r.got = append(r.got, rec)
		status := http.StatusOK
		if len(r.statuses) > 0 {
			status, r.statuses = r.statuses[0], r.statuses[1:]
		}
		r.mu.Unlock()
		w.WriteHeader(status)
		r.arrived <- struct{}{}
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) setStatuses(statuses ...int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.statuses = statuses
}

// failNoMoreThan lets the requests to come fail only until n have failed
// in all, counting every request so far as failed; then all succeed.
func (r *receiver) failNoMoreThan(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.statuses = r.statuses[:min(len(r.statuses), max(0, n-len(r.got)))]
}

func (r *receiver) all() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

// wait blocks until the receiver has n webhooks in all.
func (r *receiver) wait(t *testing.T, n int, timeout time.Duration) []received {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if got := r.all(); len(got) >= n {
			return got
		}
		select {
		case <-r.arrived:
		case <-deadline:
			t.Fatalf("receiver got %d webhooks, want %d within %s", len(r.all()), n, timeout)
		}
	}
}

// verify checks a webhook with the Standard Webhooks reference library.
func verify(t *testing.T, secret string, r received) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)
	require.NoError(t, wh.Verify(r.body, r.header), "webhook must verify with the reference library")
}

// waitStatus long-polls a job until it reaches status.
func (h *harness) waitStatus(key, id, status string) map[string]any {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		code, _, out := h.call(http.MethodGet, "/v1/jobs/"+id+"?wait=5s", key, "")
		require.Equal(h.t, http.StatusOK, code, out)
		if out["status"] == status {
			return out
		}
	}
	h.t.Fatalf("job %s never reached %s", id, status)
	return nil
}

var errPermanent = errors.New("this input can never work")
