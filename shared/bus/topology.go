package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/contract"
)

// Topology sizes the streams and buckets.
type Topology struct {
	// Replicas of every stream and bucket. Default 1; use 3 on a cluster.
	Replicas int
	// StreamMaxBytes caps each work stream; when full, new work is refused
	// (DiscardNew) and intake answers 503. Default 1 GiB.
	StreamMaxBytes int64
	// JobRetention is how long a job record is kept after its last change,
	// and so how long an Idempotency-Key keeps returning the same job.
	// Default 7 days.
	JobRetention time.Duration
	// DeliveryRetention is how long delivery messages and attempt logs are
	// kept. It must be longer than the whole retry schedule. Default 8 days.
	DeliveryRetention time.Duration
	// KeepHigher leaves a stream or bucket that exists with more replicas,
	// a longer retention or more room than these as it is, and Ensure
	// reports each such setting kept (Kept): services of a split deployment
	// each ensure the topology at start, and one started with settings
	// other than the rest must not lower them for all (one replica instead
	// of three, records aged out sooner). Without it (hookstream serve, the
	// one owner of its server's streams) Ensure sets them as given.
	KeepHigher bool
	// Kept, if set, is told of every setting KeepHigher kept.
	Kept func(what string)
}

// Defaults for [Topology].
const (
	DefaultStreamMaxBytes    = 1 << 30
	DefaultJobRetention      = 7 * 24 * time.Hour
	DefaultDeliveryRetention = 8 * 24 * time.Hour
	// EventDuplicateWindow is how long an event id is remembered for
	// de-duplication.
	EventDuplicateWindow = 10 * time.Minute
)

func (t Topology) withDefaults() Topology {
	if t.Replicas == 0 {
		t.Replicas = 1
	}
	if t.StreamMaxBytes == 0 {
		t.StreamMaxBytes = DefaultStreamMaxBytes
	}
	if t.JobRetention == 0 {
		t.JobRetention = DefaultJobRetention
	}
	if t.DeliveryRetention == 0 {
		t.DeliveryRetention = DefaultDeliveryRetention
	}
	return t
}

// StreamConfigs returns the configuration of every hookstream stream.
func (t Topology) StreamConfigs() []jetstream.StreamConfig {
	t = t.withDefaults()
	work := func(name, desc string, subjects ...string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: desc,
			Subjects:    subjects,
			// The streams every job passes through keep limits retention
			// instead (below): their consumers' acks are not a synced
			// removal each, and Trim removes what was acknowledged.
			Retention:  jetstream.WorkQueuePolicy,
			Storage:    jetstream.FileStorage,
			Discard:    jetstream.DiscardNew,
			MaxBytes:   t.StreamMaxBytes,
			MaxAge:     t.DeliveryRetention,
			Replicas:   t.Replicas,
			Duplicates: 2 * time.Minute,
			// Group commits (Committer) write atomic batches.
			AllowAtomicPublish: true,
		}
	}
	jobs := work(contract.StreamJobs, "hookstream jobs waiting for a processor", contract.SubjectJobs+".>")
	events := work(contract.StreamEvents, "hookstream events waiting for fan-out", contract.SubjectEvents+".>")
	events.Duplicates = EventDuplicateWindow
	deliveries := work(contract.StreamDeliveries, "hookstream webhook deliveries and scheduled retries",
		contract.SubjectDeliveries+".>", contract.SubjectRetries+".>")
	// NATS refuses message schedules on a DiscardNew stream. The deliveries
	// stream therefore has no byte or count limit at all, so DiscardOld never
	// has anything to discard; only MaxAge, longer than the whole retry
	// schedule, removes messages. New work is refused upstream, where the
	// jobs and events streams are bounded with DiscardNew.
	deliveries.AllowMsgSchedules = true
	deliveries.Discard = jetstream.DiscardOld
	deliveries.MaxBytes = -1
	for _, s := range []*jetstream.StreamConfig{&jobs, &events, &deliveries} {
		s.Retention = jetstream.LimitsPolicy
	}
	tasks := work(contract.StreamTasks, "hookstream background tasks (endpoint recoveries)", contract.SubjectTasks+".>")
	tasks.MaxBytes = 64 << 20
	dead := work(contract.StreamDeadLetters, "hookstream messages that could not be processed, with the reason", contract.SubjectDeadLetters+".>")
	dead.Retention, dead.Discard, dead.MaxBytes = jetstream.LimitsPolicy, jetstream.DiscardOld, 256<<20
	parked := work(contract.StreamParked, "hookstream deliveries of endpoints whose circuit is open", contract.SubjectParked+".>")
	// Like the deliveries stream, it holds what was already accepted: no
	// byte limit, only MaxAge, so that parking never fails for space.
	parked.Discard, parked.MaxBytes = jetstream.DiscardOld, -1
	return []jetstream.StreamConfig{jobs, events, deliveries, tasks, dead, parked}
}

