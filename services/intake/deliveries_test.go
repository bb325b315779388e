package intake_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/intake"
	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
)

// Following "next" from page to page lists every delivery once, newest
// first, also when several share a creation time (the clock's resolution
// may make them equal) across a page's end.
func TestDeliveryPagesListEachDeliveryOnce(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	kv, err := b.js.KeyValue(ctx, contract.BucketDeliveries)
	require.NoError(t, err)
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	// Seven deliveries: four created at once, then three a second apart.
	var want []string
	for i := range 7 {
		at := t0.Add(time.Duration(max(0, i-3)) * time.Second)
		rec := contract.DeliveryRecord{
			ID: fmt.Sprintf("msg_%02d", i), EventID: "evt_1", EventType: "invoice.paid", EndpointID: "ep_1",
			URL: "https://example.com/hook", Status: contract.DeliverySucceeded, CreatedAt: at, UpdatedAt: at,
		}
		data, err := json.Marshal(rec)
		require.NoError(t, err)
		_, err = kv.Put(ctx, "acme.evt_1."+rec.ID, data)
		require.NoError(t, err)
		want = append([]string{rec.ID}, want...) // newest first; ids order equal times
	}
	_, err = kv.Put(ctx, "other.evt_2.msg_99", []byte(`{"id":"msg_99","created_at":"2026-12-01T12:00:00Z"}`))
	require.NoError(t, err)

	for _, limit := range []int{1, 2, 3, 7} {
		var got []string
		query := url.Values{"limit": {fmt.Sprint(limit)}}
		for pages := 0; ; pages++ {
			require.Less(t, pages, 8, "limit %d: more pages than deliveries", limit)
			r := b.do(t, http.MethodGet, "/v1/deliveries?"+query.Encode(), keyAcme, "", "")
			require.Equal(t, http.StatusOK, r.status, r.body)
			for _, d := range r.body["data"].([]any) {
				got = append(got, d.(map[string]any)["id"].(string))
			}
			next, more := r.body["next"].(string)
			if !more {
				break
			}
			query.Set("before", next)
		}
		require.Equal(t, want, got, "limit %d", limit)
	}

	// A plain time as before= still pages by time alone.
	r := b.do(t, http.MethodGet, "/v1/deliveries?before="+url.QueryEscape(t0.Add(time.Second).Format(time.RFC3339)), keyAcme, "", "")
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Len(t, r.body["data"], 4)
	r = b.do(t, http.MethodGet, "/v1/deliveries?before=yesterday", keyAcme, "", "")
	require.Equal(t, http.StatusBadRequest, r.status, r.body)
}

