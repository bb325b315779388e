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
		// Its headers took the room: the letter goes without the data,
		// which stays in the events stream until trimmed.
		meta, _ := msg.Metadata()
		var seq uint64
		if meta != nil {
			seq = meta.Sequence.Stream
		}
		dead.Data = nil
		dead.Header.Set(contract.HeaderDeadReason, fmt.Sprintf("%s; its data (%d bytes) is left out of this letter, too large with it (message %d of %s)", reason, len(msg.Data()), seq, contract.StreamEvents))
		_, err = n.js.PublishMsg(ctx, dead)
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
