package integration

import (
	"net/http"
	"strings"
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
