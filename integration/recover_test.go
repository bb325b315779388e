package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/contract"
)

// An integrator whose endpoint was down sees every failed delivery with its
// reason and recovers them with one call: each is sent exactly once more,
// with the same webhook-id.
func TestRecoverAfterOutage(t *testing.T) {
	t.Parallel()
	h := start(t, withSchedule(time.Nanosecond, time.Second))
	down := newReceiver(t, 500, 500, 500, 500, 500, 500)
	healthy := newReceiver(t)
	id, secret := h.createEndpoint(keyAcme, down.URL, "order.*")
	h.createEndpoint(keyAcme, healthy.URL, "order.*")
	since := time.Now().UTC().Add(-time.Second)
	for i := range 3 {
		code, _, out := h.call(http.MethodPost, "/v1/events", keyAcme, fmt.Sprintf(`{"type":"order.created","data":{"n":%d}}`, i))
		require.Equal(t, http.StatusAccepted, code, out)
	}
	healthy.wait(t, 3, 30*time.Second)
	first := down.wait(t, 6, 30*time.Second) // 3 deliveries × 2 attempts

	var failed []any
	require.Eventually(t, func() bool {
		q := url.Values{"endpoint": {id}, "status": {"failed"}}
		_, _, out := h.call(http.MethodGet, "/v1/deliveries?"+q.Encode(), keyAcme, "")
		failed, _ = out["data"].([]any)
		return len(failed) == 3
	}, 30*time.Second, 100*time.Millisecond)
	for _, f := range failed {
		d := f.(map[string]any)
		attempts := d["attempts"].([]any)
		require.Len(t, attempts, 2)
		require.EqualValues(t, 500, attempts[1].(map[string]any)["status_code"])
	}

	code, hdr, out := h.call(http.MethodPost, "/v1/endpoints/"+id+"/recover", keyAcme, `{"since":"`+since.Format(time.RFC3339Nano)+`"}`)
	require.Equal(t, http.StatusAccepted, code, out)
	require.Equal(t, "/v1/tasks/"+out["id"].(string), hdr.Get("Location"))
	task := h.waitTask(keyAcme, out["id"].(string))
	require.EqualValues(t, 3, task["resent"])
	got := down.wait(t, 9, 30*time.Second)
	ids := map[string]int{}
	for _, r := range got {
		verify(t, secret, r)
		ids[r.id()]++
	}
	require.Len(t, ids, 3)
	for webhookID, n := range ids {
		require.Equal(t, 3, n, "%s: two attempts, then exactly one recovery", webhookID)
	}
	require.Equal(t, first[0].id(), got[0].id())

	// They now read succeeded; a single retry sends one more.
	require.Eventually(t, func() bool {
		_, _, out := h.call(http.MethodGet, "/v1/deliveries?status=succeeded&endpoint="+id, keyAcme, "")
		return len(out["data"].([]any)) == 3
	}, 30*time.Second, 100*time.Millisecond)
	code, _, _ = h.call(http.MethodPost, "/v1/deliveries/"+got[0].id()+"/retry", keyAcme, "")
	require.Equal(t, http.StatusAccepted, code)
	again := down.wait(t, 10, 30*time.Second)
	require.Equal(t, got[0].id(), again[9].id())
	code, _, _ = h.call(http.MethodPost, "/v1/deliveries/"+got[0].id()+"/retry", keyOther, "")
	require.Equal(t, http.StatusNotFound, code)
	time.Sleep(500 * time.Millisecond)
	require.Len(t, healthy.all(), 3, "the healthy endpoint never noticed")
}

// waitTask polls a task until it is done: within a minute, since a task
// that was in flight when the app stopped comes back after the tasks
// consumer's AckWait (30 s).
func (h *harness) waitTask(key, id string) map[string]any {
	h.t.Helper()
	var task map[string]any
	require.Eventually(h.t, func() bool {
		code, _, out := h.call(http.MethodGet, "/v1/tasks/"+id, key, "")
		task = out
		return code == http.StatusOK && out["status"] == "done"
	}, 60*time.Second, 50*time.Millisecond, "task %s not done", id)
	return task
}

// failedDelivery makes an endpoint whose receiver answers 500 twice (the
// schedule's two attempts) and a delivery to it that failed, and returns
// the endpoint's id and its receiver.
func (h *harness) failedDelivery() (string, *receiver) {
	h.t.Helper()
	down := newReceiver(h.t, 500, 500)
	id, _ := h.createEndpoint(keyAcme, down.URL, "order.*")
	code, _, _ := h.call(http.MethodPost, "/v1/events", keyAcme, `{"type":"order.created","data":{}}`)
	require.Equal(h.t, http.StatusAccepted, code)
	down.wait(h.t, 2, 30*time.Second)
	require.Eventually(h.t, func() bool {
		code, _, out := h.call(http.MethodGet, "/v1/deliveries?status=failed&endpoint="+id, keyAcme, "")
		require.Equal(h.t, http.StatusOK, code, out)
		return len(out["data"].([]any)) == 1
	}, 30*time.Second, 50*time.Millisecond)
	return id, down
}