// A delivery still being retried is not retried by hand: its scheduled
// retry would follow with the attempts from before. Nor is one to a
// disabled or deleted endpoint.
func TestRetryOfAPendingDeliveryAnswers409(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	kv, err := b.js.KeyValue(ctx, contract.BucketDeliveries)
	require.NoError(t, err)
	ep := b.createEndpoint(t, keyAcme, `{"url":"https://example.com/hook"}`)
	rec := contract.DeliveryRecord{ID: "msg_pending", EventID: "evt_1", EventType: "invoice.paid", EndpointID: ep,
		URL: "https://example.com/hook", Body: json.RawMessage(`{}`), CreatedAt: time.Now().UTC(), UpdatedAt: time.Now().UTC()}
	retry := func(status string, next time.Duration, key string) reply {
		rec.Status, rec.NextAttemptAt = status, nil
		if next != 0 {
			at := time.Now().Add(next).UTC()
			rec.NextAttemptAt = &at
		}
		data, err := json.Marshal(rec)
		require.NoError(t, err)
		_, err = kv.Put(ctx, "acme.evt_1."+rec.ID, data)
		require.NoError(t, err)
		return b.do(t, http.MethodPost, "/v1/deliveries/msg_pending/retry", key, "", "")
	}

	r := retry(contract.DeliveryPending, time.Hour, keyAcme)
	require.Equal(t, http.StatusConflict, r.status, r.body)
	require.Contains(t, r.body["detail"], "still being retried")
	r = retry(contract.DeliveryPending, time.Hour, keyOther)
	require.Equal(t, http.StatusNotFound, r.status, r.body)
	// A pending record whose retry is long overdue is stale (its last
	// write was lost): it may be retried.
	r = retry(contract.DeliveryPending, -2*time.Hour, keyAcme)
	require.Equal(t, http.StatusAccepted, r.status, r.body)
	r = retry(contract.DeliveryFailed, 0, keyAcme)
	require.Equal(t, http.StatusAccepted, r.status, r.body)

	// A disabled or deleted endpoint's delivery could only fail at once.
	r = b.do(t, http.MethodPatch, "/v1/endpoints/"+ep, keyAcme, "application/json", `{"enabled":false}`)
	require.Equal(t, http.StatusOK, r.status, r.body)
	r = retry(contract.DeliveryFailed, 0, keyAcme)
	require.Equal(t, http.StatusConflict, r.status, r.body)
	require.Contains(t, r.body["detail"], "disabled")
	r = b.do(t, http.MethodDelete, "/v1/endpoints/"+ep, keyAcme, "", "")
	require.Equal(t, http.StatusNoContent, r.status, r.body)
	r = retry(contract.DeliveryFailed, 0, keyAcme)
	require.Equal(t, http.StatusConflict, r.status, r.body)
	require.Contains(t, r.body["detail"], "deleted")
}

// A delivery is read by its id, with its webhook's body, by its own tenant
// alone; the list filters by event id and event type.
func TestGetADeliveryAndFilterByEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	kv, err := b.js.KeyValue(ctx, contract.BucketDeliveries)
	require.NoError(t, err)
	now := time.Now().UTC()
	for i, ev := range []struct{ id, typ string }{{"evt_1", "invoice.paid"}, {"evt_2", "invoice.paid"}, {"evt_3", "user.created"}} {
		rec := contract.DeliveryRecord{
			ID: fmt.Sprintf("msg_%d", i+1), EventID: ev.id, EventType: ev.typ, EndpointID: "ep_1",
			URL: "https://example.com/hook", Status: contract.DeliverySucceeded, Body: json.RawMessage(`{"type":"` + ev.typ + `","n":` + fmt.Sprint(i+1) + `}`),
			Attempts: []contract.Attempt{{At: now, StatusCode: 200}}, CreatedAt: now, UpdatedAt: now,
		}
		data, err := json.Marshal(rec)
		require.NoError(t, err)
		_, err = kv.Put(ctx, "acme."+ev.id+"."+rec.ID, data)
		require.NoError(t, err)
	}

	r := b.do(t, http.MethodGet, "/v1/deliveries/msg_2", keyAcme, "", "")
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Equal(t, "evt_2", r.body["event_id"])
	require.Equal(t, map[string]any{"type": "invoice.paid", "n": float64(2)}, r.body["body"])
	require.Len(t, r.body["attempts"], 1)
	for _, key := range []string{keyOther} {
		r = b.do(t, http.MethodGet, "/v1/deliveries/msg_2", key, "", "")
		require.Equal(t, http.StatusNotFound, r.status, r.body)
	}
	r = b.do(t, http.MethodGet, "/v1/deliveries/msg_9", keyAcme, "", "")
	require.Equal(t, http.StatusNotFound, r.status, r.body)
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))

	ids := func(query string) []string {
		r := b.do(t, http.MethodGet, "/v1/deliveries?"+query, keyAcme, "", "")
		require.Equal(t, http.StatusOK, r.status, r.body)
		var got []string
		for _, d := range r.body["data"].([]any) {
			require.NotContains(t, d, "body", "the list leaves bodies out")
			got = append(got, d.(map[string]any)["id"].(string))
		}
		return got
	}
	require.Equal(t, []string{"msg_3"}, ids("event_id=evt_3"))
	require.ElementsMatch(t, []string{"msg_1", "msg_2"}, ids("event_type=invoice.paid"))
	require.Empty(t, ids("event_type=invoice.paid&event_id=evt_3"))
}

