// Package deliverylog reads the delivery attempt logs (contract.
// BucketDeliveries) and sends logged deliveries again: what the delivery
// API, retries and recover tasks share.
package deliverylog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/jobevents"
)

// ClockMargin is how far apart the clocks of hookstream's processes and of
// the NATS servers may be for a read from a time to find every record
// created since then: the read starts that much earlier.
const ClockMargin = 10 * time.Second

// scanBatch is how many records a read fetches at once.
const scanBatch = 256

// logStream is the stream that holds the bucket.
const logStream = "KV_" + contract.BucketDeliveries

// Filter names the records a read takes by their keys (Delivery.LogKey):
// NATS subject filters of the bucket's keys, which nats-server matches
// itself, so that a read costs what its filter matches rather than the
// tenant's whole log. A filter may match more than it names (the records
// written before keys named their target, whose fields say the rest), so
// readers still check the records they are given.
type Filter struct {
	// keys are always read (keys that name their target, or, as
	// "<tenant>.>", of both layouts); old match only the keys written
	// before keys named their target, read while the log may keep some
	// (OldKeysGone).
	keys, old []string
}

func (f Filter) String() string { return strings.Join(append(f.keys, f.old...), " ") }

// Tenant is every record of a tenant.
func Tenant(tenant string) Filter { return Filter{keys: []string{tenant + ".>"}} }

// Owner is the records of the deliveries of one job, or of one event other
// than a job's.
func Owner(tenant, jobOrEvent string) Filter {
	owner := contract.KeyToken(jobOrEvent)
	return Filter{keys: []string{tenant + ".*." + owner + ".*"}, old: []string{tenant + "." + owner + ".*"}}
}

// Event is the records of an event's deliveries: under its id, or under its
// job's for a job event whose id is of the form hookstream gives
// (jobevents.JobOf; evt_<x>_<status> is also job x's, as older processors
// named the events of a job whose id does not start with job_). A job event
// published with an id of another form is not found by its id.
func Event(tenant, eventID string) Filter {
	f := Owner(tenant, eventID)
	add := func(owner string) {
		o := Owner(tenant, owner)
		f.keys, f.old = append(f.keys, o.keys...), append(f.old, o.old...)
	}
	if job, ok := jobevents.JobOf(eventID); ok {
		add(job)
		if rest, ok := strings.CutPrefix(job, "job_"); ok && strings.HasPrefix(eventID, "evt_") {
			add(rest)
		}
	}
	return f
}

// Delivery is the record of one delivery, id a valid key token.
func Delivery(tenant, id string) Filter {
	return Filter{keys: []string{tenant + ".*.*." + id}, old: []string{tenant + ".*." + id}}
}

// Endpoint is the records of the deliveries to one endpoint (to job
// callbacks when endpointID is empty), and, while the log may keep them,
// every record of the tenant written before keys named their target.
func Endpoint(tenant, endpointID string) Filter {
	return Filter{keys: []string{tenant + "." + contract.LogTarget(endpointID) + ".*.*"}, old: []string{tenant + ".*.*"}}
}

// MarkKeys records, once for the deployment, when its services began
// writing delivery log keys that name their target (contract.
// KeyDeliveryLogKeys in contract.BucketTenants, stamped by the NATS
// server), and whether the log was empty then (a new deployment). Reads
// look for records of the layout before, which costs nats-server a walk of
// the tenant's whole index (about 100 ms a read for 1,000,000 records),
// until OldKeysGone. The intake and the notifier call it at start; until it
// is recorded, reads keep looking.
func MarkKeys(ctx context.Context, js jetstream.JetStream) error {
	kv, err := js.KeyValue(ctx, contract.BucketTenants)
	if err != nil {
		return fmt.Errorf("open bucket %s: %w", contract.BucketTenants, err)
	}
	state, err := logState(ctx, js)
	if err != nil {
		return err
	}
	mark, err := json.Marshal(keysMark{LogWasEmpty: state.LastSeq == 0})
	if err != nil {
		return err
	}
	if _, err = kv.Create(ctx, contract.KeyDeliveryLogKeys, mark); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("record when delivery log keys began naming their target: %w", err)
	}
	return nil
}

// keysMark is the value at contract.KeyDeliveryLogKeys.
type keysMark struct {
	LogWasEmpty bool `json:"log_was_empty"`
}

// oldKeysGone holds the connections (tests run several servers) whose log
// was found to keep no record of the old layout.
var oldKeysGone sync.Map // jetstream.JetStream → struct{}

