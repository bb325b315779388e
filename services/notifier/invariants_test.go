package notifier_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/notifier"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/deliverylog"
	"github.com/hookstream/hookstream/shared/secretbox"
	"github.com/hookstream/hookstream/shared/ssrf"
	"github.com/hookstream/hookstream/shared/webhook"
)

// A retry is durable (DESIGN.md invariant 4): after a failed round, the
// deliveries stream holds the delivery, with its attempts, as a NATS
// message schedule on its retry subject that puts it back on its delivery
// subject when due (rounded up to a whole second), not a timer in the
// notifier's memory.
func TestDurableRetryIsAMessageSchedule(t *testing.T) {
	t.Parallel()
	b := setup(t, notifier.Config{InProcessMax: durable, Schedule: []time.Duration{time.Hour}, Jitter: 0.01})
	rcv := newReceiver(t, statuses(http.StatusInternalServerError))
	b.publishJobEvent(t, "acme", "job_x", rcv.URL)
	rec := b.waitLog(t, "acme", "job_x", contract.DeliveryPending)
	require.NotNil(t, rec.NextAttemptAt)

	s, err := b.js.Stream(t.Context(), contract.StreamDeliveries)
	require.NoError(t, err)
	msg, err := s.GetLastMsgForSubject(t.Context(), contract.RetrySubject(rec.ID))
	require.NoError(t, err, "no message schedule of the retry in the deliveries stream")
	due := rec.NextAttemptAt.UTC()
	if frac := due.Sub(due.Truncate(time.Second)); frac > 0 {
		due = due.Add(time.Second - frac)
	}
	require.Equal(t, "@at "+due.Format(time.RFC3339), msg.Header.Get(jetstream.ScheduleHeader))
	require.Equal(t, contract.DeliverySubject("acme", "cb"), msg.Header.Get(jetstream.ScheduleTargetHeader))
	var d contract.Delivery
	require.NoError(t, json.Unmarshal(msg.Data, &d))
	require.Equal(t, rec.ID, d.ID)
	require.Equal(t, rcv.URL, d.URL)
	require.Len(t, d.Attempts, 1, "the schedule carries the attempts so far")
	require.Equal(t, http.StatusInternalServerError, d.Attempts[0].StatusCode)
	require.Len(t, rcv.all(), 1, "nothing more sent before it is due")
}

// A retry scheduled by one notifier is sent, when due, by another started
// on the same JetStream after the first stopped: a restart resumes retries
// on time.
func TestDurableRetrySurvivesARestart(t *testing.T) {
	t.Parallel()
	js := startJetStream(t)
	key := make([]byte, secretbox.KeySize)
	_, _ = rand.Read(key)
	box, err := secretbox.New(key) // both notifiers read the secrets with it
	require.NoError(t, err)
	cfg := notifier.Config{Box: box, InProcessMax: durable, Schedule: []time.Duration{3 * time.Second}, Jitter: 0.01}
	rcv := newReceiver(t, statuses(http.StatusInternalServerError))
	var pending contract.DeliveryRecord
	t.Run("first notifier", func(t *testing.T) { // stopped when this ends
		b := setupOn(t, js, cfg)
		b.publishJobEvent(t, "acme", "job_x", rcv.URL)
		pending = b.waitLog(t, "acme", "job_x", contract.DeliveryPending)
	})
	require.Len(t, rcv.all(), 1)
	restarted := time.Now()
	b := setupOn(t, js, cfg)
	got := rcv.wait(t, 2)
	t.Logf("restarted %v before the retry was due", pending.NextAttemptAt.Sub(restarted))
	require.Equal(t, pending.ID, got[1].id(), "the same webhook-id")
	require.False(t, got[1].at.Before(*pending.NextAttemptAt), "the retry ran before it was due")
	done := b.waitLog(t, "acme", "job_x", contract.DeliverySucceeded)
	require.Equal(t, []int{http.StatusInternalServerError, http.StatusOK}, attemptCodes(done))
}