// An Idempotency-Key makes a create of an endpoint, an event without an
// id, and a retry by hand each happen once however often they are sent
// (found by review: a create sent again made a second endpoint, and so a
// second webhook for every event). The same key with another request is
// 422, as for jobs.
func TestIdempotencyKeyOnEndpointsEventsAndRetries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	create := func(body, key string) reply {
		return b.do(t, http.MethodPost, "/v1/endpoints", keyAcme, "application/json", body, "Idempotency-Key", key)
	}
	first := create(`{"url":"https://example.com/hook","event_types":["a.b"],"description":"é"}`, "ep-1")
	require.Equal(t, http.StatusCreated, first.status, first.body)
	again := create(`{"description":"\u00e9","event_types":["a.b"],"url":"https://example.com/hook"}`, "ep-1")
	require.Equal(t, http.StatusCreated, again.status, again.body)
	require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
	require.Equal(t, first.body["id"], again.body["id"])
	require.Equal(t, first.body["secret"], again.body["secret"])
	require.NotContains(t, again.body, "request_hash")
	other := create(`{"url":"https://example.com/other"}`, "ep-1")
	require.Equal(t, http.StatusUnprocessableEntity, other.status, other.body)
	list := b.do(t, http.MethodGet, "/v1/endpoints", keyAcme, "", "")
	require.Len(t, list.body["data"], 1, "one endpoint")
	beta := b.do(t, http.MethodPost, "/v1/endpoints", keyOther, "application/json", `{"url":"https://example.com/hook","event_types":["a.b"],"description":"é"}`, "Idempotency-Key", "ep-1")
	require.Equal(t, http.StatusCreated, beta.status, beta.body)
	require.NotEqual(t, first.body["id"], beta.body["id"], "another tenant's key")
	require.Empty(t, beta.header.Get("Idempotent-Replayed"))
	// Deleted, its key makes no endpoint of the same id, which would take
	// the deleted one's deliveries (found by review), nor another.
	require.Equal(t, http.StatusNoContent, b.do(t, http.MethodDelete, "/v1/endpoints/"+first.body["id"].(string), keyAcme, "", "").status)
	gone := create(`{"url":"https://example.com/hook","event_types":["a.b"],"description":"é"}`, "ep-1")
	require.Equal(t, http.StatusConflict, gone.status, gone.body)
	require.Contains(t, gone.body["detail"], "was deleted")
	fresh := create(`{"url":"https://example.com/hook"}`, "ep-2")
	require.Equal(t, http.StatusCreated, fresh.status, fresh.body)
	require.NotEqual(t, first.body["id"], fresh.body["id"])

	event := func(key string) reply {
		return b.do(t, http.MethodPost, "/v1/events", keyAcme, "application/json", `{"type":"a.b","data":{"n":1}}`, "Idempotency-Key", key)
	}
	e1, e2 := event("ev-1"), event("ev-1")
	require.Equal(t, http.StatusAccepted, e1.status, e1.body)
	require.Equal(t, e1.body["id"], e2.body["id"])
	require.Equal(t, "true", e2.header.Get("Idempotent-Replayed"))
	require.NotEqual(t, e1.body["id"], event("ev-2").body["id"])

	kv, err := b.js.KeyValue(t.Context(), contract.BucketDeliveries)
	require.NoError(t, err)
	now := time.Now().UTC()
	rec := contract.DeliveryRecord{ID: "msg_failed", EventID: "evt_1", EventType: "a.b", URL: "https://example.com/hook",
		Status: contract.DeliveryFailed, Body: json.RawMessage(`{}`), Attempts: []contract.Attempt{{At: now, StatusCode: 500}}, CreatedAt: now, UpdatedAt: now}
	data, err := json.Marshal(rec)
	require.NoError(t, err)
	_, err = kv.Put(t.Context(), "acme.evt_1."+rec.ID, data)
	require.NoError(t, err)
	deliveries, err := b.js.Stream(t.Context(), contract.StreamDeliveries)
	require.NoError(t, err)
	before, err := deliveries.Info(t.Context())
	require.NoError(t, err)
	for range 2 {
		r := b.do(t, http.MethodPost, "/v1/deliveries/msg_failed/retry", keyAcme, "", "", "Idempotency-Key", "retry-1")
		require.Equal(t, http.StatusAccepted, r.status, r.body)
		// The record written meanwhile (its attempt recorded) made a
		// second retry without the key.
		rec.UpdatedAt = rec.UpdatedAt.Add(time.Second)
		data, err := json.Marshal(rec)
		require.NoError(t, err)
		_, err = kv.Put(t.Context(), "acme.evt_1."+rec.ID, data)
		require.NoError(t, err)
	}
	after, err := deliveries.Info(t.Context())
	require.NoError(t, err)
	require.Equal(t, before.State.LastSeq+1, after.State.LastSeq, "one retry")
}

