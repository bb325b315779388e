package notifier_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/notifier"
	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/endpoints"
	"github.com/hookstream/hookstream/shared/jobevents"
	"github.com/hookstream/hookstream/shared/natstest"
	"github.com/hookstream/hookstream/shared/secretbox"
	"github.com/hookstream/hookstream/shared/signing"
	"github.com/hookstream/hookstream/shared/ssrf"
)

// Retry tiers used by the tests: InProcessMax values that make every retry
// wait in process or every retry a durable JetStream schedule.
const (
	inProcess = 5 * time.Second
	durable   = time.Nanosecond
)

// bundle is a running notifier on its own JetStream server.
type bundle struct {
	n         *notifier.Notifier
	js        jetstream.JetStream
	log       jetstream.KeyValue
	box       *secretbox.Box
	endpoints *endpoints.Store
}

// loopback lets the notifier call httptest receivers.
var loopback = ssrf.NewGuard([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")})

// setup stores the given endpoints, starts a notifier with cfg and stops it,
// waiting for Run to return, when the test ends. Unset fields get test
// values: the loopback guard, a new secret box, a schedule of two 10 ms
// waits retried in process, 1 s of shutdown grace.
func setup(t *testing.T, cfg notifier.Config, eps ...endpoints.Endpoint) *bundle {
	t.Helper()
	return setupOn(t, startJetStream(t), cfg, eps...)
}

// startJetStream starts a NATS server with hookstream's streams.
func startJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, js := natstest.Start(t).Connect(t)
	require.NoError(t, bus.Ensure(context.Background(), js, bus.Topology{}))
	return js
}

// setupOn is setup on a JetStream of startJetStream.
func setupOn(t *testing.T, js jetstream.JetStream, cfg notifier.Config, eps ...endpoints.Endpoint) *bundle {
	t.Helper()
	ctx := context.Background()
	if cfg.Guard == nil {
		cfg.Guard = loopback
	}
	if cfg.SlowDownWait == 0 {
		cfg.SlowDownWait = time.Nanosecond // the 60 s rule has its own test
	}
	if cfg.Box == nil {
		key := make([]byte, secretbox.KeySize)
		_, _ = rand.Read(key)
		box, err := secretbox.New(key)
		require.NoError(t, err)
		cfg.Box = box
	}
	if cfg.Schedule == nil {
		cfg.Schedule = []time.Duration{10 * time.Millisecond, 10 * time.Millisecond}
	}
	if cfg.InProcessMax == 0 {
		cfg.InProcessMax = inProcess
	}
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = time.Second
	}
	if cfg.TrimInterval == 0 {
		cfg.TrimInterval = 100 * time.Millisecond // waitIdle waits for an empty stream
	}
	store, err := endpoints.Open(ctx, js, cfg.Box)
	require.NoError(t, err)
	for _, ep := range eps {
		require.NoError(t, store.Create(ctx, ep))
	}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n, err := notifier.New(ctx, cfg, js, logger)
	require.NoError(t, err)
	log, err := js.KeyValue(ctx, contract.BucketDeliveries)
	require.NoError(t, err)

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- n.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("notifier did not stop within 10s")
		}
	})
	return &bundle{n: n, js: js, log: log, box: cfg.Box, endpoints: store}
}

