package integration

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/notifier"
)

// An endpoint that fails every delivery for DisableAfter is disabled with
// the reason; one that fails and then succeeds is announced recovered.
func TestFailingEndpointIsDisabledAndRecoveryAnnounced(t *testing.T) {
	t.Parallel()
	h := start(t, withNotifier(func(c *notifier.Config) {
		c.DisableAfter = time.Second
		c.Schedule = []time.Duration{time.Hour}
		c.RecoveryAfter = time.Nanosecond // the flaky endpoint's short outage is announced
	}))
	ops := newReceiver(t)
	h.createEndpoint(keyAcme, ops.URL, "endpoint.*")
	failing := newReceiver(t, repeat(http.StatusInternalServerError, 100)...)
	flaky := newReceiver(t, http.StatusInternalServerError)
	failingID, _ := h.createEndpoint(keyAcme, failing.URL, "a.*")
	flakyID, _ := h.createEndpoint(keyAcme, flaky.URL, "b.*")

	send := func(typ string) {
		code, _, out := h.call(http.MethodPost, "/v1/events", keyAcme, `{"type":"`+typ+`","data":{}}`)
		require.Equal(t, http.StatusAccepted, code, out)
	}
	send("a.one")
	send("b.one")
	failing.wait(t, 1, 30*time.Second)
	flaky.wait(t, 1, 30*time.Second)
	// Both failures are recorded before the next deliveries: the flaky
	// endpoint's success can only announce a recovery from a failure that
	// was recorded (its first attempt's outcome is written after the
	// receiver answered it).
	for _, id := range []string{failingID, flakyID} {
		require.Eventually(t, func() bool {
			_, _, ep := h.call(http.MethodGet, "/v1/endpoints/"+id, keyAcme, "")
			return ep["failing_since"] != nil
		}, 10*time.Second, 20*time.Millisecond, "failing_since is recorded")
	}

	send("b.two") // succeeds: flaky recovers
	time.Sleep(1100 * time.Millisecond)
	send("a.two") // still failing after DisableAfter: disabled
	failing.wait(t, 2, 30*time.Second)

	seen := map[string]bool{}
	for _, r := range ops.wait(t, 2, 30*time.Second) {
		seen[r.event.Type] = true
		switch r.event.Type {
		case "endpoint.recovered":
			require.Contains(t, string(r.event.Data), flakyID)
		case "endpoint.disabled":
			require.Contains(t, string(r.event.Data), failingID)
		}
	}
	require.True(t, seen["endpoint.recovered"] && seen["endpoint.disabled"], seen)
	_, _, ep := h.call(http.MethodGet, "/v1/endpoints/"+failingID, keyAcme, "")
	require.Equal(t, false, ep["enabled"])
	require.True(t, strings.HasPrefix(ep["disabled_reason"].(string), "failing continuously since"), ep)
	_, _, ep = h.call(http.MethodGet, "/v1/endpoints/"+flakyID, keyAcme, "")
	require.Nil(t, ep["failing_since"])
}

// An endpoint's own retry schedule and timeout override the deployment's,
// within bounds.
func TestEndpointOverrides(t *testing.T) {
	t.Parallel()
	h := start(t, withNotifier(func(c *notifier.Config) { c.Schedule = []time.Duration{time.Hour} }))
	rcv := newReceiver(t, 500, 500)
	code, _, out := h.call(http.MethodPost, "/v1/endpoints", keyAcme,
		`{"url":"`+rcv.URL+`","retry_schedule":["1s","1s"],"attempt_timeout":"5s"}`)
	require.Equal(t, http.StatusCreated, code, out)
	require.Equal(t, []any{"1s", "1s"}, out["retry_schedule"])
	require.Equal(t, "5s", out["attempt_timeout"])
	send := `{"type":"x.y","data":{}}`
	code, _, _ = h.call(http.MethodPost, "/v1/events", keyAcme, send)
	require.Equal(t, http.StatusAccepted, code)
	got := rcv.wait(t, 3, 30*time.Second) // the deployment's schedule would wait an hour
	require.Equal(t, got[0].id(), got[2].id())

	for _, bad := range []string{`{"attempt_timeout":"2m"}`, `{"retry_schedule":["0s"]}`, `{"retry_schedule":["48h"]}`} {
		code, _, out := h.call(http.MethodPatch, "/v1/endpoints/"+out["id"].(string), keyAcme, bad)
		require.Equal(t, http.StatusUnprocessableEntity, code, bad, out)
	}
}