// A recover sent again with its Idempotency-Key is the same task, and a
// task's message that comes again once the task is done (a retried request
// publishes a queued task's message again; past the 2-minute
// de-duplication window it is stored twice) is not run again.
func TestRecoverWithAKeyRunsOnce(t *testing.T) {
	t.Parallel()
	h := start(t, withSchedule(time.Nanosecond, time.Second), withNATSListen())
	id, down := h.failedDelivery()
	path := "/v1/endpoints/" + id + "/recover"
	code, _, first := h.call(http.MethodPost, path, keyAcme, `{"since":"2020-01-01T00:00:00Z"}`, "Idempotency-Key", "once")
	require.Equal(t, http.StatusAccepted, code, first)
	done := h.waitTask(keyAcme, first["id"].(string))
	code, hdr, again := h.call(http.MethodPost, path, keyAcme, `{"since":"2020-01-01T00:00:00Z"}`, "Idempotency-Key", "once")
	require.Equal(t, http.StatusAccepted, code, again)
	require.Equal(t, "true", hdr.Get("Idempotent-Replayed"))
	require.Equal(t, "done", again["status"], "the task as it is now")

	// Its message once more, as if stored again past the window.
	js := h.natsClient()
	task, _ := json.Marshal(done)
	_, err := js.Publish(t.Context(), contract.SubjectTasks+".acme.recover", task)
	require.NoError(t, err)
	stream, err := js.Stream(t.Context(), contract.StreamTasks)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := stream.Info(t.Context())
		return err == nil && info.State.Msgs == 0
	}, 30*time.Second, 50*time.Millisecond, "the message is taken")
	_, _, after := h.call(http.MethodGet, "/v1/tasks/"+first["id"].(string), keyAcme, "")
	require.Equal(t, done["updated_at"], after["updated_at"], "not run again")
	require.Len(t, down.all(), 3, "two attempts, one recovery")
}

// A restart right after a recover was accepted still finishes it: the task
// is a message in JetStream.
func TestRecoverSurvivesRestart(t *testing.T) {
	t.Parallel()
	h := start(t, withSchedule(time.Nanosecond, time.Second))
	id, down := h.failedDelivery()
	code, _, out := h.call(http.MethodPost, "/v1/endpoints/"+id+"/recover", keyAcme, `{"since":"2020-01-01T00:00:00Z"}`)
	require.Equal(t, http.StatusAccepted, code, out)
	h.restart()
	h.waitTask(keyAcme, out["id"].(string))
	got := down.wait(t, 3, 30*time.Second)
	require.Equal(t, got[0].id(), got[2].id())
	code, _, _ = h.call(http.MethodGet, "/v1/tasks/"+out["id"].(string), keyOther, "")
	require.Equal(t, http.StatusNotFound, code)
}

// 410 Gone disables the endpoint at once, with the reason, and says so with
// an endpoint.disabled event.
func TestGoneDisablesEndpoint(t *testing.T) {
	t.Parallel()
	h := start(t)
	gone := newReceiver(t, http.StatusGone)
	ops := newReceiver(t)
	id, _ := h.createEndpoint(keyAcme, gone.URL, "order.*")
	h.createEndpoint(keyAcme, ops.URL, "endpoint.*")
	code, _, _ := h.call(http.MethodPost, "/v1/events", keyAcme, `{"type":"order.created","data":{}}`)
	require.Equal(t, http.StatusAccepted, code)
	gone.wait(t, 1, 30*time.Second)
	ev := ops.wait(t, 1, 30*time.Second)[0]
	require.Equal(t, "endpoint.disabled", ev.event.Type)
	require.Contains(t, string(ev.event.Data), id)

	_, _, ep := h.call(http.MethodGet, "/v1/endpoints/"+id, keyAcme, "")
	require.Equal(t, false, ep["enabled"])
	require.Contains(t, ep["disabled_reason"], "410")
	code, _, _ = h.call(http.MethodPost, "/v1/endpoints/"+id+"/recover", keyAcme, `{"since":"2020-01-01T00:00:00Z"}`)
	require.Equal(t, http.StatusConflict, code, "recover asks to enable first")

	// Re-enabling offers the recovery of what failed meanwhile.
	code, _, ep = h.call(http.MethodPatch, "/v1/endpoints/"+id, keyAcme, `{"enabled":true}`)
	require.Equal(t, http.StatusOK, code)
	offer := ep["recover"].(map[string]any)
	require.Equal(t, "/v1/endpoints/"+id+"/recover", offer["href"])
	body, _ := json.Marshal(offer["body"])
	code, _, task := h.call(http.MethodPost, offer["href"].(string), keyAcme, string(body))
	require.Equal(t, http.StatusAccepted, code, task)
	require.EqualValues(t, 1, h.waitTask(keyAcme, task["id"].(string))["resent"])
}
