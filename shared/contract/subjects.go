package contract

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"
)

// Streams and key-value buckets. Everything hookstream keeps in NATS is named
// with the HOOKSTREAM_ prefix so that it can share a cluster.
const (
	// StreamJobs holds submitted jobs until a processor settles them
	// (limits retention, trimmed up to the processors' ack floors).
	// Subjects: SubjectJobs.
	StreamJobs = "HOOKSTREAM_JOBS"
	// StreamEvents holds published events until the notifier has fanned them
	// out into deliveries (limits retention, trimmed). Subjects:
	// SubjectEvents.
	StreamEvents = "HOOKSTREAM_EVENTS"
	// StreamDeliveries holds webhook deliveries and their scheduled retries
	// (limits retention, deliveries trimmed). Subjects: SubjectDeliveries,
	// SubjectRetries.
	StreamDeliveries = "HOOKSTREAM_DELIVERIES"

	// BucketJobs maps a job id to its [Job] record: the job's state.
	BucketJobs = "HOOKSTREAM_JOB_STATE"
	// BucketDeliveries maps "<tenant>.<target>.<job or event key>.<delivery
	// id>" (Delivery.LogKey; records written before the target was in the
	// key have three tokens, "<tenant>.<job or event key>.<delivery id>") to
	// a [DeliveryRecord]: the attempt log of one delivery.
	BucketDeliveries = "HOOKSTREAM_DELIVERY_LOG"
	// BucketEndpoints maps "<tenant>.<endpoint id>" to a registered endpoint
	// (its signing keyring sealed).
	BucketEndpoints = "HOOKSTREAM_ENDPOINTS"
	// BucketAPIKeys maps an API key id to its tenant and key hash.
	BucketAPIKeys = "HOOKSTREAM_API_KEYS"
	// StreamTasks holds background tasks (endpoint recoveries) until the
	// notifier has finished them (work-queue retention). Subjects:
	// SubjectTasks.
	StreamTasks = "HOOKSTREAM_TASKS"
	// StreamDeadLetters keeps messages that could never be processed
	// (malformed events), with the reason, for the operator to inspect.
	StreamDeadLetters = "HOOKSTREAM_DEAD_LETTERS"
	// BucketTenants holds per-tenant settings such as signing secrets, keyed
	// "<tenant>.signing".
	BucketTenants = "HOOKSTREAM_TENANTS"
	// KeySecretKeyFingerprint is the key in BucketTenants that holds the
	// fingerprint of the deployment's HOOKSTREAM_SECRET_KEY, written by the
	// first service to start ('=' is in no tenant id).
	KeySecretKeyFingerprint = "=secret-key"
	// KeyDeliveryLogKeys is the key in BucketTenants written by the first
	// intake or notifier to start that wrote BucketDeliveries keys naming
	// their target: the write's time says when, and its value
	// {"log_was_empty"} whether the log had any record then.
	KeyDeliveryLogKeys = "=delivery-log-keys"
	// StreamParked holds the deliveries of endpoints whose circuit is open,
	// out of the way of everyone else's, until the endpoint answers again
	// (work-queue retention, a consumer per endpoint). Subjects:
	// SubjectParked.
	StreamParked = "HOOKSTREAM_PARKED"
)

// Subject roots and wildcards.
const (
	// SubjectJobs is the root of job submissions:
	// hookstream.jobs.<tenant>.<job type>.
	SubjectJobs = "hookstream.jobs"
	// SubjectEvents is the root of events for fan-out:
	// hookstream.events.<tenant>.<event type>, where the event type may
	// itself contain dots (invoice.paid).
	SubjectEvents = "hookstream.events"
	// SubjectDeliveries is the root of webhook deliveries:
	// hookstream.deliveries.<tenant>.<target>.
	SubjectDeliveries = "hookstream.deliveries"
	// SubjectRetries is the root of scheduled delivery retries:
	// hookstream.retries.<delivery id>. A message here is a NATS message
	// schedule that republishes the delivery on SubjectDeliveries when due.
	SubjectRetries = "hookstream.retries"
	// SubjectTasks is the root of background tasks:
	// hookstream.tasks.<tenant>.<kind>, e.g. hookstream.tasks.acme.recover.
	SubjectTasks = "hookstream.tasks"
	// SubjectDeadLetters is the root of dead letters:
	// hookstream.dead.<kind>, e.g. hookstream.dead.events.
	SubjectDeadLetters = "hookstream.dead"
	// SubjectParked is the root of parked deliveries:
	// hookstream.parked.<tenant>.<target>, a delivery message as it was on
	// SubjectDeliveries.
	SubjectParked = "hookstream.parked"
)

// JobSubject is the subject a job of the given type is submitted on.
func JobSubject(tenant, jobType string) string {
	return SubjectJobs + "." + tenant + "." + jobType
}

