package contract

import (
	"crypto/sha256"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Job statuses.
const (
	StatusQueued    = "queued"
	StatusRunning   = "running"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusCanceled  = "canceled"
)

// Job event types.
const (
	EventJobRunning   = "job.running"
	EventJobSucceeded = "job.succeeded"
	EventJobFailed    = "job.failed"
	EventJobCanceled  = "job.canceled"
	// EventPing is the type of test deliveries.
	EventPing = "ping"
)

// SequenceJobID is the id of the job whose message is at sequence seq of the
// jobs stream: job_s<seq>, or job_s<n>_<nonce> with a nonce, where intake
// and the processors make n the sequence masked with a key of the
// deployment (secretbox.Box.JobIDMask), so that ids do not tell how many
// jobs the deployment takes.
func SequenceJobID(n uint64, nonce string) string {
	id := "job_s" + strconv.FormatUint(n, 10)
	if nonce != "" {
		id += "_" + nonce
	}
	return id
}

// ParseSequenceJobID reads the number and nonce of an id that SequenceJobID
// made with a nonce; only that exact spelling is one (no leading zeros).
func ParseSequenceJobID(id string) (n uint64, nonce string, ok bool) {
	rest, ok := strings.CutPrefix(id, "job_s")
	if !ok {
		return 0, "", false
	}
	digits, nonce, ok := strings.Cut(rest, "_")
	if !ok || nonce == "" || !allChars(nonce, false) {
		return 0, "", false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || SequenceJobID(n, nonce) != id {
		return 0, "", false
	}
	return n, nonce, true
}

// Terminal reports whether a job in this status will not change again.
func Terminal(status string) bool {
	return status == StatusSucceeded || status == StatusFailed || status == StatusCanceled
}

// JobRequest is the body of a job message on hookstream.jobs.<tenant>.<type>.
// Internal services may publish one directly; set Nats-Msg-Id to a unique id
// ("job_" + something unique) so that a retried publish is not run twice.
// The job id is, in order: ID; for a message with a Nonce (intake's),
// SequenceJobID(stream sequence ^ mask, Nonce); Nats-Msg-Id; else
// SequenceJobID(stream sequence, "") = job_s<sequence>. Internal publishers
// leave Nonce out.
type JobRequest struct {
	// ID is the job id. Optional for internal publishers (see above).
	ID string `json:"id,omitempty"`
	// Nonce is set by intake on the jobs whose record the processor writes:
	// their id is SequenceJobID(stream sequence ^ mask, Nonce), so that
	// intake can find a job's message by its id before the record exists,
	// and ids stay unguessable.
	Nonce string `json:"nonce,omitempty"`
	// CreatedAt is when intake accepted the job; without it, the time the
	// message was stored. Internal publishers leave it out: a body sent
	// twice past the de-duplication window with one created_at would look
	// like one message to the processors, which could run the job twice.
	CreatedAt *time.Time `json:"created_at,omitempty"`
	// Payload is the job's input, any JSON value.
	Payload json.RawMessage `json:"payload,omitempty"`
	// CallbackURL optionally receives the job's terminal event.
	CallbackURL string `json:"callback_url,omitempty"`
	// Metadata is free-form string data echoed on the job resource.
	Metadata map[string]string `json:"metadata,omitempty"`
	// NotBefore, when set, is the earliest time the job runs: a processor
	// that receives it sooner puts it back until then. Processors set it
	// on a job of a batch that is to be retried, which is written again as
	// a message of its own. Internal publishers leave it out: one more than
	// an hour ahead is not honoured (the job runs at once).
	NotBefore *time.Time `json:"not_before,omitempty"`
	// RequestHash is set by intake (the SHA-256 of the HTTP request), so
	// that a record recreated from this message still recognises a repeated
	// Idempotency-Key. Internal publishers leave it out.
	RequestHash string `json:"request_hash,omitempty"`
}

// JobBatch is the body of a message on JobBatchSubject, with the header
// [HeaderJobBatch]: several jobs of one tenant and type. Intake writes the
// jobs that wait for the same subject at the same moment as one message,
// so that they cost one disk write together; each has its Nonce and no ID,
// and its id is SequenceJobID(stream sequence ^ mask, Nonce) with the
// message's sequence. Only hookstream's processors read batches; internal
// publishers publish one JobRequest per message.
type JobBatch struct {
	Jobs []JobRequest `json:"jobs"`
}

// Job is the job resource: what GET /v1/jobs/{id} returns and what job
// events carry as their data.
type Job struct {
	ID       string            `json:"id"`
	Type     string            `json:"type"`
	Status   string            `json:"status"`
	Attempts int               `json:"attempts"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// Progress is the latest progress the job's handler reported, any
	// JSON value (processor.Job.Progress).
	Progress    json.RawMessage `json:"progress,omitempty"`
	Result      json.RawMessage `json:"result,omitempty"`
	Error       string          `json:"error,omitempty"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
	CompletedAt *time.Time      `json:"completed_at,omitempty"`
	ExpiresAt   time.Time       `json:"expires_at"`
	// Omitted names the fields ("result", "progress") that a job event
	// leaves out because they would make it too large for NATS; the job's
	// record keeps them (GET /v1/jobs/{id}). Only events carry it.
	Omitted []string `json:"omitted,omitempty"`
}

// JobRecord is a job's state as kept in [BucketJobs]: the resource plus what
// only hookstream needs.
type JobRecord struct {
	Job
	Tenant string `json:"tenant"`
	// Payload is the job's input, kept for the processor.
	Payload json.RawMessage `json:"payload,omitempty"`
	// CallbackURL receives the job's terminal event.
	CallbackURL string `json:"callback_url,omitempty"`
	// RequestHash is the SHA-256 of the submitted request, used to tell a
	// repeated Idempotency-Key with another body.
	RequestHash string `json:"request_hash,omitempty"`
	// HandedOff is set once a job of a batch (JobBatch) has been written
	// again as a message of its own: that message runs it from then on, and
	// the batch, delivered again, never writes another.
	HandedOff bool `json:"handed_off,omitempty"`
	// RunBy is the jobs-stream sequence of the message whose processing
	// claimed the job's latest attempt. Another message of the same job (a
	// duplicate published past JetStream's de-duplication window, by a
	// repeated Idempotency-Key for one) leaves a job that runs, or ran, from
	// that message alone: that message settles it.
	RunBy uint64 `json:"run_by,omitempty"`
}

// Delivery is one webhook to send: a message on
// hookstream.deliveries.<tenant>.<target>. Its ID is the webhook-id and stays
// the same on every attempt.
type Delivery struct {
	ID        string `json:"id"`
	Tenant    string `json:"tenant"`
	EventID   string `json:"event_id"`
	EventType string `json:"event_type"`
	// JobID is set for job events.
	JobID string `json:"job_id,omitempty"`
	// EndpointID is set for deliveries to a registered endpoint, whose URL,
	// secrets and headers are read when each attempt is made; URL is then
	// empty.
	EndpointID string `json:"endpoint_id,omitempty"`
	// URL is the job's own callback URL, for deliveries to it.
	URL string `json:"url,omitempty"`
	// Body is the exact webhook body sent on every attempt.
	Body json.RawMessage `json:"body"`
	// CreatedAt is when the delivery was created by fan-out.
	CreatedAt time.Time `json:"created_at"`
	// Attempts made so far, oldest first; empty on the first send.
	Attempts []Attempt `json:"attempts,omitempty"`
	// Replay marks a manual re-send (retry, recover): one attempt now, no
	// retry schedule after it.
	Replay bool `json:"replay,omitempty"`
}

// LogKey is the key of a delivery's record in [BucketDeliveries]:
// "<tenant>.<target>.<job or event>.<delivery id>", the target being its
// endpoint's id or CallbackTarget, so that nats-server finds the records of
// one endpoint, of one job or of one event by their keys.
func (d Delivery) LogKey() string {
	return d.Tenant + "." + LogTarget(d.EndpointID) + "." + KeyToken(d.owner()) + "." + d.ID
}

// OldLogKey is the key the delivery's record had before keys named its
// target, "<tenant>.<job or event>.<delivery id>": a record written so by
// an older notifier stays there until it expires, and once the delivery is
// written again, under LogKey, the newer write stands for it.
func (d Delivery) OldLogKey() string {
	return d.Tenant + "." + KeyToken(d.owner()) + "." + d.ID
}

// owner is what a delivery's record is kept under: its job, or its event.
func (d Delivery) owner() string {
	if d.JobID != "" {
		return d.JobID
	}
	return d.EventID
}

// CallbackTarget stands for a job's own callback URL where a delivery's
// target is named (its subject, its record's key).
const CallbackTarget = "cb"

// LogTarget is the target token of the record key of a delivery to
// endpointID, or to a job's callback URL when it is empty.
func LogTarget(endpointID string) string {
	if endpointID == "" {
		return CallbackTarget
	}
	return KeyToken(endpointID)
}

// KeyToken returns s if it can stand as one token of a KV key (1-64 of
// a-z A-Z 0-9 - _), else "h_" and a hash of it, so that event ids chosen by
// publishers never make a key invalid.
func KeyToken(s string) string {
	if ValidTenant(s) {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "h_" + idEncoding.EncodeToString(sum[:16])
}

// Delivery statuses.
const (
	DeliveryPending   = "pending"
	DeliverySucceeded = "succeeded"
	// DeliveryFailed is a delivery that exhausted its retry schedule: it is
	// dead-lettered and can be retried.
	DeliveryFailed = "failed"
)

// DeliveryRecord is a delivery's attempt log in [BucketDeliveries].
type DeliveryRecord struct {
	ID         string    `json:"id"`
	EventID    string    `json:"event_id"`
	EventType  string    `json:"event_type"`
	JobID      string    `json:"job_id,omitempty"`
	EndpointID string    `json:"endpoint_id,omitempty"`
	URL        string    `json:"url"`
	Status     string    `json:"status"`
	Attempts   []Attempt `json:"attempts"`
	// NextAttemptAt is when the next retry is due while pending.
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	// Body is kept so that a dead-lettered delivery can be sent again.
	Body      json.RawMessage `json:"body,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
	// Key is the key the record was read at, set by its reader; not stored.
	Key string `json:"-"`
}

// Attempt is one try at sending a delivery.
type Attempt struct {
	At         time.Time `json:"at"`
	StatusCode int       `json:"status_code,omitempty"`
	LatencyMS  int64     `json:"latency_ms"`
	Error      string    `json:"error,omitempty"`
	// Response is the first bytes of the response body.
	Response string `json:"response,omitempty"`
}

// Task states.
const (
	TaskQueued  = "queued"
	TaskRunning = "running"
	TaskDone    = "done"
	// TaskPending is a task's record while intake decides whether the
	// tenant has room for it, before its message is published: a message
	// whose record is missing or pending is not run.
	TaskPending = "pending"
)

// Task is a background task (kind "recover": re-send an endpoint's failed
// deliveries of a window). It is both the message on
// hookstream.tasks.<tenant>.<kind> and, with its progress, the record at
// "<tenant>.tasks.<id>" in BucketTenants that GET /v1/tasks/{id} returns.
type Task struct {
	ID         string     `json:"id"`
	Kind       string     `json:"kind"`
	EndpointID string     `json:"endpoint_id"`
	Since      time.Time  `json:"since"`
	Until      *time.Time `json:"until,omitempty"`
	Status     string     `json:"status"`
	// Resent counts the deliveries sent again so far.
	Resent    int       `json:"resent"`
	Error     string    `json:"error,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// TaskKey is a task's key in BucketTenants.
func TaskKey(tenant, id string) string { return tenant + ".tasks." + id }

// EndpointKeyKey is the key in BucketTenants of what an Idempotency-Key of
// POST /v1/endpoints made, the key's hash a key token.
func EndpointKeyKey(tenant, hash string) string { return tenant + ".endpointkeys." + hash }

// TenantDeletedKey marks a deleted tenant in BucketTenants: its id is not
// given again, and its jobs' callbacks are no longer sent.
func TenantDeletedKey(tenant string) string { return tenant + ".deleted" }

// WebhookBody is the JSON body of every webhook hookstream sends.
type WebhookBody struct {
	Type      string          `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}