// The recovery offered when a disabled endpoint is enabled again reaches
// the deliveries that failed while it was off, the one that began its
// failing period included (created before failing_since was recorded).
func TestRecoveryOfferedOnEnableReachesTheFirstFailure(t *testing.T) {
	t.Parallel()
	h := start(t, withSchedule(time.Nanosecond, time.Nanosecond))
	down := newReceiver(t, 500, 500)
	id, _ := h.createEndpoint(keyAcme, down.URL, "order.*")
	code, _, out := h.call(http.MethodPost, "/v1/events", keyAcme, `{"type":"order.created","data":{}}`)
	require.Equal(t, http.StatusAccepted, code, out)
	down.wait(t, 2, 30*time.Second)
	require.Eventually(t, func() bool {
		_, _, out := h.call(http.MethodGet, "/v1/deliveries?status=failed&endpoint="+id, keyAcme, "")
		failed, _ := out["data"].([]any)
		return len(failed) == 1
	}, 30*time.Second, 50*time.Millisecond)

	code, _, out = h.call(http.MethodPatch, "/v1/endpoints/"+id, keyAcme, `{"enabled":false}`)
	require.Equal(t, http.StatusOK, code, out)
	code, _, out = h.call(http.MethodPatch, "/v1/endpoints/"+id, keyAcme, `{"enabled":true}`)
	require.Equal(t, http.StatusOK, code, out)
	offer := out["recover"].(map[string]any)
	body, err := json.Marshal(offer["body"])
	require.NoError(t, err)
	code, _, out = h.call(http.MethodPost, offer["href"].(string), keyAcme, string(body))
	require.Equal(t, http.StatusAccepted, code, out)
	task := h.waitTask(keyAcme, out["id"].(string))
	require.EqualValues(t, 1, task["resent"], "the failed delivery is sent again")
	down.wait(t, 3, 30*time.Second)
}

// An endpoint moved to a new URL is judged by that URL alone: its failing
// period ends with the move, and a 410 Gone from the old URL, answered to
// a delivery in flight during the move, neither disables it nor ends that
// delivery, which is retried at the new URL.
func TestOldURLsAnswersDoNotCountAgainstTheNewOne(t *testing.T) {
	t.Parallel()
	h := start(t, withSchedule(time.Nanosecond, time.Hour))
	down := newReceiver(t, repeat(http.StatusInternalServerError, 10)...)
	id, _ := h.createEndpoint(keyAcme, down.URL, "order.*")
	send := func() {
		code, _, out := h.call(http.MethodPost, "/v1/events", keyAcme, `{"type":"order.created","data":{}}`)
		require.Equal(t, http.StatusAccepted, code, out)
	}
	send()
	require.Eventually(t, func() bool {
		_, _, ep := h.call(http.MethodGet, "/v1/endpoints/"+id, keyAcme, "")
		return ep["failing_since"] != nil
	}, 10*time.Second, 20*time.Millisecond, "failing_since is recorded")

	arrived, release := make(chan string, 1), make(chan struct{})
	leaving := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- r.Header.Get("webhook-id")
		<-release
		w.WriteHeader(http.StatusGone)
	}))
	t.Cleanup(leaving.Close)
	t.Cleanup(sync.OnceFunc(func() { close(release) }))
	code, _, ep := h.call(http.MethodPatch, "/v1/endpoints/"+id, keyAcme, `{"url":"`+leaving.URL+`"}`)
	require.Equal(t, http.StatusOK, code, ep)
	require.Nil(t, ep["failing_since"], "the old URL's failures are not the new one's")

	send()
	var gone string
	select {
	case gone = <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the new URL got no webhook within 30 s")
	}
	moved := newReceiver(t)
	code, _, ep = h.call(http.MethodPatch, "/v1/endpoints/"+id, keyAcme, `{"url":"`+moved.URL+`"}`)
	require.Equal(t, http.StatusOK, code, ep)
	release <- struct{}{} // not closed: the cleanup closes it
	retried := moved.wait(t, 1, 30*time.Second)[0]
	require.Equal(t, gone, retried.id(), "the same delivery, retried at the new URL")
	_, _, out := h.call(http.MethodGet, "/v1/deliveries?status=failed&endpoint="+id, keyAcme, "")
	require.Empty(t, out["data"], "the delivery the old URL answered 410 is not dead-lettered")
	_, _, ep = h.call(http.MethodGet, "/v1/endpoints/"+id, keyAcme, "")
	require.Equal(t, true, ep["enabled"], ep)
	send()
	got := moved.wait(t, 2, 30*time.Second)
	require.NotEqual(t, gone, got[1].id(), "the next event is a delivery of its own")
}
