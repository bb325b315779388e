package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/metrics"
)

// deadLetter keeps a message that can never be processed in the dead-letter
// stream, with the reason, and lets the caller acknowledge the original.
func (n *Notifier) deadLetter(ctx context.Context, msg jetstream.Msg, reason string) error {
	dead := nats.NewMsg(contract.SubjectDeadLetters + ".events")
	dead.Data = msg.Data()
	dead.Header.Set(contract.HeaderDeadReason, reason)
	dead.Header.Set(contract.HeaderOriginalSubject, msg.Subject())
	dead.Header.Set(contract.HeaderContractVersion, contract.Version)
	if id := msg.Headers().Get(contract.HeaderMsgID); id != "" {
		dead.Header.Set(contract.HeaderMsgID, "dead."+id)
	}
	_, err := n.js.PublishMsg(ctx, dead)
	if errors.Is(err, nats.ErrMaxPayload) {
		// The letter's headers took the room the event's own left: the
		// reason is shortened (the log has it whole), and if that is not
		// enough, the letter goes without the data, which is then lost.
		n.logger.Warn("event dead-lettered with a short reason", "subject", msg.Subject(), "reason", reason)
		dead.Header.Set(contract.HeaderDeadReason, "too large")
		if _, err = n.js.PublishMsg(ctx, dead); errors.Is(err, nats.ErrMaxPayload) {
			dead.Data = nil
			dead.Header.Set(contract.HeaderDeadReason, fmt.Sprintf("too large; its data (%d bytes) is left out", len(msg.Data())))
			_, err = n.js.PublishMsg(ctx, dead)
		}
	}
	if err != nil {
		return fmt.Errorf("dead-letter event: %w", err)
	}
	n.logger.Warn("event dead-lettered", "subject", msg.Subject(), "reason", reason)
	metrics.DeadLetters.Inc("event")
	return nil
}

// EventType is an event type a tenant has published, with an example.
type EventType struct {
	Type      string          `json:"type"`
	Example   json.RawMessage `json:"example,omitempty"`
	FirstSeen time.Time       `json:"first_seen"`
}

// maxSeenTypes bounds the per-process memory of recorded event types.
const maxSeenTypes = 100_000

// maxExampleBytes bounds the example kept per event type.
const maxExampleBytes = 4 << 10

// EventTypeKey is the key of an event type's record in BucketTenants.
func EventTypeKey(tenant, eventType string) string { return tenant + ".eventtypes." + eventType }

// recordEventType records the first sight of a tenant's event type, once
// per process, best effort.
func (n *Notifier) recordEventType(ctx context.Context, tenant, eventType string, data []byte) {
	key := EventTypeKey(tenant, eventType)
	if _, seen := n.seenTypes.LoadOrStore(key, struct{}{}); seen {
		return
	}
	// A bounded memory: past maxSeenTypes the set starts over (recording
	// again is a Create that finds the key and changes nothing).
	if n.seenCount.Add(1) > maxSeenTypes {
		n.seenTypes.Clear()
		n.seenCount.Store(0)
	}
	rec := EventType{Type: eventType, FirstSeen: n.cfg.Now().UTC()}
	if len(data) <= maxExampleBytes {
		rec.Example = data
	}
	value, _ := json.Marshal(rec)
	if _, err := n.tenants.Create(ctx, key, value); err != nil && !isKeyExists(err) {
		n.seenTypes.Delete(key)
		n.logger.Debug("record event type", "tenant_id", tenant, "type", eventType, "error", err)
	}
}

func isKeyExists(err error) bool { return errors.Is(err, jetstream.ErrKeyExists) }
