package notifier_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/notifier"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/deliverylog"
	"github.com/hookstream/hookstream/shared/jobevents"
	"github.com/hookstream/hookstream/shared/ssrf"
	"github.com/hookstream/hookstream/shared/webhook"
)

// A job of a deleted tenant does not call back: its signing secret was
// removed with it, and a new one would sign what no receiver can verify.
// The delivery is dead-lettered with the reason, and no secret is made.
func TestCallbackOfADeletedTenantIsNotSent(t *testing.T) {
	t.Parallel()
	b := setup(t, notifier.Config{})
	rcv := newReceiver(t, nil)
	ctx := context.Background()
	tenants, err := b.js.KeyValue(ctx, contract.BucketTenants)
	require.NoError(t, err)
	_, err = tenants.Put(ctx, contract.TenantDeletedKey("gone"), []byte(`{"deleted_at":"2026-12-01T12:00:00Z"}`))
	require.NoError(t, err)

	b.publishJobEvent(t, "gone", "job_x", rcv.URL)
	rec := b.waitLog(t, "gone", "job_x", contract.DeliveryFailed)
	require.Len(t, rec.Attempts, 1)
	require.Equal(t, "tenant gone was deleted", rec.Attempts[0].Error)
	require.Empty(t, rcv.all())
	_, err = tenants.Get(ctx, "gone.signing")
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound, "no signing secret made for it")
}

// A job event reaches the job's callback URL as a Standard Webhooks request
// signed with the tenant's secret, and its attempt is logged.
func TestDeliverSignedWebhook(t *testing.T) {
	t.Parallel()
	b := setup(t, notifier.Config{})
	rcv := newReceiver(t, nil)
	secret := b.secret(t, "acme")

	job := b.publishJobEvent(t, "acme", "job_x", rcv.URL+"/hooks")
	got := rcv.wait(t, 1)[0]
	require.NoError(t, webhook.Verify(secret, got.header, got.body, time.Now(), webhook.DefaultTolerance))
	require.True(t, strings.HasPrefix(got.id(), "msg_"), got.id())
	require.Equal(t, "application/json", got.header.Get("Content-Type"))
	require.Equal(t, "hookstream/"+notifier.Version, got.header.Get("User-Agent"))
	require.Equal(t, contract.EventJobSucceeded, got.event.Type)
	require.True(t, job.UpdatedAt.Equal(got.event.Timestamp), "the event time is when the job changed")
	wantData, err := json.Marshal(job.Job)
	require.NoError(t, err)
	require.JSONEq(t, string(wantData), string(got.event.Data), "data is the job resource")

	rec := b.waitLog(t, "acme", "job_x", contract.DeliverySucceeded)
	require.Equal(t, got.id(), rec.ID)
	require.Equal(t, jobevents.EventID("job_x", contract.StatusSucceeded), rec.EventID)
	require.Equal(t, contract.EventJobSucceeded, rec.EventType)
	require.Equal(t, "job_x", rec.JobID)
	require.Equal(t, rcv.URL+"/hooks", rec.URL)
	require.JSONEq(t, string(got.body), string(rec.Body))
	require.Nil(t, rec.NextAttemptAt)
	require.Len(t, rec.Attempts, 1)
	require.Equal(t, http.StatusOK, rec.Attempts[0].StatusCode)
	require.Empty(t, rec.Attempts[0].Error)
	b.waitIdle(t)
}

// A webhook is signed with the secret of its own tenant only.
func TestDeliverSignsWithTenantSecret(t *testing.T) {
	t.Parallel()
	b := setup(t, notifier.Config{})
	rcv := newReceiver(t, nil)
	acme, other := b.secret(t, "acme"), b.secret(t, "other")
	require.NotEqual(t, acme, other)

	b.publishJobEvent(t, "other", "job_other", rcv.URL)
	got := rcv.wait(t, 1)[0]
	require.NoError(t, webhook.Verify(other, got.header, got.body, time.Now(), webhook.DefaultTolerance))
	require.ErrorIs(t, webhook.Verify(acme, got.header, got.body, time.Now(), webhook.DefaultTolerance), webhook.ErrNoMatchingSigner)
}

