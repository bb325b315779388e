package intake

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/jobevents"
)

// publishEventRequest is the body of POST /v1/events.
type publishEventRequest struct {
	ID   string          `json:"id"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

func (s *Service) validateEvent(req *publishEventRequest) error {
	switch {
	case !contract.ValidType(req.Type):
		return invalid(`field "type" is required: 1-128 of a-z A-Z 0-9 - _ . (e.g. invoice.paid)`)
	case strings.HasPrefix(req.Type, "job.") || strings.HasPrefix(req.Type, "endpoint.") ||
		strings.HasPrefix(req.Type, "delivery.") || req.Type == contract.EventPing:
		return invalid(fmt.Sprintf("event type %q is reserved for hookstream", req.Type))
	case len(req.Data) == 0:
		return invalid(`field "data" is required (any JSON value)`)
	case req.ID != "" && !contract.ValidTenant(req.ID):
		return invalid(`field "id": 1-64 of a-z A-Z 0-9 - _`)
	case strings.HasPrefix(req.ID, "evt_") || jobEventID(req.ID):
		return invalid(`field "id": ids starting evt_, and evt-<id>_<job status>, are hookstream's; choose another`)
	}
	return nil
}

// jobEventID tells whether id has the form of the event id of a job whose id
// does not start with job_ (jobevents.EventID): evt-<job id>_<status>, or
// evt-<job id>_running_<attempt>. A tenant's event with such an id would
// share that job event's webhook-ids. Other evt- ids are the tenant's.
func jobEventID(id string) bool {
	rest, ok := strings.CutPrefix(id, "evt-")
	if !ok {
		return false
	}
	if i := strings.LastIndexByte(rest, '_'); i > 0 && strings.Trim(rest[i+1:], "0123456789") == "" {
		rest = rest[:i] // running_<attempt>
	}
	for _, status := range []string{contract.StatusSucceeded, contract.StatusFailed, contract.StatusCanceled, contract.StatusRunning} {
		if strings.HasSuffix(rest, "_"+status) {
			return true
		}
	}
	return false
}

// publishEvent answers POST /v1/events: the event goes the way internal
// publishers' events go, and 202 follows JetStream's acknowledgement. The
// same id within 10 minutes is de-duplicated.
func (s *Service) publishEvent(c *gin.Context) {
	var req publishEventRequest
	if err := readJSON(c, s.cfg.MaxBodyBytes, s.cfg.MaxJSONDepth, &req); err != nil {
		s.respondError(c, err)
		return
	}
	if err := s.validateEvent(&req); err != nil {
		s.respondError(c, err)
		return
	}
	if most := s.maxPayload; most > 0 && eventBodySize(req.Data, most-jobevents.Room) > most-jobevents.Room {
		// Its webhook, and the delivery that carries it, would not fit in a
		// NATS message: the notifier could only dead-letter it.
		s.respondError(c, &apiError{status: http.StatusRequestEntityTooLarge, slug: "too-large",
			detail: fmt.Sprintf("the event's webhook would be larger than the NATS server takes in a message (%d bytes, with %d for its delivery's other fields)", most, jobevents.Room)})
		return
	}
	idemKey, err := idempotencyKey(c)
	if err != nil {
		s.respondError(c, err)
		return
	}
	switch {
	case req.ID != "": // the event's own id is its idempotency key
	case idemKey != "":
		req.ID = idempotentID("key-", tenantOf(c), idemKey)
	default:
		req.ID = newID("evt_")
	}
	now := s.now().UTC()
	// De-duplication is stream-wide: the id is scoped to the tenant so that
	// another tenant's id can never shadow this event.
	msg := bus.EventMsg(tenantOf(c), req.Type, tenantOf(c)+":"+req.ID, now, req.Data)
	ctx, cancel := s.publishContext(c)
	defer cancel()
	ack, err := s.pub.PublishMsg(ctx, msg)
	if err != nil {
		s.respondError(c, fmt.Errorf("publish event %s: %w", req.ID, err))
		return
	}
	if ack.Duplicate {
		first, err := s.sameEvent(ctx, ack.Sequence, msg)
		if err != nil {
			s.respondError(c, err)
			return
		}
		now = cmp.Or(first, now)
		c.Header("Idempotent-Replayed", "true")
	}
	c.JSON(http.StatusAccepted, gin.H{"id": req.ID, "type": req.Type, "created_at": now})
}

// sameEvent looks at the event stored with the id of msg, a duplicate, at
// seq: 422 when it is another event (type or data), else the time it was
// published. The stream keeps an event 10 minutes, as long as the
// de-duplication of its id, unless it is over a sixteenth of its size limit
// (bus.TrimTarget's Keep): an event no longer there cannot be compared, and
// its time is zero. Nor can one whose read fails (a NATS user not allowed
// STREAM.MSG.GET on the events stream): the duplicate is answered as the
// replay it most likely is, never 503, which the client would retry until
// the window is over and the event stored twice.
func (s *Service) sameEvent(ctx context.Context, seq uint64, msg *nats.Msg) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second) // a read NATS does not allow is never answered
	defer cancel()
	first, err := s.eventsStream.GetMsg(ctx, seq)
	if err != nil {
		if !errors.Is(err, jetstream.ErrMsgNotFound) {
			s.logger.Warn("read the event first published with a reused id; answered as a replay", "event_id", msg.Header.Get(contract.HeaderMsgID), "error", err)
		}
		return time.Time{}, nil
	}
	if first.Header.Get(contract.HeaderMsgID) != msg.Header.Get(contract.HeaderMsgID) {
		return time.Time{}, nil // not the message of this id: it is gone
	}
	if first.Subject != msg.Subject || !sameJSON(first.Data, msg.Data) {
		return time.Time{}, invalid(`field "id" was used for another event in the last 10 minutes; events with one id are de-duplicated, so this one would not be sent`)
	}
	at, _ := time.Parse(time.RFC3339Nano, first.Header.Get(contract.HeaderEventTime))
	return at, nil
}

