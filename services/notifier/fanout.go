package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/jobevents"
	"github.com/hookstream/hookstream/shared/metrics"
)

const (
	fanoutAckWait     = 30 * time.Second
	fanoutConcurrency = 16
	// fanoutMaxAckPending bounds the events out at once, across every
	// notifier process: being fanned out, or delivered directly and waiting
	// for their attempt logs (each process bounds those by maxPendingLogs).
	// Each notifier sets it when it starts; an older one sets 1,000.
	fanoutMaxAckPending = maxPendingLogs + 1000
	// fanoutRetry is the wait after JetStream failed to take a delivery.
	fanoutRetry = time.Second
)

// callbackTarget is the delivery target key of a job's own callback URL.
const callbackTarget = contract.CallbackTarget

func (n *Notifier) runFanout(ctx context.Context, cons jetstream.Consumer) error {
	// Direct attempts get workers of their own: however long they take,
	// fanoutConcurrency workers are left for fanning out.
	return bus.Workers(ctx, n.js.Conn(), n.logger, cons, fanoutConcurrency+cap(n.direct), n.cfg.ShutdownGrace, func(ctx context.Context, msg jetstream.Msg) {
		if handedOff, err := n.fanout(ctx, msg); !handedOff {
			n.settleEvent(msg, err)
		}
	})
}

// settleEvent acknowledges an event fanned out, or puts it back after err.
func (n *Notifier) settleEvent(msg jetstream.Msg, err error) {
	if err != nil {
		n.logger.Warn("fan out event", "subject", msg.Subject(), "error", err)
		_ = msg.NakWithDelay(fanoutRetry)
		return
	}
	_ = msg.Ack()
}

// target is where one delivery of an event goes.
type target struct {
	key        string
	url        string
	endpointID string
}

// fanout publishes one delivery per target of the event: the job's own
// callback URL, if any, and every enabled endpoint of the tenant subscribed
// to the event type. A malformed event is dead-lettered with the reason.
// The caller settles the event with the error returned, unless handedOff:
// then a direct delivery settles it once its attempt log is stored.
func (n *Notifier) fanout(ctx context.Context, msg jetstream.Msg) (handedOff bool, err error) {
	tenant, eventType, err := contract.ParseEventSubject(msg.Subject())
	if err != nil {
		return false, n.deadLetter(ctx, msg, "subject is not hookstream.events.<tenant>.<event type>")
	}
	if !json.Valid(msg.Data()) {
		return false, n.deadLetter(ctx, msg, "data is not a JSON value")
	}
	data := contract.ValidUTF8(msg.Data()) // stray bytes would make the webhook unreadable as text
	eventID, at, scoped := eventIdentity(msg, tenant)
	n.recordEventType(ctx, tenant, eventType, data)
	body, err := json.Marshal(contract.WebhookBody{Type: eventType, Timestamp: at, Data: data})
	if err != nil {
		return false, fmt.Errorf("encode webhook body: %w", err)
	}
	if limit := n.maxData() - deliveryRoom; len(body) > limit && msg.Headers().Get(contract.HeaderJobID) != "" {
		// A job event of a processor outside hookstream, whose result
		// leaves no room: sent without it, as hookstream's own are.
		body = smallerJobEvent(eventType, at, data, body)
	}
	if limit := n.maxData() - deliveryRoom; len(body) > limit {
		// No delivery of it could be queued, retried or recorded.
		return false, n.deadLetter(ctx, msg, fmt.Sprintf("its webhook body (%d bytes, the event's data escaped as JSON) leaves no room in a NATS message for its delivery (at most %d)", len(body), limit))
	}
	var targets []target
	if url := msg.Headers().Get(contract.HeaderCallbackURL); url != "" && strings.HasPrefix(eventType, "job.") {
		// A job's own callback, on its job events alone: the URL gets a
		// webhook signed with the tenant's secret for job callbacks, which
		// the publisher of another event must not choose the target of.
		targets = append(targets, target{key: callbackTarget, url: url})
	}
	for _, id := range n.index.Matching(tenant, eventType) {
		targets = append(targets, target{key: id, endpointID: id})
	}
	defer metrics.EventsFanned.Inc("")
	// A delivery is created when its event was stored, the same on every
	// fan-out of that message: fanned out again after a crash, it is the
	// same delivery, whose retry scheduled the first time must not be
	// taken for another event's (overtaken) and dropped.
	createdAt := n.cfg.Now().UTC()
	if meta, err := msg.Metadata(); err == nil {
		createdAt = meta.Timestamp.UTC()
	}
	if len(targets) > 1 {
		// One write per target, each waiting for its PubAck: thousands of
		// them outlast the event's AckWait, which would fan it out again.
		defer bus.KeepAlive(msg, fanoutAckWait/3)()
	}
	for _, t := range targets {
		idTarget := t.key
		if scoped && t.key == callbackTarget {
			// Endpoint ids are unique across tenants, "cb" is not: the
			// same scoped id in two tenants must make two deliveries.
			idTarget = callbackTarget + "/" + tenant
		}
		d := contract.Delivery{
			ID: contract.DeliveryID(eventID, idTarget), Tenant: tenant, EventID: eventID, EventType: eventType,
			JobID: msg.Headers().Get(contract.HeaderJobID), EndpointID: t.endpointID, URL: t.url,
			Body: body, CreatedAt: createdAt,
		}
		if len(targets) == 1 && n.deliverDirectly(ctx, msg, d, t.key) {
			return true, nil
		}
		if err := n.publishDelivery(ctx, d, t.key); err != nil {
			return false, err
		}
	}
	return false, nil
}

