package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/allinone"
	"github.com/hookstream/hookstream/shared/contract"
)

// createEndpoint registers an endpoint and returns its id and secret.
func (h *harness) createEndpoint(key, url string, types ...string) (string, string) {
	h.t.Helper()
	body, _ := json.Marshal(map[string]any{"url": url, "event_types": types})
	code, hdr, out := h.call(http.MethodPost, "/v1/endpoints", key, string(body))
	require.Equal(h.t, http.StatusCreated, code, out)
	require.Equal(h.t, "/v1/endpoints/"+out["id"].(string), hdr.Get("Location"))
	require.True(h.t, strings.HasPrefix(out["secret"].(string), "whsec_"))
	return out["id"].(string), out["secret"].(string)
}

// natsClient connects to the app's embedded NATS as an internal service would.
func (h *harness) natsClient() jetstream.JetStream {
	h.t.Helper()
	nc, err := nats.Connect(h.app.NATSURL())
	require.NoError(h.t, err)
	h.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(h.t, err)
	return js
}

func publishEvent(t *testing.T, js jetstream.JetStream, subject, id string, data string) {
	t.Helper()
	msg := nats.NewMsg(subject)
	msg.Data = []byte(data)
	if id != "" {
		msg.Header.Set("Nats-Msg-Id", id)
	}
	_, err := js.PublishMsg(context.Background(), msg)
	require.NoError(t, err)
}

// An event published on NATS by an internal service reaches the two
// endpoints subscribed to its type, signed with each one's secret, and not a
// third; publishing it again with the same id delivers nothing more.
func TestEventFromNATSReachesSubscribedEndpoints(t *testing.T) {
	t.Parallel()
	h := start(t, withNATSListen())
	exact, wildcard, other := newReceiver(t), newReceiver(t), newReceiver(t)
	_, exactSecret := h.createEndpoint(keyAcme, exact.URL, "invoice.paid")
	_, wildcardSecret := h.createEndpoint(keyAcme, wildcard.URL, "invoice.*")
	h.createEndpoint(keyAcme, other.URL, "job.*")
	otherTenant := newReceiver(t)
	h.createEndpoint(keyOther, otherTenant.URL)

	js := h.natsClient()
	publishEvent(t, js, "hookstream.events.acme.invoice.paid", "evt_inv_1", `{"invoice":"in_1","amount":4200}`)
	a := exact.wait(t, 1, 30*time.Second)[0]
	b := wildcard.wait(t, 1, 30*time.Second)[0]
	verify(t, exactSecret, a)
	verify(t, wildcardSecret, b)
	wrong, err := standardwebhooks.NewWebhook(wildcardSecret)
	require.NoError(t, err)
	require.Error(t, wrong.Verify(a.body, a.header), "each endpoint has its own secret")
	require.NotEqual(t, a.id(), b.id(), "each delivery has its own webhook-id")
	require.Equal(t, "invoice.paid", a.event.Type)
	require.JSONEq(t, `{"invoice":"in_1","amount":4200}`, string(a.event.Data))

	publishEvent(t, js, "hookstream.events.acme.invoice.paid", "evt_inv_1", `{"invoice":"in_1","amount":4200}`)
	publishEvent(t, js, "hookstream.events.acme.invoice.sent", "evt_inv_2", `{}`) // a marker that only the wildcard gets
	wildcard.wait(t, 2, 30*time.Second)
	require.Len(t, exact.all(), 1, "the same event id is delivered once")
	require.Len(t, wildcard.all(), 2)
	require.Empty(t, other.all())
	require.Empty(t, otherTenant.all(), "another tenant's endpoint never sees acme's events")

	// The event types seen are listed with an example.
	code, _, out := h.call(http.MethodGet, "/v1/event-types", keyAcme, "")
	require.Equal(t, http.StatusOK, code)
	types := map[string]bool{}
	for _, et := range out["data"].([]any) {
		types[et.(map[string]any)["type"].(string)] = true
	}
	require.True(t, types["invoice.paid"] && types["invoice.sent"], out)
	_, _, out = h.call(http.MethodGet, "/v1/event-types", keyOther, "")
	require.Empty(t, out["data"])
}