// The SSRF guard checks the address a name resolves to when it is dialled:
// a callback URL whose host is a name that is not "localhost" (which
// CheckURL refuses by name) but resolves to a non-public address is
// refused, and its receiver, listening there, gets nothing. The name is
// this machine's host name, or another from /etc/hosts that resolves to
// loopback; without one, the test is skipped.
func TestDeliverSSRFGuardChecksResolvedName(t *testing.T) {
	t.Parallel()
	host, addr := blockedName(t)
	guard := ssrf.NewGuard(nil)
	ln, err := net.Listen("tcp", net.JoinHostPort(addr.String(), "0"))
	require.NoError(t, err)
	var hits atomic.Int64
	rcv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	_ = rcv.Listener.Close()
	rcv.Listener = ln
	rcv.Start()
	t.Cleanup(rcv.Close)
	url := fmt.Sprintf("http://%s:%d/hook", host, ln.Addr().(*net.TCPAddr).Port)
	require.NoError(t, guard.CheckURL(url), "the name passes the check by name: only the dial-time check can refuse it")

	b := setup(t, notifier.Config{Guard: guard, Schedule: []time.Duration{}})
	b.publishJobEvent(t, "acme", "job_x", url)
	b.waitIdle(t)
	recs := b.logs(t, "acme.*.job_x.*")
	require.Len(t, recs, 1)
	rec := recs[0]
	require.Zero(t, hits.Load(), "the receiver was called")
	require.Equal(t, contract.DeliveryFailed, rec.Status)
	require.Len(t, rec.Attempts, 1)
	require.Zero(t, rec.Attempts[0].StatusCode)
	require.Contains(t, rec.Attempts[0].Error, "blocked by the SSRF guard")
	require.Contains(t, rec.Attempts[0].Error, "the host's address is not public")
	require.NotContains(t, rec.Attempts[0].Error, addr.String(), "what the name resolves to is the operator's network's")
}

// blockedName returns a host name other than localhost that resolves to an
// address the default SSRF guard refuses, and that address.
func blockedName(t *testing.T) (string, netip.Addr) {
	t.Helper()
	names := []string{"ip6-localhost", "ip6-loopback"}
	if h, err := os.Hostname(); err == nil {
		names = append([]string{h}, names...)
	}
	guard := ssrf.NewGuard(nil)
	for _, name := range names {
		lower := strings.ToLower(strings.TrimSuffix(name, "."))
		if _, err := netip.ParseAddr(name); err == nil || lower == "localhost" || strings.HasSuffix(lower, ".localhost") {
			continue
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", name)
		cancel()
		if err != nil || len(addrs) == 0 {
			continue
		}
		blocked := true // every address: the dialer may use any
		for _, a := range addrs {
			blocked = blocked && guard.CheckIP(a) != nil
		}
		if ln, err := net.Listen("tcp", net.JoinHostPort(addrs[0].Unmap().String(), "0")); blocked && err == nil {
			_ = ln.Close()
			return name, addrs[0].Unmap()
		}
	}
	t.Skip("no host name other than localhost resolves to a non-public address here")
	return "", netip.Addr{}
}

// One process sends at most EndpointConcurrency requests to one endpoint
// at once, on the direct and the queued path alike.
func TestEndpointConcurrencyBoundsRequestsInFlight(t *testing.T) {
	t.Parallel()
	const limit, events = 2, 20
	var inFlight, most atomic.Int64
	reached := make(chan struct{})
	var once sync.Once
	rcv := newReceiver(t, func(int, http.ResponseWriter) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		if n >= limit {
			once.Do(func() { close(reached) })
		}
		select { // hold the first until others may overlap it
		case <-reached:
		case <-time.After(10 * time.Second): // none did: give up
			once.Do(func() { close(reached) })
		}
		time.Sleep(20 * time.Millisecond)
	})
	cfg := notifier.Config{EndpointConcurrency: limit}
	notifier.ShortParking(&cfg)
	b := setup(t, cfg, newEndpoint(t, "acme", "ep_1", rcv.URL, "order.paid"))
	for i := range events {
		b.publishEvent(t, "acme", "order.paid", fmt.Sprintf("acme:evt_%d", i), []byte(`{}`))
	}
	require.Eventually(t, func() bool {
		succeeded := 0
		for _, rec := range b.logs(t, "acme.>") {
			if rec.Status == contract.DeliverySucceeded {
				succeeded++
			}
		}
		return succeeded == events
	}, 30*time.Second, 10*time.Millisecond, "not every delivery succeeded")
	require.EqualValues(t, limit, most.Load(), "most requests in flight to the endpoint at once")
}