// sameJSON tells whether two JSON texts hold the same value: the same
// members in any order, numbers equal as numbers (exactly, however large:
// 1.0 is 1, 2^53+1 is not 2^53), strings however escaped.
func sameJSON(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	va, errA := exactValue(a)
	vb, errB := exactValue(b)
	if errA != nil || errB != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// exactValue decodes data with each number as an exactNumber, so that
// values compare as JSON values.
func exactValue(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return exactNumbers(v), nil
}

// exactNumber is a JSON number written one way: its sign, its significant
// digits and the power of ten they are multiplied by ("-25e-1" for -2.50),
// so that equal numbers are equal strings, in time and room linear in the
// number's text (a big.Rat would write 1e999999 out in a million digits).
// It is of its own type, so that it never equals the string of its digits.
type exactNumber string

func exactNumbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		return canonicalNumber(string(v))
	case map[string]any:
		for k, x := range v {
			v[k] = exactNumbers(x)
		}
	case []any:
		for i, x := range v {
			v[i] = exactNumbers(x)
		}
	}
	return v
}

// canonicalNumber writes a JSON number as an exactNumber. One whose
// exponent is beyond ±10^18 is kept as written (1e99999999999999999999 is
// then not 10e99999999999999999998): its exponent is not parsed as a
// big.Int, whose cost grows with the square of its digits.
func canonicalNumber(n string) exactNumber {
	text := n
	sign := ""
	if rest, ok := strings.CutPrefix(text, "-"); ok {
		sign, text = "-", rest
	}
	mantissa, exponent, _ := strings.Cut(strings.ToLower(text), "e")
	whole, frac, _ := strings.Cut(mantissa, ".")
	digits := strings.TrimLeft(whole+frac, "0")
	trimmed := strings.TrimRight(digits, "0")
	if trimmed == "" {
		return "0" // -0, 0.0 and 0e99 are 0
	}
	exp := int64(0)
	if exponent != "" {
		e, err := strconv.ParseInt(exponent, 10, 64)
		if err != nil || e > 1e18 || e < -1e18 {
			return exactNumber("as written: " + n)
		}
		exp = e
	}
	exp += int64(len(digits) - len(trimmed) - len(frac)) // |each| ≤ the text's length
	return exactNumber(sign + trimmed + "e" + strconv.FormatInt(exp, 10))
}

// eventBodySize is what an event's data takes in its webhook's body, which
// encoding/json writes with each <, > and & escaped; its plain size while
// even 6 bytes a byte stays within room (no scan for the common event).
func eventBodySize(data []byte, room int64) int64 {
	if 6*int64(len(data)) <= room {
		return int64(len(data))
	}
	return int64(rawEncodedLen(data))
}

// listEventTypes answers GET /v1/event-types: the types this tenant has
// published, each with an example payload.
func (s *Service) listEventTypes(c *gin.Context) {
	out := []json.RawMessage{}
	err := bus.ReadAll(c.Request.Context(), s.tenants, tenantOf(c)+".eventtypes.>", func(e jetstream.KeyValueEntry) error {
		out = append(out, json.RawMessage(e.Value()))
		return nil
	})
	if err != nil {
		s.respondError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"data": out})
}

// testEndpoint answers POST /v1/endpoints/{id}/test: a signed ping to that
// endpoint alone, now.
func (s *Service) testEndpoint(c *gin.Context) {
	tenant := tenantOf(c)
	ep, _, err := s.endpoints.Get(c.Request.Context(), tenant, c.Param("id"))
	if err != nil {
		s.respondError(c, err)
		return
	}
	if !ep.Enabled {
		// Its ping would be dead-lettered unsent, as recover's deliveries.
		s.respondError(c, conflict("the endpoint is disabled: enable it first (PATCH {\"enabled\":true})"))
		return
	}
	now := s.now().UTC()
	eventID := newID("evt_")
	data, _ := json.Marshal(map[string]string{"endpoint_id": ep.ID})
	body, _ := json.Marshal(contract.WebhookBody{Type: contract.EventPing, Timestamp: now, Data: data})
	d := contract.Delivery{
		ID: contract.DeliveryID(eventID, ep.ID), Tenant: tenant, EventID: eventID, EventType: contract.EventPing,
		EndpointID: ep.ID, Body: body, CreatedAt: now,
	}
	ctx, cancel := s.publishContext(c)
	defer cancel()
	if err := bus.PublishJSON(ctx, s.js, contract.DeliverySubject(tenant, ep.ID), d.ID, d); err != nil {
		s.respondError(c, err)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"delivery_id": d.ID, "event_id": eventID})
}
