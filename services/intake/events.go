package intake

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

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
	_, ok := jobevents.JobOf(id)
	return ok && strings.HasPrefix(id, "evt-")
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
// 1.0 is 1, 2^53+1 is not 2^53), strings however escaped. It compares
// their digests (jsonDigest), in time linear in their length and in room
// for a digest per object member: decoding both as trees took some 200
// times their size (a 1 MiB array of zeros, 221 MiB), which a tenant could
// have asked for at every request.
func sameJSON(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	da, okA := jsonDigest(a)
	db, okB := jsonDigest(b)
	return okA && okB && da == db
}

// memberDigestSize is the size of a member's digest: half a SHA-256, in
// half the room (an object of 200,000 members takes one each). Two
// requests whose digests collide are taken for one; only their sender
// could make them, and gain nothing by it.
const memberDigestSize = 16

// maxDigestDepth bounds the nesting jsonDigest follows (intake's requests
// are at most HOOKSTREAM_MAX_JSON_DEPTH deep; a stored event from NATS may
// be deeper), as encoding/json bounds its own.
const maxDigestDepth = 10000

// jsonDigest is a SHA-256 of a canonical form of the JSON value in data,
// and false if data is not one JSON value. Each value is written tagged
// and self-delimited: a string ('s') as its decoded bytes with their
// length, a number ('n') as appendCanonicalNumber writes it, with its length,
// true, false and null as a tag ('t', 'f', 'z'), an array ('a') as its
// elements and ']', and an object ('o') as its member count and its
// members' digests (of the key and the value, memberDigestSize bytes),
// sorted, so that the order of members does not matter. A value
// with an object whose member is given twice is not compared (false): JSON
// readers keep the last, which a digest of the members in any order cannot
// tell.
func jsonDigest(data []byte) (digest [sha256.Size]byte, ok bool) {
	if !json.Valid(data) {
		return digest, false
	}
	d := digester{data: data, seed: maphash.MakeSeed()}
	h := sha256.New()
	if !d.value(h, 0) {
		return digest, false
	}
	h.Sum(digest[:0])
	return digest, true
}

// A digester writes the canonical form of the valid JSON in data,
// from pos on.
type digester struct {
	data     []byte
	pos      int
	tmp, num []byte
	// members holds the digests of the members of the objects being read,
	// the innermost's last.
	members [][memberDigestSize]byte
	// memberBufs[depth] holds the form of a member of an object at depth.
	memberBufs []*byteSink
	// keys holds hashes of the keys of the objects being read, as members
	// does their digests; seed keys them.
	keys []uint64
	seed maphash.Seed
}

// tag is the one byte c, in d's scratch space.
func (d *digester) tag(c byte) []byte {
	d.tmp = append(d.tmp[:0], c)
	return d.tmp
}

// A byteSink keeps what is written to it.
type byteSink struct{ b []byte }

func (s *byteSink) Write(p []byte) (int, error) {
	s.b = append(s.b, p...)
	return len(p), nil
}

func (d *digester) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// value writes the value at pos to w and moves past it.
func (d *digester) value(w io.Writer, depth int) bool {
	d.skipSpace()
	if depth > maxDigestDepth || d.pos >= len(d.data) {
		return false
	}
	switch c := d.data[d.pos]; c {
	case '{':
		d.pos++
		from := len(d.members)  // this object's members' digests: d.members[from:]
		keysFrom := len(d.keys) // their keys' hashes: d.keys[keysFrom:]
		for len(d.memberBufs) <= depth {
			d.memberBufs = append(d.memberBufs, &byteSink{})
		}
		member := d.memberBufs[depth] // a member's form, whose digest is taken
		for {
			d.skipSpace()
			if d.data[d.pos] == '}' {
				d.pos++
				break
			}
			if d.data[d.pos] == ',' {
				d.pos++
				d.skipSpace()
			}
			member.b = member.b[:0]
			d.writeString(member)
			if len(d.keys) == cap(d.keys) { // doubled, as members
				d.keys = slices.Grow(d.keys, max(len(d.keys), 16))
			}
			d.keys = append(d.keys, maphash.Bytes(d.seed, member.b))
			d.skipSpace()
			d.pos++ // the colon
			if !d.value(member, depth+1) {
				return false
			}
			if len(d.members) == cap(d.members) { // doubled: append grows large slices by a quarter, which allocates 5 times their size in all
				d.members = slices.Grow(d.members, max(len(d.members), 16))
			}
			sum := sha256.Sum256(member.b)
			d.members = append(d.members, [memberDigestSize]byte(sum[:memberDigestSize]))
		}
		keys := d.keys[keysFrom:]
		slices.Sort(keys)
		for i := 1; i < len(keys); i++ {
			if keys[i] == keys[i-1] {
				// A member given twice: JSON readers take the last, so
				// {"a":1,"a":2} is not {"a":2,"a":1}; not compared (a hash
				// shared by two keys makes one, rarely, not compared too).
				return false
			}
		}
		d.keys = d.keys[:keysFrom]
		members := d.members[from:]
		slices.SortFunc(members, func(a, b [memberDigestSize]byte) int { return bytes.Compare(a[:], b[:]) })
		d.tmp = binary.AppendUvarint(append(d.tmp[:0], 'o'), uint64(len(members)))
		w.Write(d.tmp)
		for i := range members {
			w.Write(members[i][:])
		}
		d.members = d.members[:from]
	case '[':
		d.pos++
		w.Write(d.tag('a'))
		for {
			d.skipSpace()
			if d.data[d.pos] == ']' {
				d.pos++
				break
			}
			if d.data[d.pos] == ',' {
				d.pos++
			}
			if !d.value(w, depth+1) {
				return false
			}
		}
		w.Write(d.tag(']'))
	case '"':
		d.writeString(w)
	case 't':
		w.Write(d.tag(c))
		d.pos += len("true")
	case 'f':
		w.Write(d.tag(c))
		d.pos += len("false")
	case 'n':
		w.Write(d.tag('z')) // not 'n', the tag of numbers
		d.pos += len("null")
	default:
		start := d.pos
		for d.pos < len(d.data) && strings.IndexByte("+-.eE0123456789", d.data[d.pos]) >= 0 {
			d.pos++
		}
		d.num = appendCanonicalNumber(d.num[:0], d.data[start:d.pos])
		d.tmp = binary.AppendUvarint(append(d.tmp[:0], 'n'), uint64(len(d.num)))
		w.Write(d.tmp)
		w.Write(d.num)
	}
	return true
}

