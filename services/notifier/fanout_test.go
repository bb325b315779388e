package notifier_test

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/notifier"
	"github.com/hookstream/hookstream/shared/contract"
)

// DeliveryID is the webhook-id: derived from the event and the target, so
// that fan-out run twice publishes the same deliveries.
func TestDeliveryID(t *testing.T) {
	t.Parallel()
	id := contract.DeliveryID("evt_1", "cb")
	require.Regexp(t, regexp.MustCompile(`^msg_[0-9a-v]{26}$`), id)
	require.Equal(t, id, contract.DeliveryID("evt_1", "cb"), "deterministic")

	tests := []struct {
		name         string
		givenEventID string
		givenTarget  string
	}{
		{name: "other target", givenEventID: "evt_1", givenTarget: "ep_1"},
		{name: "other event", givenEventID: "evt_2", givenTarget: "cb"},
		{name: "moved separator", givenEventID: "evt_1c", givenTarget: "b"},
		{name: "empty target", givenEventID: "evt_1", givenTarget: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.NotEqual(t, id, contract.DeliveryID(tt.givenEventID, tt.givenTarget))
		})
	}
}

// The same event published twice (same Nats-Msg-Id) is delivered once.
func TestDeliverDuplicateEventOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, notifier.Config{})
	rcv := newReceiver(t, nil)

	b.publishJobEvent(t, "acme", "job_x", rcv.URL)
	b.publishJobEvent(t, "acme", "job_x", rcv.URL)
	first := b.publishEvent(t, "acme", "job.succeeded", "evt_in_1", []byte(`{"invoice":"in_1"}`), contract.HeaderCallbackURL, rcv.URL)
	again := b.publishEvent(t, "acme", "job.succeeded", "evt_in_1", []byte(`{"invoice":"in_1"}`), contract.HeaderCallbackURL, rcv.URL)
	require.False(t, first.Duplicate)
	require.True(t, again.Duplicate)

	b.waitLog(t, "acme", "job_x", contract.DeliverySucceeded)
	b.waitLog(t, "acme", "evt_in_1", contract.DeliverySucceeded)
	b.waitIdle(t)
	got := rcv.all()
	require.Len(t, got, 2, "one webhook per event")
	require.NotEqual(t, got[0].id(), got[1].id())
}

// De-duplication is stream-wide, across tenants: a publisher scopes its id
// to its tenant with a "<tenant>:" prefix (as POST /v1/events does), which
// the event's id leaves out. A bare id is a duplicate of another tenant's.
func TestEventIDsScopedToTheirTenant(t *testing.T) {
	t.Parallel()
	// Queued, not direct: the deliveries stream de-duplicates by delivery
	// id, so the two tenants' deliveries must have ids of their own.
	b := setup(t, notifier.Config{DirectAttempts: -1})
	rcv := newReceiver(t, nil)
	for _, tenant := range []string{"acme", "globex"} {
		ack := b.publishEvent(t, tenant, "job.succeeded", tenant+":in_1", []byte(`{}`), contract.HeaderCallbackURL, rcv.URL)
		require.False(t, ack.Duplicate, tenant)
	}
	b.publishEvent(t, "acme", "job.succeeded", "in_2", []byte(`{}`), contract.HeaderCallbackURL, rcv.URL)
	shadowed := b.publishEvent(t, "globex", "job.succeeded", "in_2", []byte(`{}`), contract.HeaderCallbackURL, rcv.URL)
	require.True(t, shadowed.Duplicate, "a bare id is de-duplicated across tenants")
	for _, tenant := range []string{"acme", "globex"} {
		rec := b.waitLog(t, tenant, "in_1", contract.DeliverySucceeded)
		require.Equal(t, "in_1", rec.EventID)
	}
	b.waitLog(t, "acme", "in_2", contract.DeliverySucceeded)
	b.waitIdle(t)
	got := rcv.all()
	require.Len(t, got, 3)
	ids := map[string]bool{}
	for _, w := range got {
		ids[w.id()] = true
	}
	require.Len(t, ids, 3, "a webhook-id of its own for each tenant's event")
}

// An event from an internal service becomes a webhook whose data is the
// published JSON, whatever it is.
func TestDeliverInternalEvent(t *testing.T) {
	t.Parallel()
	b := setup(t, notifier.Config{})
	rcv := newReceiver(t, nil)
	b.publishEvent(t, "acme", "job.succeeded", "evt_in_1", []byte(`["any", "json", 1]`),
		contract.HeaderCallbackURL, rcv.URL, contract.HeaderEventTime, "2026-11-23T12:00:01.5Z")
	got := rcv.wait(t, 1)[0]
	require.Equal(t, "job.succeeded", got.event.Type)
	require.JSONEq(t, `["any","json",1]`, string(got.event.Data))
	require.Equal(t, "2026-11-23T12:00:01.5Z", got.event.Timestamp.Format("2006-01-02T15:04:05.999Z07:00"))
	// The target key of a callback URL is part of every webhook-id sent so far:
	// changing it would change the id of a delivery replayed after an upgrade.
	require.Equal(t, contract.DeliveryID("evt_in_1", "cb"), got.id(), "the callback URL is target cb")
	rec := b.waitLog(t, "acme", "evt_in_1", contract.DeliverySucceeded)
	require.Equal(t, "evt_in_1", rec.EventID)
	require.Empty(t, rec.JobID)
}