// POST /v1/events takes the same path, and job events reach endpoints
// subscribed to job.*.
func TestEventsOverHTTPAndJobEventsReachEndpoints(t *testing.T) {
	t.Parallel()
	h := start(t)
	rcv := newReceiver(t)
	_, secret := h.createEndpoint(keyAcme, rcv.URL, "order.>", "job.succeeded")
	code, hdr, out := h.call(http.MethodPost, "/v1/events", keyAcme, `{"type":"order.created","data":{"order":7},"id":"ord_7"}`)
	require.Equal(t, http.StatusAccepted, code, out)
	require.Equal(t, "ord_7", out["id"])
	require.Empty(t, hdr.Get("Retry-After"), "an event has no status to wait for")
	h.submit(keyAcme, `{"type":"echo","payload":1}`)
	got := rcv.wait(t, 2, 30*time.Second)
	seen := map[string]bool{}
	for _, r := range got {
		verify(t, secret, r)
		seen[r.event.Type] = true
	}
	require.True(t, seen["order.created"] && seen["job.succeeded"], seen)

	for _, bad := range []string{`{"type":"job.succeeded","data":{}}`, `{"type":"x"}`, `{"type":"a..b","data":1}`, `{"type":"x","data":1,"id":"a.b"}`} {
		code, _, out := h.call(http.MethodPost, "/v1/events", keyAcme, bad)
		require.Equal(t, http.StatusUnprocessableEntity, code, bad, out)
	}
}