// OldKeysGone tells whether the log keeps no record written before keys
// named their target: it was empty when MarkKeys recorded, or the log's
// retention has passed since then and its oldest write is later than that
// (ClockMargin more each). No service of this version writes such a key;
// an older notifier still running after the retention writes records that
// reads by endpoint, id and job no longer find. Found so once, it is not
// asked again. Any error says no.
func OldKeysGone(ctx context.Context, js jetstream.JetStream) bool {
	if _, ok := oldKeysGone.Load(js); ok {
		return true
	}
	kv, err := js.KeyValue(ctx, contract.BucketTenants)
	if err != nil {
		return false
	}
	entry, err := kv.Get(ctx, contract.KeyDeliveryLogKeys)
	if err != nil {
		return false
	}
	var mark keysMark
	if json.Unmarshal(entry.Value(), &mark) != nil {
		// A time alone, as a build before this one recorded it while it
		// still wrote old keys: recorded again, the wait starts now.
		_, _ = kv.Update(ctx, contract.KeyDeliveryLogKeys, []byte(`{"log_was_empty":false}`), entry.Revision())
		return false
	}
	if !mark.LogWasEmpty {
		stream, err := js.Stream(ctx, logStream)
		if err != nil {
			return false
		}
		if info := stream.CachedInfo(); !oldKeysExpired(entry.Created(), time.Now(), info.Config.MaxAge, info.State) {
			return false
		}
	}
	oldKeysGone.Store(js, struct{}{})
	return true
}

// oldKeysExpired tells whether, at now, a log of retention maxAge whose
// state is log keeps no record written before since, nor one that an older
// notifier wrote within the retention after since (its oldest write is
// later than that).
func oldKeysExpired(since, now time.Time, maxAge time.Duration, log jetstream.StreamState) bool {
	end := since.Add(maxAge + ClockMargin)
	return !now.Before(end) && (log.Msgs == 0 || log.FirstTime.After(end))
}

// read passes fn the messages of the log whose key matches filter, in the
// order they were written, until fn says no more or the read has reached
// the end of the log. With since set, it reads only the log written from
// then on (less ClockMargin): it holds every record created since then,
// and the older ones written since. A record's only copy is its last write
// (the bucket keeps one per key), so a read from a time costs the writes
// since then, not the whole log.
func read(ctx context.Context, js jetstream.JetStream, filter Filter, since time.Time, fn func(jetstream.Msg, *jetstream.MsgMetadata) (more bool, err error)) error {
	cons, err := readConsumer(ctx, js, filter, since)
	if err != nil {
		return fmt.Errorf("read %s: %w", filter, err)
	}
	defer dropConsumers(ctx, js, cons)
	wait := false // after a fetch that found nothing although some was pending
	for pending := cons.CachedInfo().NumPending; pending > 0; {
		if err := ctx.Err(); err != nil {
			return err
		}
		var batch jetstream.MessageBatch
		if wait {
			batch, err = cons.Fetch(int(min(pending, scanBatch)), jetstream.FetchMaxWait(2*time.Second))
		} else {
			batch, err = cons.FetchNoWait(int(min(pending, scanBatch)))
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", filter, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			meta, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("read %s: %w", filter, err)
			}
			if more, err := fn(msg, meta); err != nil || !more {
				return err
			}
			pending = meta.NumPending
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("read %s: %w", filter, err)
		}
		if got > 0 {
			wait = false
			continue
		}
		// Nothing came: what was pending may have aged out, or not be
		// ready to send yet (a record written again just now). A read cut
		// short must not pass for a whole one.
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("read %s: %w", filter, err)
		}
		if pending = info.NumPending; pending > 0 && wait {
			return fmt.Errorf("read %s: no records came, %d to go", filter, pending)
		}
		wait = true
	}
	return nil
}

// keyPrefix is what a record's subject has before its key.
var keyPrefix = bus.KeySubject(contract.BucketDeliveries, "")