// During a rotation's grace period a webhook carries a signature for the
// new secret and one for the old, so receivers of either verify it.
func TestDeliverSignsWithRotatedSecrets(t *testing.T) {
	t.Parallel()
	b := setup(t, notifier.Config{})
	rcv := newReceiver(t, nil)
	old := b.secret(t, "acme")
	ring, err := b.signing(t).Rotate(t.Context(), "acme", time.Hour, "")
	require.NoError(t, err)
	current := ring.Current().Secret
	require.NotEqual(t, old, current)

	b.publishJobEvent(t, "acme", "job_x", rcv.URL)
	got := rcv.wait(t, 1)[0]
	require.Len(t, strings.Fields(got.header.Get("webhook-signature")), 2)
	for _, secret := range []string{old, current} {
		require.NoError(t, webhook.Verify(secret, got.header, got.body, time.Now(), webhook.DefaultTolerance))
	}
}

// What becomes of a delivery, by the receiver's answers, in both retry
// tiers.
func TestDeliverOutcome(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		givenTier    time.Duration // InProcessMax
		givenAnswers []int
		wantStatus   string
		wantCodes    []int
		wantError    string // in the last attempt
	}{
		{name: "2xx other than 200 is success", givenTier: inProcess, givenAnswers: []int{204}, wantStatus: contract.DeliverySucceeded, wantCodes: []int{204}},
		{name: "410 Gone is not retried", givenTier: inProcess, givenAnswers: []int{410}, wantStatus: contract.DeliveryFailed, wantCodes: []int{410}, wantError: "410"},
		{name: "410 Gone is not scheduled", givenTier: durable, givenAnswers: []int{410}, wantStatus: contract.DeliveryFailed, wantCodes: []int{410}, wantError: "410"},
		{name: "failures retried in process", givenTier: inProcess, givenAnswers: []int{500, 400}, wantStatus: contract.DeliverySucceeded, wantCodes: []int{500, 400, 200}},
		{name: "failures retried durably", givenTier: durable, givenAnswers: []int{503}, wantStatus: contract.DeliverySucceeded, wantCodes: []int{503, 200}},
		{name: "schedule used up in process", givenTier: inProcess, givenAnswers: []int{500, 502, 504}, wantStatus: contract.DeliveryFailed, wantCodes: []int{500, 502, 504}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, notifier.Config{InProcessMax: tt.givenTier})
			rcv := newReceiver(t, statuses(tt.givenAnswers...))
			secret := b.secret(t, "acme")
			b.publishJobEvent(t, "acme", "job_x", rcv.URL)

			rec := b.waitLog(t, "acme", "job_x", tt.wantStatus)
			require.Equal(t, tt.wantCodes, attemptCodes(rec))
			require.Contains(t, rec.Attempts[len(rec.Attempts)-1].Error, tt.wantError)
			require.Nil(t, rec.NextAttemptAt)
			require.NotEmpty(t, rec.Body, "the body is kept to send it again")
			b.waitIdle(t)

			got := rcv.all()
			require.Len(t, got, len(tt.wantCodes), "nothing more is sent")
			for _, r := range got {
				require.NoError(t, webhook.Verify(secret, r.header, r.body, time.Now(), webhook.DefaultTolerance))
				require.Equal(t, rec.ID, r.id(), "the same webhook-id on every attempt")
				require.Equal(t, string(got[0].body), string(r.body), "the same body on every attempt")
			}
		})
	}
}

// A retry scheduled in JetStream is logged as pending with its due time,
// and later sent with the same webhook-id.
func TestDeliverDurableRetryIsLoggedPending(t *testing.T) {
	t.Parallel()
	b := setup(t, notifier.Config{InProcessMax: durable, Schedule: []time.Duration{time.Second}, Jitter: 0.01})
	rcv := newReceiver(t, statuses(500))
	updates := b.watchLog(t, "acme", "job_x")
	b.publishJobEvent(t, "acme", "job_x", rcv.URL)

	pending := nextLog(t, updates, contract.DeliveryPending)
	require.Equal(t, []int{500}, attemptCodes(pending))
	require.NotNil(t, pending.NextAttemptAt)
	requireDueAbout(t, pending, time.Second)

	done := nextLog(t, updates, contract.DeliverySucceeded)
	require.Equal(t, []int{500, 200}, attemptCodes(done))
	require.Equal(t, pending.Attempts[0], done.Attempts[0], "earlier attempts are kept")
	got := rcv.wait(t, 2)
	require.Equal(t, got[0].id(), got[1].id())
	require.False(t, got[1].at.Before(*pending.NextAttemptAt), "the retry did not run before it was due")
	b.waitIdle(t)
}

