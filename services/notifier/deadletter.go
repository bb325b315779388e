package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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
		n.typeCounts.Clear() // at most as many tenants as types: counted again
		n.seenCount.Store(0)
	}
	count := n.typeCount(ctx, tenant)
	place := count.n.Add(1) // taken at once: fan-out records many types at once
	if place > int64(n.cfg.MaxEventTypes) {
		count.n.Add(-1)
		return // delivered, not recorded; seen, so that it is not counted again
	}
	rec := EventType{Type: eventType, FirstSeen: n.cfg.Now().UTC()}
	if len(data) <= maxExampleBytes {
		rec.Example = data
	}
	value, _ := json.Marshal(rec)
	_, err := n.tenants.Create(ctx, key, value)
	switch {
	case err == nil:
		if place == int64(n.cfg.MaxEventTypes) { // the last place: said once
			n.logger.Warn("a tenant has the most event types recorded; events of new types are delivered, not recorded (GET /v1/event-types)", "tenant_id", tenant, "types", n.cfg.MaxEventTypes)
		}
	case isKeyExists(err):
		count.n.Add(-1) // recorded before: counted already
	default:
		count.n.Add(-1)
		n.seenTypes.Delete(key)
		n.logger.Debug("record event type", "tenant_id", tenant, "type", eventType, "error", err)
	}
}

// A typeCount is how many event types of a tenant are recorded, counted in
// the bucket at this process's first new type of the tenant, then by the
// records it made.
type typeCount struct {
	once sync.Once
	n    atomic.Int64
}

func (n *Notifier) typeCount(ctx context.Context, tenant string) *typeCount {
	v, _ := n.typeCounts.LoadOrStore(tenant, &typeCount{})
	count := v.(*typeCount)
	count.once.Do(func() {
		keys, err := n.tenants.ListKeysFiltered(ctx, EventTypeKey(tenant, ">"))
		if err != nil {
			n.logger.Debug("count a tenant's event types", "tenant_id", tenant, "error", err)
			return // counted from 0: at most twice the bound
		}
		var k int64
		for range keys.Keys() {
			k++
		}
		count.n.Store(k)
		if k >= int64(n.cfg.MaxEventTypes) { // reached before this process started: said once more
			n.logger.Warn("a tenant has the most event types recorded; events of new types are delivered, not recorded (GET /v1/event-types)", "tenant_id", tenant, "types", k)
		}
	})
	return count
}

func isKeyExists(err error) bool { return errors.Is(err, jetstream.ErrKeyExists) }