// An endpoint key's record left without its Created mark (the process
// stopped, or its last write failed, after the endpoint was made) is not
// taken for a failed create: the retry finds the endpoint instead of making
// a second one. A keyed create refused leaves nothing in the tenants bucket
// (a delete marker would stay for good). Both found by review.
func TestEndpointKeyLeftUnmarkedOrRefused(t *testing.T) {
	t.Parallel()
	b := setupTopology(t, bus.Topology{}, func(c *intake.Config) { c.MaxEndpointsPerTenant = 1 })
	body := `{"url":"https://example.com/hook"}`
	first := b.do(t, http.MethodPost, "/v1/endpoints", keyAcme, "application/json", body, "Idempotency-Key", "k1")
	require.Equal(t, http.StatusCreated, first.status, first.body)
	tenants, err := b.js.KeyValue(t.Context(), contract.BucketTenants)
	require.NoError(t, err)
	var key string
	require.NoError(t, bus.ReadAll(t.Context(), tenants, contract.EndpointKeyKey("acme", "*"), func(e jetstream.KeyValueEntry) error {
		key = e.Key()
		return nil
	}))
	entry, err := tenants.Get(t.Context(), key)
	require.NoError(t, err)
	var made map[string]any
	require.NoError(t, json.Unmarshal(entry.Value(), &made))
	delete(made, "created")
	made["created_at"] = time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)
	data, err := json.Marshal(made)
	require.NoError(t, err)
	_, err = tenants.Put(t.Context(), key, data)
	require.NoError(t, err)
	again := b.do(t, http.MethodPost, "/v1/endpoints", keyAcme, "application/json", body, "Idempotency-Key", "k1")
	require.Equal(t, http.StatusCreated, again.status, again.body)
	require.Equal(t, first.body["id"], again.body["id"])
	require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))

	stream, err := b.js.Stream(t.Context(), "KV_"+contract.BucketTenants)
	require.NoError(t, err)
	before, err := stream.Info(t.Context())
	require.NoError(t, err)
	for i := range 5 { // at the tenant's limit: 409 each
		r := b.do(t, http.MethodPost, "/v1/endpoints", keyAcme, "application/json", body, "Idempotency-Key", fmt.Sprint("refused-", i))
		require.Equal(t, http.StatusConflict, r.status, r.body)
	}
	after, err := stream.Info(t.Context())
	require.NoError(t, err)
	require.Equal(t, before.State.Msgs, after.State.Msgs, "what the refused creates wrote is gone, markers included")
}