// A 429 or 503 with Retry-After pushes the next attempt back, in both
// tiers.
func TestDeliverHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		givenStatus int
		givenTier   time.Duration
	}{
		{name: "429 in process", givenStatus: http.StatusTooManyRequests, givenTier: inProcess},
		{name: "429 durable", givenStatus: http.StatusTooManyRequests, givenTier: durable},
		{name: "503 in process", givenStatus: http.StatusServiceUnavailable, givenTier: inProcess},
		{name: "503 durable", givenStatus: http.StatusServiceUnavailable, givenTier: durable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, notifier.Config{InProcessMax: tt.givenTier})
			rcv := newReceiver(t, func(n int, w http.ResponseWriter) {
				if n == 1 {
					w.Header().Set("Retry-After", "1")
					w.WriteHeader(tt.givenStatus)
				}
			})
			b.publishJobEvent(t, "acme", "job_x", rcv.URL)
			got := rcv.wait(t, 2)
			require.GreaterOrEqual(t, got[1].at.Sub(got[0].at), 990*time.Millisecond,
				"the retry waited for Retry-After, not the 10 ms schedule")
			rec := b.waitLog(t, "acme", "job_x", contract.DeliverySucceeded)
			require.Equal(t, []int{tt.givenStatus, 200}, attemptCodes(rec))
		})
	}
}

// A Retry-After beyond MaxRetryAfter is cut down to it.
func TestDeliverCapsRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t, notifier.Config{InProcessMax: durable, MaxRetryAfter: time.Second})
	rcv := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n == 1 {
			w.Header().Set("Retry-After", "86400")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	updates := b.watchLog(t, "acme", "job_x")
	b.publishJobEvent(t, "acme", "job_x", rcv.URL)
	pending := nextLog(t, updates, contract.DeliveryPending)
	require.NotNil(t, pending.NextAttemptAt)
	requireDueAbout(t, pending, time.Second)
	require.Equal(t, []int{429, 200}, attemptCodes(nextLog(t, updates, contract.DeliverySucceeded)))
}

// Redirects are not followed: the attempt records the 3xx as a failure and
// the redirect target is never called.
func TestDeliverDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	for _, code := range []int{http.StatusFound, http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			t.Parallel()
			b := setup(t, notifier.Config{Schedule: []time.Duration{10 * time.Millisecond}})
			target := newReceiver(t, nil)
			rcv := newReceiver(t, func(_ int, w http.ResponseWriter) {
				w.Header().Set("Location", target.URL+"/elsewhere")
				w.WriteHeader(code)
			})
			b.publishJobEvent(t, "acme", "job_x", rcv.URL)

			rec := b.waitLog(t, "acme", "job_x", contract.DeliveryFailed)
			require.Equal(t, []int{code, code}, attemptCodes(rec))
			for _, a := range rec.Attempts {
				require.Contains(t, a.Error, "redirect not followed")
			}
			b.waitIdle(t)
			require.Len(t, rcv.all(), 2)
			require.Empty(t, target.all(), "the redirect target is never called")
		})
	}
}

// The SSRF guard refuses the resolved address at dial time: nothing is
// sent, and the attempt says why. (An endpoint whose URL the bucket holds
// as it is, unchecked: a job's callback URL is checked before the dial,
// TestCallbackURLRefusedByTheGuardIsDeadLettered.)
func TestDeliverSSRFGuard(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		givenURL func(rcvURL string) string
	}{
		{name: "IP literal", givenURL: func(u string) string { return u }},
		{name: "name resolving to loopback", givenURL: func(u string) string { return strings.Replace(u, "127.0.0.1", "localhost", 1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rcv := newReceiver(t, nil)
			b := setup(t, notifier.Config{Guard: ssrf.NewGuard(nil), Schedule: []time.Duration{}},
				newEndpoint(t, "acme", "ep_x", tt.givenURL(rcv.URL), "order.paid"))
			b.publishEvent(t, "acme", "order.paid", "acme:evt_x", []byte(`{}`))

			rec := b.waitLog(t, "acme", "evt_x", contract.DeliveryFailed)
			require.Len(t, rec.Attempts, 1)
			require.Zero(t, rec.Attempts[0].StatusCode)
			require.Contains(t, rec.Attempts[0].Error, "blocked by the SSRF guard")
			require.Contains(t, rec.Attempts[0].Error, "not public")
			b.waitIdle(t)
			require.Empty(t, rcv.all(), "the receiver is never called")
		})
	}
}

// An allow list opens a chosen private range.
func TestDeliverSSRFAllowList(t *testing.T) {
	t.Parallel()
	b := setup(t, notifier.Config{Guard: ssrf.NewGuard([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})})
	rcv := newReceiver(t, nil)
	b.publishJobEvent(t, "acme", "job_x", rcv.URL)
	rcv.wait(t, 1)
	b.waitLog(t, "acme", "job_x", contract.DeliverySucceeded)
}