// newEndpoint returns an enabled endpoint of tenant with a new keyring.
func newEndpoint(t *testing.T, tenant, id, url string, eventTypes ...string) endpoints.Endpoint {
	t.Helper()
	now := time.Now().UTC()
	ring, err := signing.NewKeyring(now)
	require.NoError(t, err)
	return endpoints.Endpoint{
		ID: id, Tenant: tenant, URL: url, EventTypes: eventTypes, Enabled: true,
		Keyring: ring, CreatedAt: now, UpdatedAt: now,
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// signing opens the tenants' signing secrets as the notifier reads them.
func (b *bundle) signing(t *testing.T) *signing.Store {
	t.Helper()
	store, err := signing.Open(context.Background(), b.js, b.box)
	require.NoError(t, err)
	return store
}

// secret returns the tenant's current signing secret.
func (b *bundle) secret(t *testing.T, tenant string) string {
	t.Helper()
	ring, err := b.signing(t).Get(context.Background(), tenant)
	require.NoError(t, err)
	return ring.Current().Secret
}

// publishJobEvent publishes the job.succeeded event of a job that has a
// callback URL, the way a processor does.
func (b *bundle) publishJobEvent(t *testing.T, tenant, jobID, callbackURL string) contract.JobRecord {
	t.Helper()
	now := time.Now().UTC()
	rec := contract.JobRecord{
		Job: contract.Job{
			ID: jobID, Type: "echo", Status: contract.StatusSucceeded, Attempts: 1,
			Result: json.RawMessage(`{"hello":"world"}`), CreatedAt: now, UpdatedAt: now, CompletedAt: &now,
			ExpiresAt: now.Add(7 * 24 * time.Hour),
		},
		Tenant: tenant, CallbackURL: callbackURL,
	}
	require.NoError(t, jobevents.Publish(context.Background(), b.js, rec, 0))
	return rec
}

// publishEvent publishes an event the way an internal service does, with
// extra headers.
func (b *bundle) publishEvent(t *testing.T, tenant, eventType, msgID string, data []byte, headers ...string) *jetstream.PubAck {
	t.Helper()
	msg := nats.NewMsg(contract.EventSubject(tenant, eventType))
	msg.Data = data
	if msgID != "" {
		msg.Header.Set(contract.HeaderMsgID, msgID)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		msg.Header.Set(headers[i], headers[i+1])
	}
	ack, err := b.js.PublishMsg(context.Background(), msg)
	require.NoError(t, err)
	return ack
}

// waitLog waits until the one delivery logged under <tenant>.*.<owner>.* has
// reached status, and returns its record.
func (b *bundle) waitLog(t *testing.T, tenant, owner, status string) contract.DeliveryRecord {
	t.Helper()
	var rec contract.DeliveryRecord
	require.Eventually(t, func() bool {
		recs := b.logs(t, tenant+".*."+owner+".*")
		if len(recs) == 0 {
			return false
		}
		require.Len(t, recs, 1, "one delivery per event and target")
		rec = recs[0]
		return rec.Status == status
	}, 10*time.Second, 10*time.Millisecond, "delivery of %s never reached %s (last: %+v)", owner, status, &rec)
	return rec
}

// logs returns the delivery records whose keys match filter.
func (b *bundle) logs(t *testing.T, filter string) []contract.DeliveryRecord {
	t.Helper()
	ctx := context.Background()
	lister, err := b.log.ListKeysFiltered(ctx, filter)
	require.NoError(t, err)
	var recs []contract.DeliveryRecord
	for key := range lister.Keys() {
		entry, err := b.log.Get(ctx, key)
		require.NoError(t, err)
		var rec contract.DeliveryRecord
		require.NoError(t, json.Unmarshal(entry.Value(), &rec))
		recs = append(recs, rec)
	}
	return recs
}

// watchLog returns every version of the delivery records under
// <tenant>.*.<owner>.* as they are written.
func (b *bundle) watchLog(t *testing.T, tenant, owner string) <-chan contract.DeliveryRecord {
	t.Helper()
	w, err := b.log.Watch(context.Background(), tenant+".*."+owner+".*", jetstream.UpdatesOnly())
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Stop() })
	out := make(chan contract.DeliveryRecord, 100)
	go func() {
		for entry := range w.Updates() {
			var rec contract.DeliveryRecord
			if entry != nil && json.Unmarshal(entry.Value(), &rec) == nil {
				out <- rec
			}
		}
	}()
	return out
}

// nextLog waits for the next record version with status.
func nextLog(t *testing.T, updates <-chan contract.DeliveryRecord, status string) contract.DeliveryRecord {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case rec := <-updates:
			if rec.Status == status {
				return rec
			}
		case <-deadline:
			t.Fatalf("no delivery record with status %s within 10s", status)
		}
	}
}

// waitIdle waits until fan-out and delivery have settled every message and
// no retry is scheduled: nothing more will be sent.
func (b *bundle) waitIdle(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		// Events stay for their ids' window once fanned out (bus.TrimTarget's
		// Keep): fan-out has none left to take or settle.
		if info := b.consumerInfo(t, contract.StreamEvents, notifier.FanoutConsumer); info.NumPending != 0 || info.NumAckPending != 0 {
			return false
		}
		for _, name := range []string{contract.StreamDeliveries, contract.StreamParked} {
			s, err := b.js.Stream(context.Background(), name)
			require.NoError(t, err)
			info, err := s.Info(context.Background())
			require.NoError(t, err)
			if info.State.Msgs != 0 {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "messages left in the streams")
}

func attemptCodes(rec contract.DeliveryRecord) []int {
	codes := make([]int, len(rec.Attempts))
	for i, a := range rec.Attempts {
		codes[i] = a.StatusCode
	}
	return codes
}

// received is one webhook a receiver got.
type received struct {
	at     time.Time
	header http.Header
	body   []byte
	event  contract.WebhookBody
}

func (r received) id() string { return r.header.Get("webhook-id") }

// receiver is an httptest server that records webhooks and answers each
// with answer (given the 1-based number of the request), 200 by default.
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     []received
	answer  func(n int, w http.ResponseWriter)
	arrived chan struct{}
}

func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter)) *receiver {
	t.Helper()
	r := &receiver{answer: answer, arrived: make(chan struct{}, 1000)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		rec := received{at: time.Now(), header: req.Header.Clone(), body: body}
		_ = json.Unmarshal(body, &rec.event)
		r.mu.Lock()
		r.got = append(r.got, rec)
		n := len(r.got)
		r.mu.Unlock()
		if r.answer != nil {
			r.answer(n, w)
		}
		r.arrived <- struct{}{}
	}))
	t.Cleanup(r.Close)
	return r
}

// statuses answers with the given statuses in turn, then 200.
func statuses(codes ...int) func(int, http.ResponseWriter) {
	return func(n int, w http.ResponseWriter) {
		if n <= len(codes) {
			w.WriteHeader(codes[n-1])
		}
	}
}

func (r *receiver) all() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

// wait blocks until the receiver has got n webhooks in all.
func (r *receiver) wait(t *testing.T, n int) []received {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if got := r.all(); len(got) >= n {
			return got
		}
		select {
		case <-r.arrived:
		case <-deadline:
			t.Fatalf("receiver got %d webhooks, want %d within 10s", len(r.all()), n)
		}
	}
}
