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
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
)

// ClockMargin is how far apart the clocks of hookstream's processes and of
// the NATS servers may be for a read from a time (Scan) to find every
// record created since then: the read starts that much earlier.
const ClockMargin = 10 * time.Second

// scanBatch is how many records a Scan fetches at once.
const scanBatch = 256

// logStream is the stream that holds the bucket.
const logStream = "KV_" + contract.BucketDeliveries

// Scan calls fn with the records whose key matches filter (NATS
// wildcards), in the order they were last written; deleted keys are
// skipped. With since set, it reads only the log written from then on
// (less ClockMargin): every record created since then, and the older ones
// written since, which fn may skip. A record's only copy is its last write
// (the bucket keeps one per key), so a read from a time costs the writes
// since then, not the whole log.
func Scan(ctx context.Context, js jetstream.JetStream, filter string, since time.Time, fn func(*contract.DeliveryRecord) error) error {
	cfg := jetstream.ConsumerConfig{
		FilterSubject: bus.KeySubject(contract.BucketDeliveries, filter),
		DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:     jetstream.AckNonePolicy,
		// Gone by itself if this process is: a read takes seconds at most.
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
		Replicas:          1,
	}
	if !since.IsZero() {
		start := since.Add(-ClockMargin)
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	cons, err := js.CreateConsumer(ctx, logStream, cfg)
	if err != nil {
		return fmt.Errorf("read %s: %w", filter, err)
	}
	name := cons.CachedInfo().Name
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = js.DeleteConsumer(ctx, logStream, name)
	}()
	// What was written by the time the read began; later writes are not
	// waited for.
	for left := cons.CachedInfo().NumPending; left > 0; {
		batch, err := cons.Fetch(int(min(left, scanBatch)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("read %s: %w", filter, err)
		}
		got := uint64(0)
		for msg := range batch.Messages() {
			got++
			if op := msg.Headers().Get("KV-Operation"); op != "" { // DEL or PURGE
				continue
			}
			var rec contract.DeliveryRecord
			if err := json.Unmarshal(msg.Data(), &rec); err != nil {
				return fmt.Errorf("decode delivery %s: %w", msg.Subject(), err)
			}
			if err := fn(&rec); err != nil {
				return err
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("read %s: %w", filter, err)
		}
		if got == 0 { // a listing cut short must not pass for a whole one
			return fmt.Errorf("read %s: no records came, %d to go", filter, left)
		}
		left -= min(got, left)
	}
	return nil
}

// Read returns the records Scan finds that keep passes (all when nil),
// oldest first by creation. Bodies are kept only withBodies.
func Read(ctx context.Context, js jetstream.JetStream, filter string, since time.Time, keep func(*contract.DeliveryRecord) bool, withBodies bool) ([]contract.DeliveryRecord, error) {
	out := []contract.DeliveryRecord{}
	err := Scan(ctx, js, filter, since, func(rec *contract.DeliveryRecord) error {
		if keep == nil || keep(rec) {
			if !withBodies {
				rec.Body = nil
			}
			out = append(out, *rec)
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

// Oldest is when the oldest write kept in the log was made; zero when the
// log is empty.
func Oldest(ctx context.Context, js jetstream.JetStream) (time.Time, error) {
	stream, err := js.Stream(ctx, logStream)
	if err != nil {
		return time.Time{}, fmt.Errorf("read %s: %w", logStream, err)
	}
	return stream.CachedInfo().State.FirstTime, nil
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