// readConsumer makes the consumer that read takes filter's records from:
// one of its own per subject filter first, since nats-server matches one
// filter in its index but several only message by message (about 10 times
// slower); the one that has records to read if only one has, else one for
// all of them. (With a filter of the records written before keys named
// their target, that is while the log still keeps such a record.)
func readConsumer(ctx context.Context, js jetstream.JetStream, filter Filter, since time.Time) (jetstream.Consumer, error) {
	subjects := filter.keys
	if len(filter.old) > 0 && !OldKeysGone(ctx, js) {
		subjects = append(slices.Clip(subjects), filter.old...)
	}
	cfg := jetstream.ConsumerConfig{
		DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:     jetstream.AckNonePolicy,
		// Gone by itself if this process is, after a pause longer than a
		// recover task's batch of re-sends can take.
		InactiveThreshold: 5 * time.Minute,
		MemoryStorage:     true,
		Replicas:          1,
	}
	if start := since.Add(-ClockMargin); start.Year() >= 1970 { // earlier: all of it
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	var found []jetstream.Consumer
	for i, f := range subjects {
		cfg.FilterSubject = bus.KeySubject(contract.BucketDeliveries, f)
		cons, err := js.CreateConsumer(ctx, logStream, cfg)
		if err != nil {
			dropConsumers(ctx, js, found...)
			return nil, err
		}
		// Nothing to read: dropped, unless it is the last and none had.
		if cons.CachedInfo().NumPending == 0 && (len(found) > 0 || i < len(subjects)-1) {
			dropConsumers(ctx, js, cons)
			continue
		}
		found = append(found, cons)
	}
	if len(found) == 1 {
		return found[0], nil
	}
	dropConsumers(ctx, js, found...)
	cfg.FilterSubject = ""
	for _, f := range subjects {
		cfg.FilterSubjects = append(cfg.FilterSubjects, bus.KeySubject(contract.BucketDeliveries, f))
	}
	return js.CreateConsumer(ctx, logStream, cfg)
}

// dropConsumers deletes a read's consumers.
func dropConsumers(ctx context.Context, js jetstream.JetStream, consumers ...jetstream.Consumer) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, cons := range consumers {
		_ = js.DeleteConsumer(ctx, logStream, cons.CachedInfo().Name)
	}
}

// decode reads a record, its Key set; nil for a deleted key.
func decode(msg jetstream.Msg) (*contract.DeliveryRecord, error) {
	if msg.Headers().Get(bus.HeaderKVOperation) != "" { // DEL or PURGE
		return nil, nil
	}
	var rec contract.DeliveryRecord
	if err := json.Unmarshal(msg.Data(), &rec); err != nil {
		return nil, fmt.Errorf("decode delivery %s: %w", msg.Subject(), err)
	}
	rec.Key = strings.TrimPrefix(msg.Subject(), keyPrefix)
	return &rec, nil
}

// sameRecord is what the keys of one delivery's record have in common,
// whether written before keys named their target ("<tenant>.<owner>.<id>")
// or since ("<tenant>.<target>.<owner>.<id>"): a record written again
// since under its new key stands for the old one.
func sameRecord(subject string) string {
	key := strings.TrimPrefix(subject, keyPrefix)
	tenant, rest, _ := strings.Cut(key, ".")
	if _, owner, ok := strings.Cut(rest, "."); ok && strings.Count(owner, ".") == 1 {
		return tenant + "." + owner
	}
	return key
}

// Scan calls fn with the records whose key matches filter and that keep
// passes (all when nil), as they were
// when the read began, each once, in the order they were last written,
// from the log written since (zero: all of it; see read). A record written
// again during the scan is left out: its copy from before is gone, and its
// new one is past where the scan ends. That suits a task that sends
// records again (a recover task): such a record is being sent by someone
// else already, and its own re-sends, written again, are not read back.
// A record kept under its key from before keys named their target is left
// out when its delivery was written since under its new key (newer). The
// other way round, a record of the new layout written over by an older
// notifier under its old key (while both versions run), both are passed.
func Scan(ctx context.Context, js jetstream.JetStream, filter Filter, since time.Time, keep func(*contract.DeliveryRecord) bool, fn func(*contract.DeliveryRecord) error) error {
	state, err := logState(ctx, js)
	if err != nil {
		return err
	}
	end := state.LastSeq
	var log jetstream.KeyValue // opened at the first record of the old layout
	return read(ctx, js, filter, since, func(msg jetstream.Msg, meta *jetstream.MsgMetadata) (bool, error) {
		if meta.Sequence.Stream > end {
			return false, nil
		}
		rec, err := decode(msg)
		if err != nil || rec == nil || (keep != nil && !keep(rec)) {
			return true, err
		}
		if newKey, old := keyOfNewLayout(rec); old {
			if log == nil {
				if log, err = js.KeyValue(ctx, contract.BucketDeliveries); err != nil {
					return false, fmt.Errorf("read %s: %w", filter, err)
				}
			}
			entry, err := log.Get(ctx, newKey)
			switch {
			case err == nil && entry.Revision() > meta.Sequence.Stream:
				return true, nil // written since under its new key
			case err != nil && !errors.Is(err, jetstream.ErrKeyNotFound):
				return false, fmt.Errorf("read %s: %w", newKey, err)
			}
		}
		return true, fn(rec)
	})
}