// The delivery API reads records of both key layouts: those written since
// keys name their target ("<tenant>.<target>.<owner>.<id>"), which the
// endpoint and event filters find in nats-server, and those written before
// ("<tenant>.<owner>.<id>"). A record written again under its new key is
// listed once, as written last; a retry of a record kept under its old key
// is written under its new one.
func TestDeliveriesOfBothKeyLayouts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ep := b.createEndpoint(t, keyAcme, `{"url":"https://example.com/hook"}`)
	now := time.Now().UTC()
	put := func(key string, rec contract.DeliveryRecord) {
		rec.EventType, rec.URL, rec.Body = "invoice.paid", "https://example.com/hook", json.RawMessage(`{}`)
		rec.CreatedAt, rec.UpdatedAt = now, now
		b.putDeliveryRecord(t, key, rec)
	}
	put("acme.evt_1.msg_old", contract.DeliveryRecord{ID: "msg_old", EventID: "evt_1", EndpointID: ep, Status: contract.DeliveryFailed})
	put("acme."+ep+".evt_2.msg_new", contract.DeliveryRecord{ID: "msg_new", EventID: "evt_2", EndpointID: ep, Status: contract.DeliverySucceeded})
	put("acme.ep_other.evt_3.msg_other", contract.DeliveryRecord{ID: "msg_other", EventID: "evt_3", EndpointID: "ep_other", Status: contract.DeliveryFailed})
	put("acme.cb.job_x.msg_job", contract.DeliveryRecord{ID: "msg_job", EventID: "evt_x_succeeded", JobID: "job_x", Status: contract.DeliverySucceeded})
	put("acme.evt_4.msg_moved", contract.DeliveryRecord{ID: "msg_moved", EventID: "evt_4", EndpointID: ep, Status: contract.DeliveryPending})
	put("acme."+ep+".evt_4.msg_moved", contract.DeliveryRecord{ID: "msg_moved", EventID: "evt_4", EndpointID: ep, Status: contract.DeliverySucceeded})
	// No record is written so, but one whose fields disagree with its key
	// shows that the filters are nats-server's, by key, not read whole
	// and matched by field.
	put("acme.ep_other.evt_9.msg_key", contract.DeliveryRecord{ID: "msg_key", EventID: "evt_4", EndpointID: ep, Status: contract.DeliverySucceeded})

	list := func(query string) map[string]any {
		r := b.do(t, http.MethodGet, "/v1/deliveries?"+query, keyAcme, "", "")
		require.Equal(t, http.StatusOK, r.status, r.body)
		got := map[string]any{}
		for _, d := range r.body["data"].([]any) {
			id := d.(map[string]any)["id"].(string)
			require.NotContains(t, got, id, "listed twice")
			got[id] = d.(map[string]any)["status"]
		}
		return got
	}
	require.Equal(t, map[string]any{"msg_old": "failed", "msg_new": "succeeded", "msg_moved": "succeeded"}, list("endpoint="+ep))
	require.Equal(t, map[string]any{"msg_old": "failed"}, list("endpoint="+ep+"&status=failed"))
	require.Empty(t, list("endpoint=ep_none"))
	require.Empty(t, list("endpoint=*"))
	require.Equal(t, map[string]any{"msg_job": "succeeded"}, list("event_id=evt_x_succeeded"))
	require.Equal(t, map[string]any{"msg_moved": "succeeded"}, list("event_id=evt_4"))
	require.Len(t, list(""), 6)
	r := b.do(t, http.MethodGet, "/v1/deliveries/msg_moved", keyAcme, "", "")
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Equal(t, "succeeded", r.body["status"])
	for _, id := range []string{"msg_old", "msg_new", "msg_job"} {
		r := b.do(t, http.MethodGet, "/v1/deliveries/"+id, keyAcme, "", "")
		require.Equal(t, http.StatusOK, r.status, r.body)
	}

	sub, err := b.js.Conn().SubscribeSync(contract.DeliverySubject("acme", ">"))
	require.NoError(t, err)
	for id, key := range map[string]string{"msg_old": "acme." + ep + ".evt_1.msg_old", "msg_new": "acme." + ep + ".evt_2.msg_new"} {
		r := b.do(t, http.MethodPost, "/v1/deliveries/"+id+"/retry", keyAcme, "", "")
		require.Equal(t, http.StatusAccepted, r.status, r.body)
		msg, err := sub.NextMsg(5 * time.Second)
		require.NoError(t, err)
		var d contract.Delivery
		require.NoError(t, json.Unmarshal(msg.Data, &d))
		require.Equal(t, key, d.LogKey(), id)
	}
}