// TrimTargets are the streams that Trim keeps trimmed and the consumer
// filters it purges: one job type's (hookstream.jobs.*.<type>, what a
// processor in any language reads) and its batches'
// (hookstream.jobs.*.$batch.<type>), fan-out's and delivery's. Retry
// schedules, and job types that no processor reads yet, are never purged.
func TrimTargets() []TrimTarget {
	return []TrimTarget{
		{Stream: contract.StreamJobs, Trims: func(filter string) bool {
			jobType, ok := strings.CutPrefix(filter, contract.SubjectJobs+".*.")
			batches, batch := strings.CutPrefix(jobType, contract.JobBatchToken+".")
			return ok && (contract.ValidType(jobType) || batch && contract.ValidType(batches))
		}},
		// Events fanned out stay for their ids' de-duplication window,
		// which a restarted server rebuilds from them.
		{Stream: contract.StreamEvents, Trims: func(filter string) bool { return filter == contract.SubjectEvents+".>" }, Keep: EventDuplicateWindow},
		{Stream: contract.StreamDeliveries, Trims: func(filter string) bool { return filter == contract.SubjectDeliveries+".>" }},
	}
}

// BucketConfigs returns the configuration of every hookstream bucket.
func (t Topology) BucketConfigs() []jetstream.KeyValueConfig {
	t = t.withDefaults()
	return []jetstream.KeyValueConfig{
		{Bucket: contract.BucketJobs, Description: "hookstream job state", TTL: t.JobRetention, Storage: jetstream.FileStorage, Replicas: t.Replicas},
		{Bucket: contract.BucketDeliveries, Description: "hookstream delivery attempt logs", TTL: t.DeliveryRetention, Storage: jetstream.FileStorage, Replicas: t.Replicas},
		{Bucket: contract.BucketTenants, Description: "hookstream tenant settings and signing secrets", Storage: jetstream.FileStorage, Replicas: t.Replicas, History: 1},
		{Bucket: contract.BucketEndpoints, Description: "hookstream registered endpoints", Storage: jetstream.FileStorage, Replicas: t.Replicas, History: 1},
		{Bucket: contract.BucketAPIKeys, Description: "hookstream API keys (hashed)", Storage: jetstream.FileStorage, Replicas: t.Replicas, History: 1},
	}
}

// Ensure creates or updates every stream and bucket. Every service calls it
// at start; it is idempotent, and leaves a stream or bucket that is as
// given untouched (an update of one makes the server check its storage
// reservation again, which a full disk then fails).
func Ensure(ctx context.Context, js jetstream.JetStream, t Topology) error {
	for _, cfg := range t.StreamConfigs() {
		current, err := currentConfig(ctx, js, cfg.Name)
		if err != nil {
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		}
		if current != nil {
			if current.Retention == jetstream.WorkQueuePolicy {
				// An older version made it a work queue, which NATS cannot
				// change in place: its acks remove messages themselves, and
				// Trim leaves it alone.
				cfg.Retention = jetstream.WorkQueuePolicy
			}
			t.keepHigher(current, "stream "+cfg.Name, &cfg.Replicas, &cfg.MaxAge, &cfg.MaxBytes)
			if sameStream(*current, cfg) {
				continue
			}
		}
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, storageError(err))
		}
	}
	for _, cfg := range t.BucketConfigs() {
		current, err := currentConfig(ctx, js, "KV_"+cfg.Bucket)
		if err != nil {
			return fmt.Errorf("ensure bucket %s: %w", cfg.Bucket, err)
		}
		if current != nil {
			t.keepHigher(current, "bucket "+cfg.Bucket, &cfg.Replicas, &cfg.TTL, &cfg.MaxBytes)
			if sameBucket(*current, cfg) {
				continue
			}
		}
		if _, err := js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			return fmt.Errorf("ensure bucket %s: %w", cfg.Bucket, storageError(err))
		}
	}
	for _, bucket := range []string{contract.BucketJobs, contract.BucketDeliveries} {
		if err := allowAtomicPublish(ctx, js, "KV_"+bucket); err != nil {
			return fmt.Errorf("ensure bucket %s: %w", bucket, err)
		}
	}
	return nil
}