// An internal publisher's event whose data is not UTF-8 is delivered with
// U+FFFD for the stray bytes: its webhook is JSON text any receiver can
// parse (it went out byte for byte).
func TestDeliverEventNotUTF8AsValidText(t *testing.T) {
	t.Parallel()
	b := setup(t, notifier.Config{})
	rcv := newReceiver(t, nil)
	b.publishEvent(t, "acme", "job.succeeded", "evt_latin1", []byte("{\"city\":\"Z\xfcrich\"}"), contract.HeaderCallbackURL, rcv.URL)
	got := rcv.wait(t, 1)[0]
	require.True(t, utf8.Valid(got.body), "%q", got.body)
	require.JSONEq(t, `{"city":"Z\ufffdrich"}`, string(got.event.Data))
}

// Messages that can never be delivered do not hold up the ones behind
// them: malformed events are dead-lettered with the reason, malformed
// deliveries dropped.
func TestDeliverDropsMalformedMessages(t *testing.T) {
	t.Parallel()
	b := setup(t, notifier.Config{Concurrency: 1})
	rcv := newReceiver(t, nil)
	publish := func(subject string, data []byte) {
		t.Helper()
		msg := nats.NewMsg(subject)
		msg.Data = data
		msg.Header.Set(contract.HeaderCallbackURL, rcv.URL)
		_, err := b.js.PublishMsg(t.Context(), msg)
		require.NoError(t, err)
	}
	delivery, err := json.Marshal(contract.Delivery{ID: "msg_nourl", Tenant: "acme", EventID: "evt_1", Body: json.RawMessage(`{}`)})
	require.NoError(t, err)

	badEvents := []struct {
		subject string
		data    []byte
		reason  string
	}{
		{subject: contract.EventSubject("acme", "invoice.paid"), data: []byte(`{"not json`), reason: "not a JSON value"},
		{subject: contract.EventSubject("acme", "invoice.paid"), data: nil, reason: "not a JSON value"},
		{subject: contract.SubjectEvents + ".acme", data: []byte(`{}`), reason: "subject"},
	}
	for _, e := range badEvents {
		publish(e.subject, e.data)
	}
	publish(contract.DeliverySubject("acme", "cb"), []byte(`{"id":`))
	publish(contract.DeliverySubject("acme", "cb"), delivery)
	b.publishJobEvent(t, "acme", "job_x", rcv.URL)

	b.waitLog(t, "acme", "job_x", contract.DeliverySucceeded)
	b.waitIdle(t)
	require.Len(t, rcv.all(), 1, "only the good event is delivered")

	dead, err := b.js.Stream(t.Context(), contract.StreamDeadLetters)
	require.NoError(t, err)
	info, err := dead.Info(t.Context())
	require.NoError(t, err)
	require.EqualValues(t, len(badEvents), info.State.Msgs)
	got := map[string][]string{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		msg, err := dead.GetMsg(t.Context(), seq)
		require.NoError(t, err)
		key := msg.Header.Get(contract.HeaderOriginalSubject) + " " + string(msg.Data)
		got[key] = append(got[key], msg.Header.Get(contract.HeaderDeadReason))
	}
	for _, e := range badEvents {
		key := e.subject + " " + string(e.data)
		require.NotEmpty(t, got[key], "dead letter of %s", key)
		require.Contains(t, got[key][0], e.reason)
		got[key] = got[key][1:]
	}
}

// An event with one target is delivered by fan-out itself, with no delivery
// message, unless direct attempts are off; a failed direct attempt is
// retried from the queue, with the same webhook-id.
func TestDeliverSingleTargetDirectly(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name                 string
		givenDirectAttempts  int
		wantDeliveryMessages bool
	}{
		{"direct", 0, false},
		{"queued", -1, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, notifier.Config{DirectAttempts: tt.givenDirectAttempts, InProcessMax: time.Nanosecond, Schedule: []time.Duration{time.Second}})
			rcv := newReceiver(t, statuses(http.StatusOK))
			flaky := newReceiver(t, statuses(http.StatusInternalServerError, http.StatusOK))
			b.publishJobEvent(t, "acme", "job_ok", rcv.URL)
			b.waitLog(t, "acme", "job_ok", contract.DeliverySucceeded)
			stream, err := b.js.Stream(context.Background(), contract.StreamDeliveries)
			require.NoError(t, err)
			info, err := stream.Info(context.Background())
			require.NoError(t, err)
			require.Equal(t, tt.wantDeliveryMessages, info.State.LastSeq > 0, "delivery messages written")

			b.publishJobEvent(t, "acme", "job_flaky", flaky.URL)
			rec := b.waitLog(t, "acme", "job_flaky", contract.DeliverySucceeded)
			require.Equal(t, []int{500, 200}, attemptCodes(rec))
			got := flaky.all()
			require.Equal(t, got[0].id(), got[1].id())
			b.waitIdle(t)
		})
	}
}

// Hookstream-Callback-Url is a job's own callback, honoured on job events
// alone: on another event it would have any URL sent a webhook signed with
// the tenant's secret for job callbacks, by whoever may publish the
// tenant's events (from the diff review).
func TestCallbackURLOnlyOnJobEvents(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, nil)
	ops := newReceiver(t, nil)
	b := setup(t, notifier.Config{}, newEndpoint(t, "acme", "ep_all", ops.URL, "invoice.*"))
	b.publishEvent(t, "acme", "invoice.paid", "evt_forged", []byte(`{}`), contract.HeaderCallbackURL, rcv.URL)
	ops.wait(t, 1)
	b.waitIdle(t)
	require.Empty(t, rcv.all(), "the URL of a header on an invoice event is not a target")
}