var errDirectAgain = errors.New("direct delivery interrupted or not recorded; the event is fanned out again")

// deliverDirectly makes the first attempt of an event's only delivery from
// fan-out itself, when a direct slot is free and the endpoint is within its
// limits: the delivery then needs no delivery message, so it costs two
// JetStream writes fewer and no queue hop. Everything after the attempt is
// as on the queued path (deliver): the attempt log, and a durable retry if
// it failed. handled is false when the delivery must be queued instead;
// when true, the event is settled here: acknowledged only after all that
// is stored. Fanned out again, it is delivered again, with the same
// webhook-id.
func (n *Notifier) deliverDirectly(ctx context.Context, msg jetstream.Msg, d contract.Delivery, targetKey string) (handled bool) {
	if n.limits.slow(limitKey(&d)) {
		return false // queued, and parked from there (slow.go)
	}
	select {
	case n.direct <- struct{}{}:
	default:
		return false
	}
	var freeSlot sync.Once
	release := func() { freeSlot.Do(func() { <-n.direct }) }
	defer release()
	aside := func() bool {
		// A slow attempt gives back its worker and its direct slot.
		if bus.StepAside(ctx) {
			release()
			return true
		}
		return false
	}
	subject := contract.DeliverySubject(d.Tenant, targetKey)
	_, ok := n.deliverWithinLimits(ctx, msg, fanoutAckWait, &d, subject, aside, func(v verdict) {
		var err error
		switch v {
		case again:
			err = errDirectAgain
		case unrecorded:
			if n.queueUnrecorded(ctx, &d, subject) != nil {
				err = errDirectAgain
			}
		}
		n.settleEvent(msg, err)
	})
	return ok
}

// smallerJobEvent returns the webhook body of a job event without the
// job's result and progress (jobevents.WithoutResult), or body as it is if
// its data is not a job resource.
func smallerJobEvent(eventType string, at time.Time, data, body []byte) []byte {
	var job contract.Job
	if !strings.HasPrefix(eventType, "job.") || json.Unmarshal(data, &job) != nil || job.ID == "" {
		return body
	}
	smaller, err := json.Marshal(jobevents.WithoutResult(job))
	if err != nil {
		return body
	}
	out, err := json.Marshal(contract.WebhookBody{Type: eventType, Timestamp: at, Data: smaller})
	if err != nil {
		return body
	}
	return out
}

// eventIdentity returns the event's id and time: its Nats-Msg-Id without a
// "<tenant>:" prefix (scoped tells whether it had one; else an id from the
// stream sequence) and its Hookstream-Event-Time (else when it was stored).
func eventIdentity(msg jetstream.Msg, tenant string) (id string, at time.Time, scoped bool) {
	meta, _ := msg.Metadata()
	id, scoped = strings.CutPrefix(msg.Headers().Get(contract.HeaderMsgID), tenant+":")
	if id == "" && meta != nil {
		id = "evt_s" + strconv.FormatUint(meta.Sequence.Stream, 10)
	}
	at, err := time.Parse(time.RFC3339Nano, msg.Headers().Get(contract.HeaderEventTime))
	if err != nil && meta != nil {
		at = meta.Timestamp
	}
	return id, at.UTC(), scoped
}

func (n *Notifier) publishDelivery(ctx context.Context, d contract.Delivery, targetKey string) error {
	if n.limits.held(limitKey(&d)) {
		// Its endpoint's circuit is open, or it answers slowly (slow.go):
		// straight to the parked stream.
		data, err := encodeFitting(&d, &d.Attempts, n.maxData())
		if err != nil {
			return fmt.Errorf("encode delivery %s: %w", d.ID, err)
		}
		err = n.publishParked(ctx, d.Tenant, parkTarget(&d), d.ID, data, false)
		if err == nil {
			return nil
		}
		n.logger.Warn("park delivery; queueing it instead", "delivery_id", d.ID, "error", err)
	}
	data, err := encodeFitting(&d, &d.Attempts, n.maxData())
	if err != nil {
		return fmt.Errorf("encode delivery %s: %w", d.ID, err)
	}
	_, err = bus.PublishData(ctx, n.pub, contract.DeliverySubject(d.Tenant, targetKey), d.ID, data)
	return err
}
