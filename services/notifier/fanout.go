package notifier

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
)

const (
	fanoutAckWait     = 30 * time.Second
	fanoutConcurrency = 16
	// fanoutRetry is the wait after JetStream failed to take a delivery.
	fanoutRetry = time.Second
)

// callbackTarget is the delivery target key of a job's own callback URL.
const callbackTarget = "cb"

var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// DeliveryID is the webhook-id of the delivery of an event to a target. It
// is derived, not random, so that fan-out run twice for the same event
// publishes the same deliveries, which JetStream de-duplicates.
func DeliveryID(eventID, target string) string {
	sum := sha256.Sum256([]byte(eventID + "\x00" + target))
	return "msg_" + idEncoding.EncodeToString(sum[:16])
}

func (n *Notifier) runFanout(ctx context.Context, cons jetstream.Consumer) error {
	return bus.Workers(ctx, cons, fanoutConcurrency, n.cfg.ShutdownGrace, func(ctx context.Context, msg jetstream.Msg) {
		if err := n.fanout(ctx, msg); err != nil {
			n.logger.Warn("fan out event", "subject", msg.Subject(), "error", err)
			_ = msg.NakWithDelay(fanoutRetry)
			return
		}
		_ = msg.Ack()
	})
}

// target is where one delivery of an event goes.
type target struct {
	key string
	url string
}

// fanout publishes one delivery per target of the event. A malformed event
// is dropped with an error in the log (issue: dead-letter store for events).
func (n *Notifier) fanout(ctx context.Context, msg jetstream.Msg) error {
	tenant, eventType, err := contract.ParseEventSubject(msg.Subject())
	if err != nil {
		n.logger.Error("dropping event on a malformed subject", "subject", msg.Subject(), "error", err)
		return nil
	}
	if !json.Valid(msg.Data()) {
		n.logger.Error("dropping event whose data is not JSON", "subject", msg.Subject(), "tenant_id", tenant)
		return nil
	}
	eventID, at := eventIdentity(msg)
	body, err := json.Marshal(contract.WebhookBody{Type: eventType, Timestamp: at, Data: msg.Data()})
	if err != nil {
		return fmt.Errorf("encode webhook body: %w", err)
	}
	var targets []target
	if url := msg.Headers().Get(contract.HeaderCallbackURL); url != "" {
		targets = append(targets, target{key: callbackTarget, url: url})
	}
	for _, t := range targets {
		d := contract.Delivery{
			ID: DeliveryID(eventID, t.key), Tenant: tenant, EventID: eventID, EventType: eventType,
			JobID: msg.Headers().Get(contract.HeaderJobID), URL: t.url, Body: body, CreatedAt: n.cfg.Now().UTC(),
		}
		if err := n.publishDelivery(ctx, d, t.key); err != nil {
			return err
		}
	}
	return nil
}

// eventIdentity returns the event's id and time: its Nats-Msg-Id (else one
// from the stream sequence) and its Hookstream-Event-Time (else when it was
// stored).
func eventIdentity(msg jetstream.Msg) (string, time.Time) {
	meta, _ := msg.Metadata()
	id := msg.Headers().Get(contract.HeaderMsgID)
	if id == "" && meta != nil {
		id = "evt_s" + strconv.FormatUint(meta.Sequence.Stream, 10)
	}
	at, err := time.Parse(time.RFC3339Nano, msg.Headers().Get(contract.HeaderEventTime))
	if err != nil && meta != nil {
		at = meta.Timestamp
	}
	return id, at.UTC()
}

func (n *Notifier) publishDelivery(ctx context.Context, d contract.Delivery, targetKey string) error {
	data, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encode delivery %s: %w", d.ID, err)
	}
	msg := nats.NewMsg(contract.DeliverySubject(d.Tenant, targetKey))
	msg.Data = data
	msg.Header.Set(contract.HeaderMsgID, d.ID)
	msg.Header.Set(contract.HeaderContractVersion, contract.Version)
	if _, err := n.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish delivery %s: %w", d.ID, err)
	}
	return nil
}