// writeString writes the string at pos, decoded, and moves past it. One
// with escapes, or with bytes that are not UTF-8, is decoded as
// encoding/json decodes it (each such byte one U+FFFD).
func (d *digester) writeString(w io.Writer) {
	start := d.pos
	d.pos++
	plain := true
	for d.data[d.pos] != '"' {
		if d.data[d.pos] == '\\' {
			plain = false
			d.pos++
		}
		d.pos++
	}
	d.pos++
	raw := d.data[start:d.pos]
	text := raw[1 : len(raw)-1]
	if !plain || !utf8.Valid(text) {
		var decoded string
		_ = json.Unmarshal(raw, &decoded) // valid JSON: it decodes
		text = []byte(decoded)
	}
	d.tmp = binary.AppendUvarint(append(d.tmp[:0], 's'), uint64(len(text)))
	w.Write(d.tmp)
	w.Write(text)
}

// Exponents that appendCanonicalNumber reads as numbers: up to 10^18 in
// size, with at most 19 digits once their leading zeros are dropped.
const (
	maxExponentDigits = 18
	maxExponent       = 1e18
)

// appendCanonicalNumber appends the JSON number n written one way: its
// sign, its significant digits and the power of ten they are multiplied by
// ("-25e-1" for -2.50), so that equal numbers are equal bytes, in time
// linear in the number's text (a big.Rat would write 1e999999 out in a
// million digits) and without allocating beyond dst. One whose exponent is beyond
// ±10^18 is kept as written (1e99999999999999999999 is then not
// 10e99999999999999999998): such an exponent is not read as a number,
// whose cost would grow with the square of its digits.
func appendCanonicalNumber(dst, n []byte) []byte {
	text := n
	neg := len(text) > 0 && text[0] == '-'
	if neg {
		text = text[1:]
	}
	mantissa, exponent := text, []byte(nil)
	if i := bytes.IndexAny(text, "eE"); i >= 0 {
		mantissa, exponent = text[:i], text[i+1:]
	}
	whole, frac := mantissa, []byte(nil)
	if i := bytes.IndexByte(mantissa, '.'); i >= 0 {
		whole, frac = mantissa[:i], mantissa[i+1:]
	}
	digit := func(i int) byte { // of whole and frac as one run of digits
		if i < len(whole) {
			return whole[i]
		}
		return frac[i-len(whole)]
	}
	total := len(whole) + len(frac)
	first, last := 0, total-1
	for first < total && digit(first) == '0' {
		first++
	}
	for last >= first && digit(last) == '0' {
		last--
	}
	if first > last {
		return append(dst, '0') // -0, 0.0 and 0e99 are 0
	}
	exp := int64(0)
	if len(exponent) > 0 {
		negExp := exponent[0] == '-'
		if exponent[0] == '-' || exponent[0] == '+' {
			exponent = exponent[1:]
		}
		exponent = bytes.TrimLeft(exponent, "0")
		if len(exponent) > maxExponentDigits+1 {
			return append(append(dst, "as written: "...), n...)
		}
		for _, c := range exponent {
			if exp > maxExponent/10 {
				return append(append(dst, "as written: "...), n...)
			}
			exp = exp*10 + int64(c-'0')
		}
		if exp > maxExponent {
			return append(append(dst, "as written: "...), n...)
		}
		if negExp {
			exp = -exp
		}
	}
	exp += int64(total-1-last) - int64(len(frac)) // the trailing zeros, less the fraction's digits
	if neg {
		dst = append(dst, '-')
	}
	for i := first; i <= last; i++ {
		dst = append(dst, digit(i))
	}
	dst = append(dst, 'e')
	return strconv.AppendInt(dst, exp, 10)
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