// An attempt is bounded by AttemptTimeout; a timeout is a failure that
// says so.
func TestDeliverAttemptTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, notifier.Config{AttemptTimeout: time.Second, Schedule: []time.Duration{}})
	hang := make(chan struct{})
	rcv := newReceiver(t, func(int, http.ResponseWriter) { <-hang })
	t.Cleanup(func() { close(hang) }) // before the receiver closes
	b.publishJobEvent(t, "acme", "job_x", rcv.URL)

	rec := b.waitLog(t, "acme", "job_x", contract.DeliveryFailed)
	require.Len(t, rec.Attempts, 1)
	require.Zero(t, rec.Attempts[0].StatusCode)
	require.Contains(t, rec.Attempts[0].Error, "timeout")
}

// Only the first bytes of a large answer are kept in the log.
func TestDeliverLogsFirstBytesOfResponse(t *testing.T) {
	t.Parallel()
	b := setup(t, notifier.Config{})
	rcv := newReceiver(t, func(_ int, w http.ResponseWriter) {
		_, _ = w.Write([]byte(strings.Repeat("x", 1<<20)))
	})
	b.publishJobEvent(t, "acme", "job_x", rcv.URL)
	rec := b.waitLog(t, "acme", "job_x", contract.DeliverySucceeded)
	require.Len(t, rec.Attempts[0].Response, 4<<10)
}

// The attempt that opens an endpoint's circuit leaves its delivery scheduled
// for retry, like any other failed attempt: an open circuit holds deliveries
// back, it never dead-letters them early.
func TestCircuitOpeningAttemptIsRetried(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, statuses(http.StatusInternalServerError))
	ep := newEndpoint(t, "acme", "ep_down", rcv.URL, "x.*")
	b := setup(t, notifier.Config{BreakerFailures: 1, Schedule: []time.Duration{time.Hour}, InProcessMax: time.Nanosecond}, ep)
	b.publishEvent(t, "acme", "x.y", "evt_down", []byte(`{}`))
	rec := b.waitLog(t, "acme", "evt_down", contract.DeliveryPending)
	require.Len(t, rec.Attempts, 1)
	require.NotNil(t, rec.NextAttemptAt)
}

// A busy receiver's connections are kept and reused: the notifier does not
// dial again for requests beyond the first ones in flight at once.
func TestDeliverReusesConnections(t *testing.T) {
	t.Parallel()
	const inFlight, webhooks = 32, 600
	b := setup(t, notifier.Config{EndpointConcurrency: inFlight})
	var dials atomic.Int64
	received := make(chan struct{}, webhooks)
	rcv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * time.Millisecond)
		received <- struct{}{}
	}))
	rcv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			dials.Add(1)
		}
	}
	rcv.Start()
	t.Cleanup(rcv.Close)

	for i := range webhooks {
		b.publishJobEvent(t, "acme", fmt.Sprintf("job_%d", i), rcv.URL)
	}
	for range webhooks {
		select {
		case <-received:
		case <-time.After(30 * time.Second):
			t.Fatal("webhooks not received within 30s")
		}
	}
	// One connection per request in flight to the host, at most inFlight;
	// the transport may dial a spare for a request that then takes a
	// connection freed meanwhile. With 16 kept per host, this dialled 80-138.
	require.LessOrEqual(t, dials.Load(), int64(2*inFlight), "connections dialled")
	t.Logf("%d webhooks over %d connections", webhooks, dials.Load())
}

// A retry whose delivery was overtaken before it fired is dropped: here an
// event id published again (after the events' duplicate window, shortened
// to 0.5 s) whose new delivery succeeded at once. The old event's retry
// sent its old body again and wrote over the record. The same holds for a
// delivery message redelivered after a crash and delivered meanwhile.
func TestOvertakenRetryIsDropped(t *testing.T) {
	t.Parallel()
	js := startJetStream(t)
	s, err := js.Stream(t.Context(), contract.StreamEvents)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	cfg.Duplicates = 500 * time.Millisecond
	_, err = js.UpdateStream(t.Context(), cfg)
	require.NoError(t, err)
	rcv := newReceiver(t, statuses(500))
	b := setupOn(t, js, notifier.Config{InProcessMax: durable, Schedule: []time.Duration{3 * time.Second}, Jitter: 0.01},
		newEndpoint(t, "acme", "ep_1", rcv.URL, "order.paid"))
	b.publishEvent(t, "acme", "order.paid", "acme:evt_1", []byte(`{"v":"old"}`))
	rcv.wait(t, 1)
	time.Sleep(time.Second)
	b.publishEvent(t, "acme", "order.paid", "acme:evt_1", []byte(`{"v":"new"}`))
	rcv.wait(t, 2)
	time.Sleep(4 * time.Second) // the old retry was due after 3 s
	require.Len(t, rcv.all(), 2, "the old event's retry was sent")
	recs := b.logs(t, "acme.>")
	require.Len(t, recs, 1)
	require.Equal(t, contract.DeliverySucceeded, recs[0].Status)
	require.Contains(t, string(recs[0].Body), "new")
}