// A malformed event on NATS is dead-lettered with its reason, not retried
// and not dropped silently; later events still flow.
func TestMalformedEventIsDeadLettered(t *testing.T) {
	t.Parallel()
	h := start(t, withNATSListen())
	rcv := newReceiver(t)
	h.createEndpoint(keyAcme, rcv.URL)
	js := h.natsClient()
	publishEvent(t, js, "hookstream.events.acme.broken", "evt_bad", `{not json`)
	publishEvent(t, js, "hookstream.events.acme.fine", "evt_ok", `{"ok":true}`)
	require.Equal(t, "fine", rcv.wait(t, 1, 30*time.Second)[0].event.Type)

	stream, err := js.Stream(context.Background(), contract.StreamDeadLetters)
	require.NoError(t, err)
	var dead *jetstream.RawStreamMsg
	require.Eventually(t, func() bool {
		dead, err = stream.GetLastMsgForSubject(context.Background(), "hookstream.dead.events")
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, "data is not a JSON value", dead.Header.Get(contract.HeaderDeadReason))
	require.Equal(t, "hookstream.events.acme.broken", dead.Header.Get(contract.HeaderOriginalSubject))
	require.Equal(t, `{not json`, string(dead.Data))
}

// During a rotation's grace period a receiver holding either secret
// verifies; after it, only the new one.
func TestEndpointSecretRotation(t *testing.T) {
	t.Parallel()
	h := start(t)
	rcv := newReceiver(t)
	id, oldSecret := h.createEndpoint(keyAcme, rcv.URL)
	code, _, out := h.call(http.MethodPost, "/v1/endpoints/"+id+"/secret/rotate", keyAcme, `{"grace_period":"8s"}`)
	require.Equal(t, http.StatusOK, code, out)
	newSecret := out["secret"].(string)
	require.NotEqual(t, oldSecret, newSecret)
	rotatedAt := time.Now()

	ping := func() received {
		n := len(rcv.all())
		code, _, out := h.call(http.MethodPost, "/v1/endpoints/"+id+"/test", keyAcme, "")
		require.Equal(t, http.StatusAccepted, code, out)
		r := rcv.wait(t, n+1, 30*time.Second)[n]
		require.Equal(t, "ping", r.event.Type)
		return r
	}
	during := ping()
	require.Less(t, time.Since(rotatedAt), 8*time.Second, "the first ping came within the grace period")
	verify(t, oldSecret, during)
	verify(t, newSecret, during)
	require.Len(t, strings.Fields(during.header.Get("webhook-signature")), 2)

	time.Sleep(time.Until(rotatedAt.Add(8 * time.Second)))
	after := ping()
	verify(t, newSecret, after)
	old, err := standardwebhooks.NewWebhook(oldSecret)
	require.NoError(t, err)
	require.Error(t, old.Verify(after.body, after.header), "the old secret no longer verifies after the grace period")
}

// Secrets of one's own (receivers moved from another provider) sign as
// generated ones do: an endpoint created with one, then rotated to another
// without grace, and the tenant's callback secret rotated to one.
func TestSecretsOfOnesOwnSign(t *testing.T) {
	t.Parallel()
	h := start(t)
	rcv := newReceiver(t)
	own := "whsec_" + base64.StdEncoding.EncodeToString([]byte("a secret brought from elsewhere!!"))
	code, _, out := h.call(http.MethodPost, "/v1/endpoints", keyAcme, `{"url":"`+rcv.URL+`","event_types":["ping"],"secret":"`+own+`"}`)
	require.Equal(t, http.StatusCreated, code, out)
	id := out["id"].(string)
	ping := func() received {
		n := len(rcv.all())
		code, _, out := h.call(http.MethodPost, "/v1/endpoints/"+id+"/test", keyAcme, "")
		require.Equal(t, http.StatusAccepted, code, out)
		return rcv.wait(t, n+1, 30*time.Second)[n]
	}
	verify(t, own, ping())

	next := "whsec_" + base64.StdEncoding.EncodeToString([]byte("another one, also brought along, longer"))
	code, _, out = h.call(http.MethodPost, "/v1/endpoints/"+id+"/secret/rotate", keyAcme, `{"secret":"`+next+`","grace_period":"0s"}`)
	require.Equal(t, http.StatusOK, code, out)
	after := ping()
	verify(t, next, after)
	require.Len(t, strings.Fields(after.header.Get("webhook-signature")), 1, "no grace: the old secret signs no more")

	code, _, out = h.call(http.MethodPost, "/v1/signing-secret/rotate", keyAcme, `{"secret":"`+own+`","grace_period":"0s"}`)
	require.Equal(t, http.StatusOK, code, out)
	n := len(rcv.all())
	h.submit(keyAcme, `{"type":"echo","callback_url":"`+rcv.URL+`/job"}`)
	callback := rcv.wait(t, n+1, 30*time.Second)[n]
	require.Equal(t, "job.succeeded", callback.event.Type)
	verify(t, own, callback)
}

// Fan-out re-run for an event (as after a crash between publishing some of
// its deliveries and acknowledging it) neither loses nor multiplies
// deliveries: delivery ids are derived from the event and the target.
func TestFanoutRerunDoesNotDuplicate(t *testing.T) {
	t.Parallel()
	h := start(t, withNATSListen())
	first, second := newReceiver(t), newReceiver(t)
	firstID, _ := h.createEndpoint(keyAcme, first.URL, "thing.happened")
	h.createEndpoint(keyAcme, second.URL, "thing.happened")
	js := h.natsClient()

	// What a fan-out that died after its first publish left behind.
	body := `{"type":"thing.happened","timestamp":"2026-01-01T00:00:00Z","data":{"n":1}}`
	d := contract.Delivery{
		ID: contract.DeliveryID("evt_crash", firstID), Tenant: "acme", EventID: "evt_crash", EventType: "thing.happened",
		EndpointID: firstID, Body: json.RawMessage(body), CreatedAt: time.Now(),
	}
	data, _ := json.Marshal(d)
	publishEvent(t, js, contract.DeliverySubject("acme", firstID), d.ID, string(data))
	// The event is then fanned out (again).
	publishEvent(t, js, "hookstream.events.acme.thing.happened", "evt_crash", `{"n":1}`)

	second.wait(t, 1, 30*time.Second)
	got := first.wait(t, 1, 30*time.Second)
	time.Sleep(time.Second)
	require.Len(t, first.all(), 1, "the delivery published before the crash is not sent twice")
	require.Equal(t, d.ID, got[0].id())
}

// Every tenant-scoped route answers 404 for another tenant's ids, both ways.
func TestTenantIsolationMatrix(t *testing.T) {
	t.Parallel()
	h := start(t)
	rcv := newReceiver(t)
	type owned struct{ job, endpoint string }
	ids := map[string]owned{}
	for _, key := range []string{keyAcme, keyOther} {
		job := h.submit(key, `{"type":"echo"}`)
		ep, _ := h.createEndpoint(key, rcv.URL)
		ids[key] = owned{job, ep}
	}
	routes := []struct {
		method, path, body string
	}{
		{http.MethodGet, "/v1/jobs/{job}", ""},
		{http.MethodGet, "/v1/jobs/{job}/deliveries", ""},
		{http.MethodDelete, "/v1/jobs/{job}", ""},
		{http.MethodGet, "/v1/endpoints/{ep}", ""},
		{http.MethodPatch, "/v1/endpoints/{ep}", `{"description":"mine now"}`},
		{http.MethodGet, "/v1/endpoints/{ep}/secret", ""},
		{http.MethodPost, "/v1/endpoints/{ep}/secret/rotate", ""},
		{http.MethodPost, "/v1/endpoints/{ep}/test", ""},
		{http.MethodDelete, "/v1/endpoints/{ep}", ""},
	}
	for _, pair := range [][2]string{{keyAcme, keyOther}, {keyOther, keyAcme}} {
		caller, victim := pair[0], ids[pair[1]]
		for _, r := range routes {
			path := strings.NewReplacer("{job}", victim.job, "{ep}", victim.endpoint).Replace(r.path)
			code, _, out := h.call(r.method, path, caller, r.body)
			require.Equal(t, http.StatusNotFound, code, "%s %s as the other tenant: %v", r.method, path, out)
		}
		_, _, list := h.call(http.MethodGet, "/v1/endpoints", caller, "")
		require.Len(t, list["data"], 1, "a tenant lists only its own endpoints")
	}
	// The owners still reach everything, unchanged.
	for key, own := range ids {
		for _, r := range routes {
			path := strings.NewReplacer("{job}", own.job, "{ep}", own.endpoint).Replace(r.path)
			code, _, out := h.call(r.method, path, key, r.body)
			require.NotEqual(t, http.StatusNotFound, code, "%s %s as the owner: %v", r.method, path, out)
			require.Less(t, code, 500, "%s %s as the owner: %v", r.method, path, out)
		}
	}
}

// The admin API creates tenants and issues keys that work at once; a revoked
// key stops working.
func TestAdminTenantsAndKeys(t *testing.T) {
	t.Parallel()
	const admin = "admin-token-0123456789"
	h := start(t, withAdminToken(admin))
	code, _, _ := h.call(http.MethodPost, "/v1/admin/tenants", keyAcme, `{"id":"globex"}`)
	require.Equal(t, http.StatusForbidden, code, "a tenant key is not the admin token")
	code, _, out := h.call(http.MethodPost, "/v1/admin/tenants", admin, `{"id":"globex","name":"Globex"}`)
	require.Equal(t, http.StatusCreated, code, out)
	code, _, _ = h.call(http.MethodPost, "/v1/admin/tenants", admin, `{"id":"globex"}`)
	require.Equal(t, http.StatusConflict, code)
	code, _, out = h.call(http.MethodPost, "/v1/admin/tenants/globex/keys", admin, "")
	require.Equal(t, http.StatusCreated, code, out)
	key, keyID := out["key"].(string), out["id"].(string)

	id := h.submit(key, `{"type":"echo"}`)
	code, _, _ = h.call(http.MethodGet, "/v1/jobs/"+id, keyAcme, "")
	require.Equal(t, http.StatusNotFound, code)

	_, _, list := h.call(http.MethodGet, "/v1/admin/tenants", admin, "")
	names := map[string]bool{}
	for _, tn := range list["data"].([]any) {
		names[tn.(map[string]any)["id"].(string)] = true
	}
	require.True(t, names["globex"] && names["acme"] && names["other"], "bootstrap tenants are listed too: %v", names)
	_, _, keys := h.call(http.MethodGet, "/v1/admin/tenants/globex/keys", admin, "")
	require.Len(t, keys["data"], 1)
	require.NotContains(t, keys["data"].([]any)[0], "key", "a key is shown once")

	code, _, _ = h.call(http.MethodDelete, "/v1/admin/tenants/acme/keys/"+keyID, admin, "")
	require.Equal(t, http.StatusNotFound, code, "a key is revoked through its own tenant")
	code, _, _ = h.call(http.MethodDelete, "/v1/admin/tenants/globex/keys/"+keyID, admin, "")
	require.Equal(t, http.StatusNoContent, code)
	code, _, _ = h.call(http.MethodGet, "/v1/jobs/"+id, key, "")
	require.Equal(t, http.StatusUnauthorized, code)

	code, _, out = h.call(http.MethodDelete, "/v1/admin/tenants/acme", admin, "")
	require.Equal(t, http.StatusConflict, code, "a tenant of HOOKSTREAM_API_KEYS keeps its key: %v", out)
	require.Contains(t, out["detail"], "HOOKSTREAM_API_KEYS")
	code, _, _ = h.call(http.MethodDelete, "/v1/admin/tenants/globex", admin, "")
	require.Equal(t, http.StatusNoContent, code)
	code, _, _ = h.call(http.MethodGet, "/v1/admin/tenants/globex", admin, "")
	require.Equal(t, http.StatusNotFound, code)

	// Its id is not given to a new tenant while its jobs are kept: that
	// tenant would see them, and get them back for the same Idempotency-Key.
	code, _, out = h.call(http.MethodPost, "/v1/admin/tenants", admin, `{"id":"globex"}`)
	require.Equal(t, http.StatusConflict, code, out)
	require.Contains(t, out["detail"], "was deleted")
}

func TestAdminAPIOffWithoutToken(t *testing.T) {
	t.Parallel()
	h := start(t)
	code, _, out := h.call(http.MethodGet, "/v1/admin/tenants", keyAcme, "")
	require.Equal(t, http.StatusForbidden, code)
	require.Contains(t, out["detail"], "HOOKSTREAM_ADMIN_TOKEN")
}

func TestEndpointValidation(t *testing.T) {
	t.Parallel()
	h := start(t)
	for _, bad := range []string{
		`{}`,
		`{"url":"ftp://example.com"}`,
		`{"url":"https://example.com","event_types":["a..b"]}`,
		`{"url":"https://example.com","headers":{"webhook-id":"x"}}`,
		`{"url":"https://example.com","headers":{"X-A":"a\nb"}}`,
		`{"url":"https://example.com","headers":{"X-Tést":"v"}}`,     // Go's client would refuse to send it
		`{"url":"https://example.com","headers":{"X-A":"a\u0001b"}}`, // and this
		`{"url":"https://example.com","rate_limit":-1}`,
		`{"url":"http://10.0.0.1/"}`,
	} {
		code, _, out := h.call(http.MethodPost, "/v1/endpoints", keyAcme, bad)
		require.Equal(t, http.StatusUnprocessableEntity, code, bad, out)
	}
	id, _ := h.createEndpoint(keyAcme, "https://example.com/hook", "job.*")
	code, _, out := h.call(http.MethodPatch, "/v1/endpoints/"+id, keyAcme, `{"enabled":false,"event_types":["invoice.>"],"headers":{"X-Env":"prod"}}`)
	require.Equal(t, http.StatusOK, code, out)
	require.Equal(t, false, out["enabled"])
	require.Equal(t, []any{"invoice.>"}, out["event_types"])
	require.Equal(t, map[string]any{"X-Env": "prod"}, out["headers"])
	require.NotContains(t, out, "secret")
}

// The embedded NATS listener lets in only clients with its token: one
// generated on first start and kept in the data dir, the same after a
// restart.
func TestNATSListenerNeedsItsToken(t *testing.T) {
	t.Parallel()
	h := start(t, withNATSListen())
	withToken := h.app.NATSURL()
	u, err := url.Parse(withToken)
	require.NoError(t, err)
	kept, err := os.ReadFile(filepath.Join(h.cfg.DataDir, allinone.NATSTokenFile))
	require.NoError(t, err)
	require.Equal(t, strings.TrimSpace(string(kept)), u.User.Username())
	info, err := os.Stat(filepath.Join(h.cfg.DataDir, allinone.NATSTokenFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	u.User = nil
	_, err = nats.Connect(u.String(), nats.MaxReconnects(0))
	require.ErrorContains(t, err, "Authorization Violation")
	js := h.natsClient()
	publishEvent(t, js, "hookstream.events.acme.invoice.paid", "in_1", `{"invoice":"in_1"}`)
}