// keyOfNewLayout is the key that rec, read at a key from before keys named
// their target ("<tenant>.<owner>.<id>", old), has since
// ("<tenant>.<target>.<owner>.<id>").
func keyOfNewLayout(rec *contract.DeliveryRecord) (key string, old bool) {
	if strings.Count(rec.Key, ".") != 2 {
		return "", false
	}
	tenant, rest, _ := strings.Cut(rec.Key, ".")
	return tenant + "." + contract.LogTarget(rec.EndpointID) + "." + rest, true
}

// Read returns the records whose key matches filter and that keep passes
// (all when nil), oldest first by creation, from the log written since
// (zero: all of it; see read). It reads on to the end of the log, so that a
// record written again during the read is not missed: its newest copy
// stands. Bodies are kept only withBodies.
func Read(ctx context.Context, js jetstream.JetStream, filter Filter, since time.Time, keep func(*contract.DeliveryRecord) bool, withBodies bool) ([]contract.DeliveryRecord, error) {
	byKey := map[string]contract.DeliveryRecord{}
	err := readLatest(ctx, js, filter, since, keep, withBodies,
		func(key string, rec contract.DeliveryRecord) { byKey[key] = rec },
		func(key string) { delete(byKey, key) })
	if err != nil {
		return nil, err
	}
	out := make([]contract.DeliveryRecord, 0, len(byKey))
	for _, rec := range byKey {
		out = append(out, rec)
	}
	slices.SortFunc(out, compare)
	return out, nil
}

// readLatest passes put each record whose key matches filter and that keep
// passes, as it was written, and remove the key of each one that no longer
// does (deleted, or written again so that keep fails): the newest copy of
// a key is the one that stands. The key passed is sameRecord's, so a
// record written under its new key after its old one stands for both.
// Bodies are kept only withBodies.
func readLatest(ctx context.Context, js jetstream.JetStream, filter Filter, since time.Time, keep func(*contract.DeliveryRecord) bool, withBodies bool,
	put func(key string, rec contract.DeliveryRecord), remove func(key string)) error {
	return read(ctx, js, filter, since, func(msg jetstream.Msg, _ *jetstream.MsgMetadata) (bool, error) {
		rec, err := decode(msg)
		switch {
		case err != nil:
			return false, err
		case rec == nil || (keep != nil && !keep(rec)):
			remove(sameRecord(msg.Subject()))
		default:
			if !withBodies {
				rec.Body = nil
			}
			put(sameRecord(msg.Subject()), *rec)
		}
		return true, nil
	})
}

// compare orders records by creation, then id.
func compare(a, b contract.DeliveryRecord) int {
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// Oldest is when the oldest write kept in the log was made; zero when the
// log is empty.
func Oldest(ctx context.Context, js jetstream.JetStream) (time.Time, error) {
	state, err := logState(ctx, js)
	return state.FirstTime, err
}

// logState is the state of the log's stream now.
func logState(ctx context.Context, js jetstream.JetStream) (jetstream.StreamState, error) {
	stream, err := js.Stream(ctx, logStream)
	if err != nil {
		return jetstream.StreamState{}, fmt.Errorf("read %s: %w", logStream, err)
	}
	return stream.CachedInfo().State, nil
}

// ErrNoBody is a record kept without its webhook's body (too large for the
// NATS server with its attempts): it cannot be sent again.
var ErrNoBody = errors.New("the delivery's record was kept without its body (too large), so it cannot be sent again")

// Replay publishes a logged delivery again for one attempt, with the same
// webhook-id; msgID de-duplicates the re-send itself.
func Replay(ctx context.Context, js jetstream.JetStream, tenant string, rec contract.DeliveryRecord, msgID string) error {
	if len(rec.Body) == 0 || string(rec.Body) == "null" {
		return ErrNoBody
	}
	d := contract.Delivery{
		ID: rec.ID, Tenant: tenant, EventID: rec.EventID, EventType: rec.EventType, JobID: rec.JobID,
		EndpointID: rec.EndpointID, Body: rec.Body, CreatedAt: rec.CreatedAt, Attempts: rec.Attempts, Replay: true,
	}
	target := rec.EndpointID
	if target == "" {
		d.URL, target = rec.URL, contract.CallbackTarget
	}
	return bus.PublishJSON(ctx, js, contract.DeliverySubject(tenant, target), msgID, d)
}
