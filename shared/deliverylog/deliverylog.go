// Package deliverylog reads the delivery attempt logs (contract.
// BucketDeliveries) and sends logged deliveries again: what the delivery
// API, retries and recover tasks share.
package deliverylog

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
)

// Read returns the records whose key matches filter and that keep passes
// (all when nil), oldest first. Bodies are kept only withBodies.
func Read(ctx context.Context, kv jetstream.KeyValue, filter string, keep func(*contract.DeliveryRecord) bool, withBodies bool) ([]contract.DeliveryRecord, error) {
	out := []contract.DeliveryRecord{}
	err := bus.ReadAll(ctx, kv, filter, func(entry jetstream.KeyValueEntry) error {
		var rec contract.DeliveryRecord
		if err := json.Unmarshal(entry.Value(), &rec); err != nil {
			return fmt.Errorf("decode delivery %s: %w", entry.Key(), err)
		}
		if keep == nil || keep(&rec) {
			if !withBodies {
				rec.Body = nil
			}
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b contract.DeliveryRecord) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Replay publishes a logged delivery again for one attempt, with the same
// webhook-id; msgID de-duplicates the re-send itself.
func Replay(ctx context.Context, js jetstream.JetStream, tenant string, rec contract.DeliveryRecord, msgID string) error {
	d := contract.Delivery{
		ID: rec.ID, Tenant: tenant, EventID: rec.EventID, EventType: rec.EventType, JobID: rec.JobID,
		EndpointID: rec.EndpointID, Body: rec.Body, CreatedAt: rec.CreatedAt, Attempts: rec.Attempts, Replay: true,
	}
	target := rec.EndpointID
	if target == "" {
		d.URL, target = rec.URL, "cb"
	}
	return bus.PublishJSON(ctx, js, contract.DeliverySubject(tenant, target), msgID, d)
}