// JobBatchToken marks the subject of a job batch (JobBatch):
// hookstream.jobs.<tenant>.$batch.<job type>. No job type starts with it
// ('$' is not allowed in types), so a consumer of one type's jobs
// (hookstream.jobs.*.<type>, such as a processor that does not know
// batches) never reads one; processors read them with a consumer of their
// own.
const JobBatchToken = "$batch"

// JobBatchSubject is the subject of a batch of jobs of the given type.
func JobBatchSubject(tenant, jobType string) string {
	return SubjectJobs + "." + tenant + "." + JobBatchToken + "." + jobType
}

// ParseJobBatchSubject splits hookstream.jobs.<tenant>.$batch.<job type>.
func ParseJobBatchSubject(subject string) (tenant, jobType string, err error) {
	tenant, rest, err := splitTenantSubject(SubjectJobs, strings.Replace(subject, "."+JobBatchToken+".", ".", 1))
	if err != nil || JobBatchSubject(tenant, rest) != subject {
		return "", "", fmt.Errorf("subject %q is not %s.<tenant>.%s.<type>", subject, SubjectJobs, JobBatchToken)
	}
	return tenant, rest, nil
}

// EventSubject is the subject an event of the given type is published on.
func EventSubject(tenant, eventType string) string {
	return SubjectEvents + "." + tenant + "." + eventType
}

// DeliverySubject is the subject of a delivery to one target of a tenant.
func DeliverySubject(tenant, target string) string {
	return SubjectDeliveries + "." + tenant + "." + target
}

// RetrySubject is the schedule subject of a delivery's pending retry.
func RetrySubject(deliveryID string) string {
	return SubjectRetries + "." + deliveryID
}

// ParkedSubject is the subject the deliveries to one target of a tenant are
// parked on while the target's circuit is open.
func ParkedSubject(tenant, target string) string {
	return SubjectParked + "." + tenant + "." + target
}

// ParseParkedSubject splits hookstream.parked.<tenant>.<target> into its
// tenant and target.
func ParseParkedSubject(subject string) (tenant, target string, err error) {
	return splitTenantSubject(SubjectParked, subject)
}

// ParseJobSubject splits hookstream.jobs.<tenant>.<type> into its tenant and
// job type.
func ParseJobSubject(subject string) (tenant, jobType string, err error) {
	return splitTenantSubject(SubjectJobs, subject)
}

// ParseEventSubject splits hookstream.events.<tenant>.<type> into its tenant
// and event type (which may contain dots).
func ParseEventSubject(subject string) (tenant, eventType string, err error) {
	return splitTenantSubject(SubjectEvents, subject)
}

func splitTenantSubject(root, subject string) (string, string, error) {
	rest, ok := strings.CutPrefix(subject, root+".")
	if !ok {
		return "", "", fmt.Errorf("subject %q is not under %s", subject, root)
	}
	tenant, typ, ok := strings.Cut(rest, ".")
	if !ok || !ValidTenant(tenant) || !ValidType(typ) {
		return "", "", fmt.Errorf("subject %q is not %s.<tenant>.<type>", subject, root)
	}
	return tenant, typ, nil
}

// ParseDeliverySubject splits hookstream.deliveries.<tenant>.<target> into
// its tenant and target (an endpoint id, or "cb" for a job's callback).
func ParseDeliverySubject(subject string) (tenant, target string, err error) {
	return splitTenantSubject(SubjectDeliveries, subject)
}

// ParseTaskSubject splits hookstream.tasks.<tenant>.<kind>.
func ParseTaskSubject(subject string) (tenant, kind string, err error) {
	return splitTenantSubject(SubjectTasks, subject)
}

// ValidTenant reports whether s can be a tenant id: 1 to 64 characters of
// a-z, A-Z, 0-9, '-' and '_'.
func ValidTenant(s string) bool {
	return len(s) > 0 && len(s) <= 64 && allChars(s, false)
}

// ValidType reports whether s can be a job or event type: 1 to 128
// characters of a-z, A-Z, 0-9, '-', '_' and '.', with no empty dot-separated
// part.
func ValidType(s string) bool {
	if len(s) == 0 || len(s) > 128 || !allChars(s, true) {
		return false
	}
	for part := range strings.SplitSeq(s, ".") {
		if part == "" {
			return false
		}
	}
	return true
}

func allChars(s string, dots bool) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
		case r == '.' && dots:
		default:
			return false
		}
	}
	return true
}

var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// DeliveryID is the webhook-id of the delivery of an event to a target (an
// endpoint id, or "cb" for a job's own callback URL). It is derived, not
// random, so that fan-out run twice for the same event publishes the same
// deliveries, which JetStream de-duplicates, and receivers can de-duplicate
// on it.
func DeliveryID(eventID, target string) string {
	sum := sha256.Sum256([]byte(eventID + "\x00" + target))
	return "msg_" + idEncoding.EncodeToString(sum[:16])
}