// currentConfig is the configuration of the stream name; nil if there is
// none.
func currentConfig(ctx context.Context, js jetstream.JetStream, name string) (*jetstream.StreamConfig, error) {
	stream, err := js.Stream(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	cfg := stream.CachedInfo().Config
	return &cfg, nil
}

// keepHigher, with KeepHigher, raises replicas, maxAge and maxBytes to the
// current configuration's where it has more (a zero age and a negative or
// zero size are no limit), and reports each.
func (t Topology) keepHigher(current *jetstream.StreamConfig, what string, replicas *int, maxAge *time.Duration, maxBytes *int64) {
	if !t.KeepHigher {
		return
	}
	kept := func(setting string, have, want any) {
		if t.Kept != nil {
			t.Kept(fmt.Sprintf("%s keeps %s %v, more than this process's %v", what, setting, have, want))
		}
	}
	if current.Replicas > *replicas {
		kept("replicas", current.Replicas, *replicas)
		*replicas = current.Replicas
	}
	if *maxAge > 0 && (current.MaxAge == 0 || current.MaxAge > *maxAge) {
		kept("max age", current.MaxAge, *maxAge)
		*maxAge = current.MaxAge
	}
	if *maxBytes > 0 && (current.MaxBytes <= 0 || current.MaxBytes > *maxBytes) {
		kept("max bytes", current.MaxBytes, *maxBytes)
		*maxBytes = current.MaxBytes
	}
}

// sameStream tells whether a stream configured as current already has
// every setting of want that hookstream gives.
func sameStream(current, want jetstream.StreamConfig) bool {
	return current.Description == want.Description && slices.Equal(current.Subjects, want.Subjects) &&
		current.Retention == want.Retention && current.Storage == want.Storage && current.Discard == want.Discard &&
		current.MaxBytes == want.MaxBytes && current.MaxAge == want.MaxAge && current.Replicas == want.Replicas &&
		current.Duplicates == want.Duplicates && current.AllowAtomicPublish == want.AllowAtomicPublish &&
		current.AllowMsgSchedules == want.AllowMsgSchedules
}

// sameBucket tells whether a bucket whose stream is configured as current
// already has every setting of want that hookstream gives. Its stream
// also allows atomic publishes where Ensure set that (allowAtomicPublish).
func sameBucket(current jetstream.StreamConfig, want jetstream.KeyValueConfig) bool {
	history := max(int64(want.History), 1)
	return current.Description == want.Description && current.MaxAge == want.TTL &&
		current.Replicas == max(want.Replicas, 1) && current.MaxMsgsPerSubject == history &&
		current.Storage == want.Storage && (want.MaxBytes == 0 && current.MaxBytes <= 0 || current.MaxBytes == want.MaxBytes)
}

// errCodeInsufficientResources is JetStream's answer when a stream's
// storage reservation does not fit the server's limit.
const errCodeInsufficientResources = 10047

// storageError explains JetStream's refusal of a stream for want of
// storage: the server's limit is, by default, three quarters of the disk
// space free at its start.
func storageError(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeInsufficientResources {
		return fmt.Errorf("%w: the jobs and events streams reserve HOOKSTREAM_STREAM_MAX_BYTES of disk each (1 GiB by default), and JetStream takes at most three quarters of the disk space free when it starts; free disk space or lower HOOKSTREAM_STREAM_MAX_BYTES", err)
	}
	return err
}

// allowAtomicPublish lets a bucket's stream take group commits, which the
// key-value API has no setting for.
func allowAtomicPublish(ctx context.Context, js jetstream.JetStream, name string) error {
	stream, err := js.Stream(ctx, name)
	if err != nil {
		return err
	}
	cfg := stream.CachedInfo().Config
	if cfg.AllowAtomicPublish {
		return nil
	}
	cfg.AllowAtomicPublish = true
	_, err = js.UpdateStream(ctx, cfg)
	return err
}