// An event is acknowledged only once its deliveries are stored: while the
// deliveries stream refuses writes, fan-out puts the event back; once it
// takes them, every target gets its webhook.
func TestFanoutKeepsTheEventUntilItsDeliveriesAreStored(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, nil)
	// Two targets: the event takes the queued path, not a direct attempt.
	b := setup(t, notifier.Config{},
		newEndpoint(t, "acme", "ep_1", rcv.URL, "order.paid"), newEndpoint(t, "acme", "ep_2", rcv.URL, "order.paid"))
	ctx := t.Context()
	s, err := b.js.Stream(ctx, contract.StreamDeliveries)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	refusing := cfg
	refusing.MaxMsgSize = 16 // every delivery is larger
	_, err = b.js.UpdateStream(ctx, refusing)
	require.NoError(t, err)

	b.publishEvent(t, "acme", "order.paid", "acme:evt_1", []byte(`{}`))
	require.Eventually(t, func() bool {
		info := b.consumerInfo(t, contract.StreamEvents, notifier.FanoutConsumer)
		return info.Delivered.Consumer >= 2 && info.NumAckPending == 1
	}, 10*time.Second, 10*time.Millisecond, "the event was not put back while its deliveries could not be stored")
	require.Empty(t, rcv.all())
	require.Empty(t, b.logs(t, "acme.>"))

	_, err = b.js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	got := rcv.wait(t, 2)
	require.NotEqual(t, got[0].id(), got[1].id(), "one delivery per endpoint")
	b.waitIdle(t)
}

// At most MaxResponseBytes of a response are read: the notifier stops
// reading a large answer and closes its connection, so the receiver's
// writes fail long before it has written it all. The sockets buffer some
// megabytes (over 4 MiB on loopback in gVisor), hence the large answer.
func TestDeliverReadsABoundedResponse(t *testing.T) {
	t.Parallel()
	const size = 64 << 20
	type result struct {
		n      int
		failed bool
	}
	written := make(chan result, 1)
	rcv := newReceiver(t, func(_ int, w http.ResponseWriter) {
		chunk := []byte(strings.Repeat("x", 32<<10))
		var r result
		for r.n < size && !r.failed {
			k, err := w.Write(chunk)
			r.n += k
			r.failed = err != nil || http.NewResponseController(w).Flush() != nil
		}
		written <- r
	})
	b := setup(t, notifier.Config{})
	b.publishJobEvent(t, "acme", "job_x", rcv.URL)
	rec := b.waitLog(t, "acme", "job_x", contract.DeliverySucceeded)
	require.Len(t, rec.Attempts, 1)
	select {
	case r := <-written:
		t.Logf("the receiver wrote %d bytes of %d", r.n, size)
		require.True(t, r.failed, "the receiver wrote its whole answer: it was read to the end")
		require.Less(t, r.n, size/4, "bytes the receiver could write (MaxResponseBytes is %d)", notifier.MaxResponseBytes)
	case <-time.After(10 * time.Second):
		t.Fatal("the receiver's writes did not stop within 10s")
	}
}

// A replay sends the delivery again with the same webhook-id and body,
// signed as before, and its record stays one, under that id.
func TestReplayKeepsTheWebhookID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		givenEndpoint  bool
		wantOwnerInKey string
	}{
		{name: "job callback", wantOwnerInKey: "job_x"},
		{name: "endpoint", givenEndpoint: true, wantOwnerInKey: "evt_1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rcv := newReceiver(t, statuses(http.StatusInternalServerError))
			ep := newEndpoint(t, "acme", "ep_1", rcv.URL, "order.paid")
			b := setup(t, notifier.Config{Schedule: []time.Duration{}}, ep)
			secret := ep.Keyring.Current().Secret
			if tt.givenEndpoint {
				b.publishEvent(t, "acme", "order.paid", "acme:evt_1", []byte(`{"order":1}`))
			} else {
				secret = b.secret(t, "acme")
				b.publishJobEvent(t, "acme", "job_x", rcv.URL)
			}
			failed := b.waitLog(t, "acme", tt.wantOwnerInKey, contract.DeliveryFailed)
			require.NoError(t, deliverylog.Replay(t.Context(), b.js, "acme", failed, failed.ID+".replay.1"))

			got := rcv.wait(t, 2)
			require.Equal(t, got[0].id(), got[1].id(), "the replay's webhook-id")
			require.Equal(t, failed.ID, got[1].id())
			require.Equal(t, string(got[0].body), string(got[1].body))
			require.NoError(t, webhook.Verify(secret, got[1].header, got[1].body, time.Now(), webhook.DefaultTolerance))
			done := b.waitLog(t, "acme", tt.wantOwnerInKey, contract.DeliverySucceeded)
			require.Equal(t, failed.ID, done.ID)
			require.Equal(t, []int{http.StatusInternalServerError, http.StatusOK}, attemptCodes(done))
		})
	}
}