// A failed replay of a delivery that waits for a scheduled retry (POST
// /v1/deliveries/{id}/retry, allowed once that retry is a minute late)
// leaves the retry to come.
func TestFailedReplayLeavesTheScheduleGoing(t *testing.T) {
	t.Parallel()
	js := startJetStream(t)
	rcv := newReceiver(t, func(_ int, w http.ResponseWriter) { w.WriteHeader(http.StatusInternalServerError) })
	b := setupOn(t, js, notifier.Config{InProcessMax: durable, Schedule: []time.Duration{3 * time.Second, time.Hour}, Jitter: 0.01},
		newEndpoint(t, "acme", "ep_1", rcv.URL, "order.paid"))
	b.publishEvent(t, "acme", "order.paid", "acme:evt_1", []byte(`{"v":1}`))
	rec := b.waitLog(t, "acme", "evt_1", contract.DeliveryPending)
	require.NoError(t, deliverylog.Replay(t.Context(), js, "acme", rec, rec.ID+".replay.1"))
	rcv.wait(t, 3) // the first attempt, the replay's, the scheduled retry's
}

// requireDueAbout checks that rec's next attempt is due about want after
// its first attempt started: no earlier than want less the default jitter
// (20 %), and less than 4 s later than want, which leaves room for the
// attempt itself on a slow machine yet tells 1 s from a minute.
func requireDueAbout(t *testing.T, rec contract.DeliveryRecord, want time.Duration) {
	t.Helper()
	require.NotNil(t, rec.NextAttemptAt)
	wait := rec.NextAttemptAt.Sub(rec.Attempts[0].At)
	require.True(t, wait >= want*8/10 && wait < want+4*time.Second, "next attempt due %s after the first, want about %s", wait, want)
}

// A job callback URL that intake would refuse (an internal publisher's:
// not a URL, another scheme, a metadata address) is dead-lettered at its
// first attempt with the reason, not tried for the whole retry schedule.
func TestCallbackURLRefusedByTheGuardIsDeadLettered(t *testing.T) {
	t.Parallel()
	ops := newReceiver(t, nil)
	b := setup(t, notifier.Config{Schedule: []time.Duration{time.Hour}}, newEndpoint(t, "acme", "ep_ops", ops.URL, "delivery.*"))
	for i, url := range []string{"::not a url", "ftp://example.com/x", "http://169.254.169.254/latest"} {
		job := "job_badurl" + strconv.Itoa(i)
		b.publishJobEvent(t, "acme", job, url)
		rec := b.waitLog(t, "acme", job, contract.DeliveryFailed)
		require.Len(t, rec.Attempts, 1)
		require.Contains(t, rec.Attempts[0].Error, "callback URL refused")
		// Announced as any dead letter is (it was silent: from the NATS
		// contract review).
		got := ops.wait(t, i+1)[i]
		require.Equal(t, notifier.EventDeliveryExhausted, got.event.Type)
		require.Contains(t, string(got.event.Data), job)
		require.Contains(t, string(got.event.Data), "callback URL refused")
	}
}

// An attempt's latency is what the receiver took: it was always 0 (a
// deferred write to a result already copied).
func TestAttemptRecordsItsLatency(t *testing.T) {
	t.Parallel()
	b := setup(t, notifier.Config{})
	rcv := newReceiver(t, func(_ int, w http.ResponseWriter) {
		time.Sleep(60 * time.Millisecond)
		w.WriteHeader(http.StatusOK)
	})
	b.publishJobEvent(t, "acme", "job_slow", rcv.URL)
	rec := b.waitLog(t, "acme", "job_slow", contract.DeliverySucceeded)
	require.Len(t, rec.Attempts, 1)
	require.GreaterOrEqual(t, rec.Attempts[0].LatencyMS, int64(60))
}
