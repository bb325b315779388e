package intake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/jobevents"
	"github.com/hookstream/hookstream/shared/jobstore"
	"github.com/hookstream/hookstream/shared/metrics"
)

// createJobRequest is the body of POST /v1/jobs.
type createJobRequest struct {
	Type        string          `json:"type"`
	Payload     json.RawMessage `json:"payload"`
	CallbackURL string          `json:"callback_url,omitempty"`
	Metadata    stringValues    `json:"metadata,omitempty"`
}

// Metadata limits.
const (
	maxMetadataKeys     = 32
	maxMetadataKeyLen   = 64
	maxMetadataValueLen = 512
	maxIdempotencyKey   = 255
)

var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

func newJobID() string { return newID("job_") }

// idempotentJobID derives the job id from the tenant and Idempotency-Key, so
// that the job record itself is the durable idempotency record.
func idempotentJobID(tenant, key string) string { return idempotentID("job_", tenant, key) }

// idempotentID derives an id from the tenant and an Idempotency-Key: what
// the key made is found again under it.
func idempotentID(prefix, tenant, key string) string {
	sum := sha256.Sum256([]byte(tenant + "\x00" + key))
	return prefix + idEncoding.EncodeToString(sum[:16])
}

// idempotencyKey reads a request's Idempotency-Key: "" when it has none,
// 422 when it is longer than maxIdempotencyKey.
func idempotencyKey(c *gin.Context) (string, error) {
	key := c.GetHeader("Idempotency-Key")
	if len(key) > maxIdempotencyKey {
		return "", invalid(fmt.Sprintf("Idempotency-Key is longer than %d characters", maxIdempotencyKey))
	}
	return key, nil
}

func (s *Service) validateJob(req *createJobRequest) error {
	switch {
	case req.Type == "":
		return invalid(`field "type" is required`)
	case !s.jobTypes[req.Type]:
		return invalid(fmt.Sprintf("unknown job type %q; known types: %s", req.Type, strings.Join(s.cfg.JobTypes, ", ")))
	case len(req.Metadata) > maxMetadataKeys:
		return invalid(fmt.Sprintf(`field "metadata" has more than %d keys`, maxMetadataKeys))
	}
	if req.CallbackURL != "" {
		if err := s.cfg.Guard.CheckURL(req.CallbackURL); err != nil {
			return invalid(fmt.Sprintf(`field "callback_url": %v`, err))
		}
	}
	for k, v := range req.Metadata {
		if k == "" || len(k) > maxMetadataKeyLen || len(v) > maxMetadataValueLen {
			return invalid(fmt.Sprintf(`field "metadata": keys must be 1-%d bytes and values at most %d bytes`, maxMetadataKeyLen, maxMetadataValueLen))
		}
	}
	if len(req.Payload) == 0 {
		req.Payload = json.RawMessage("null")
	}
	// Without a space, tab or line break anywhere (a JSON string holds no
	// raw tab or line break), the payload is compact already.
	if bytes.ContainsAny(req.Payload, " \t\r\n") {
		var compact bytes.Buffer
		if err := json.Compact(&compact, req.Payload); err == nil {
			req.Payload = compact.Bytes()
		}
	}
	if most := s.maxPayload; most > 0 && req.recordSize(most-maxPayloadHeadroom) > most-maxPayloadHeadroom {
		// Its record, and the message that carries it, would not fit: a
		// processor could never store the job's outcome.
		return &apiError{status: http.StatusRequestEntityTooLarge, slug: "too-large",
			detail: fmt.Sprintf("the job is larger than the NATS server takes in a message (%d bytes, with %d for its record's other fields)", most, maxPayloadHeadroom)}
	}
	return nil
}

// recordSize is what the job's payload, callback URL and metadata take in
// its record, as encoding/json writes them; or their plain size while even
// 6 bytes for each of them (the most an escape takes) stays within room,
// which spares the common small request a scan of its payload.
func (req createJobRequest) recordSize(room int64) int64 {
	plain := len(req.Payload) + len(req.CallbackURL)
	for k, v := range req.Metadata {
		plain += len(k) + len(v)
	}
	if 6*int64(plain) <= room {
		return int64(plain)
	}
	size := rawEncodedLen(req.Payload) + encodedLen(req.CallbackURL)
	for k, v := range req.Metadata {
		size += encodedLen(k) + encodedLen(v)
	}
	return int64(size)
}

// encodedLen is the length of a string in a record written by
// encoding/json, which escapes quotes, backslashes, control characters,
// <, > and & (as \u003c and the like) and U+2028 and U+2029.
func encodedLen(s string) int { return escapedLen(s, true) }

// rawEncodedLen is encodedLen for JSON already valid (json.RawMessage),
// whose strings are escaped already but for <, >, & and U+2028 and U+2029.
func rawEncodedLen(b []byte) int { return escapedLen(b, false) }

func escapedLen[T string | []byte](s T, str bool) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '<' || c == '>' || c == '&' || (str && c < 0x20):
			n += 5
		case str && (c == '"' || c == '\\'):
			n++
		case c == 0xE2 && i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xA8 || s[i+2] == 0xA9):
			n += 3
		}
	}
	return n
}

func (req createJobRequest) hash() string {
	data, _ := json.Marshal(req) // maps marshal with sorted keys
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func (s *Service) createJob(c *gin.Context) {
	var req createJobRequest
	if err := readJSON(c, s.cfg.MaxBodyBytes, s.cfg.MaxJSONDepth, &req); err != nil {
		s.respondError(c, err)
		return
	}
	if err := s.validateJob(&req); err != nil {
		s.respondError(c, err)
		return
	}
	tenant := tenantOf(c)
	var id string // a job stored as its message alone gets its id from submitJob
	idemKey, err := idempotencyKey(c)
	if err != nil {
		s.respondError(c, err)
		return
	}
	switch {
	case idemKey != "":
		id = idempotentJobID(tenant, idemKey)
	case s.external[req.Type]:
		id = newJobID()
	}
	now := s.now().UTC()
	rec := contract.JobRecord{
		Job: contract.Job{
			ID: id, Type: req.Type, Status: contract.StatusQueued, Metadata: req.Metadata,
			CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(s.cfg.JobRetention),
		},
		Tenant: tenant, Payload: req.Payload, CallbackURL: req.CallbackURL,
	}
	if idemKey != "" { // the hash only tells a repeated key's request from another
		rec.RequestHash = req.hash()
	}
	ctx, cancel := s.publishContext(c)
	defer cancel()
	var stored contract.JobRecord
	var replayed bool
	switch {
	case idemKey != "":
		stored, replayed, err = s.storeJob(ctx, rec)
	case s.external[rec.Type]:
		stored, err = s.storeNewJob(ctx, rec)
	default:
		stored, err = s.submitJob(ctx, rec)
	}
	if err != nil {
		s.respondError(c, err)
		return
	}
	if replayed {
		c.Header("Idempotent-Replayed", "true")
	} else {
		metrics.JobsAccepted.Inc("")
	}
	self := "/v1/jobs/" + stored.ID
	h := c.Writer.Header()
	h["Location"] = []string{self}
	if !contract.Terminal(stored.Status) { // a replay may find it finished
		h["Retry-After"] = s.retryAfter
	}
	c.Data(http.StatusAccepted, jsonContentType, appendAccepted(make([]byte, 0, 320), stored, self))
}

// storeJob stores a job whose id comes from its Idempotency-Key: the record
// and the message are written at the same time, and it returns only once
// JetStream has acknowledged both. A repeated key finds the stored record:
// the same request gets that job back (its message was published again, in
// case the first attempt never got that far; JetStream and the processor
// de-duplicate), another request gets 422 (and the processor drops the
// message published for it, whose request hash is not the record's).
func (s *Service) storeJob(ctx context.Context, rec contract.JobRecord) (contract.JobRecord, bool, error) {
	rev, err, _, pubErr := s.writeJob(ctx, rec)
	switch {
	case errors.Is(err, jobstore.ErrExists):
		existing, err := s.sameRequest(ctx, rec)
		if err != nil {
			return contract.JobRecord{}, false, err
		}
		if existing.RequestHash != rec.RequestHash && existing.Status == contract.StatusQueued {
			// The same request written otherwise: the message published
			// for it is not the record's (the processor drops it), and the
			// record's own may never have been stored.
			_, pubErr = s.publishJob(ctx, existing)
		}
		if pubErr != nil && existing.Status == contract.StatusQueued {
			return contract.JobRecord{}, false, pubErr // its message may never have been stored
		}
		// A processor that took this request's own message first made the
		// record from it (with this request's created_at): no replay.
		return existing, !existing.CreatedAt.Equal(rec.CreatedAt), nil
	case err != nil:
		// If the message is stored, the processor makes the record from it;
		// the client retries with the same key either way.
		return contract.JobRecord{}, false, err
	case pubErr != nil:
		s.forgetUnpublished(rec.ID, rev, pubErr)
		return contract.JobRecord{}, false, pubErr
	}
	return rec, false, nil
}

// sameRequest returns the stored job of a repeated Idempotency-Key, or 422
// when it was made by another request.
func (s *Service) sameRequest(ctx context.Context, rec contract.JobRecord) (contract.JobRecord, error) {
	existing, _, err := s.jobs.Get(ctx, rec.ID)
	if errors.Is(err, jobstore.ErrNotFound) {
		// The write said the record exists, the read did not see it yet
		// (a replica behind its leader in a cluster): unclear, retry.
		return contract.JobRecord{}, unavailable(s.cfg.RetryAfter)
	}
	if err != nil {
		return contract.JobRecord{}, err
	}
	if existing.Tenant != rec.Tenant || (existing.RequestHash != rec.RequestHash && !sameJobRequest(existing, rec)) {
		return contract.JobRecord{}, invalid("Idempotency-Key was already used with a different request")
	}
	return existing, nil
}

// sameJobRequest tells whether two jobs were asked for with the same
// request, written otherwise (the request hash is of its bytes): members
// in another order, escapes, 1.0 for 1 (sameJSON).
func sameJobRequest(a, b contract.JobRecord) bool {
	none := func(p json.RawMessage) bool { return len(p) == 0 || string(p) == "null" } // a record written elsewhere may leave it out
	samePayload := none(a.Payload) && none(b.Payload) || !none(a.Payload) && !none(b.Payload) && sameJSON(a.Payload, b.Payload)
	return a.Type == b.Type && a.CallbackURL == b.CallbackURL && maps.Equal(a.Metadata, b.Metadata) && samePayload
}

// storeNewJob stores a job with a fresh random id: no earlier record can
// exist, so the record and the message are written at the same time, and
// the 202 waits for one round trip to JetStream instead of two. The id is
// ours alone, so a record that exists already was made from our own message
// by a fast processor.
func (s *Service) storeNewJob(ctx context.Context, rec contract.JobRecord) (contract.JobRecord, error) {
	rev, createErr, seq, pubErr := s.writeJob(ctx, rec)
	if errors.Is(createErr, jobstore.ErrExists) {
		createErr = nil
	}
	if pubErr != nil {
		if createErr == nil && rev != 0 {
			s.forgetUnpublished(rec.ID, rev, pubErr)
		}
		return contract.JobRecord{}, pubErr
	}
	if createErr != nil {
		if err := s.recordOrWithdraw(ctx, rec, seq, createErr); err != nil {
			return contract.JobRecord{}, err
		}
	}
	return rec, nil
}

// recordOrWithdraw deals with a job whose message is stored (at seq) but
// whose record could not be written (createErr): the processors of
// external types read the record, and a client answered 503 sends the job
// again. The record is tried once more; failing that, the message is
// removed, so that the 503 is true. Only if that fails too may the job be
// stored twice.
func (s *Service) recordOrWithdraw(ctx context.Context, rec contract.JobRecord, seq uint64, createErr error) error {
	// On contexts of their own: the first write may have failed for the
	// request's deadline, and the second for its own.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.PublishTimeout)
	defer cancel()
	_, err := s.jobs.Create(cctx, rec)
	if err == nil || errors.Is(err, jobstore.ErrExists) {
		return nil
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.PublishTimeout)
	defer cancel()
	if err := s.jobsStream.DeleteMsg(dctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		s.logger.Warn("withdraw the message of a job whose record was not written; the client was told to retry", "job_id", rec.ID, "error", err)
	}
	return createErr
}

// submitJob stores a job as its message alone, for a processor of
// hookstream's own to write its record: one JetStream write instead of two,
// shared with the other jobs for the same subject that wait at the same
// moment (jobBatcher). The job's id is made from the message's stream
// sequence, masked with the deployment's key, and a random nonce, so that
// findJob can read the job from its message until then.
func (s *Service) submitJob(ctx context.Context, rec contract.JobRecord) (contract.JobRecord, error) {
	nonce := newID("")
	data := appendJobRequest(make([]byte, 0, 128+len(rec.Payload)+len(rec.CallbackURL)), nonce, rec)
	seq, err := s.batcher.submit(ctx, rec.Tenant, rec.Type, data)
	if err != nil {
		return contract.JobRecord{}, err
	}
	rec.ID = contract.SequenceJobID(seq^s.cfg.Box.JobIDMask(nonce), nonce)
	return rec, nil
}

// findJob returns a tenant's job and the revision of its record: the
// record, or, for a job submitted without one (submitJob) that no processor
// has taken yet, the job read from its message, at revision 0. Another
// tenant's job is ErrNotFound, as is one that does not exist.
func (s *Service) findJob(ctx context.Context, tenant, id string) (contract.JobRecord, uint64, error) {
	rec, rev, err := s.jobs.GetForTenant(ctx, tenant, id)
	if !errors.Is(err, jobstore.ErrNotFound) {
		return rec, rev, err
	}
	masked, nonce, ok := contract.ParseSequenceJobID(id)
	if !ok {
		return rec, rev, err
	}
	seq := masked ^ s.cfg.Box.JobIDMask(nonce)
	if seq == 0 {
		return rec, rev, err
	}
	queued, found, err := s.queuedJob(ctx, tenant, id, seq, nonce)
	if err != nil || found {
		return queued, 0, err
	}
	// No such message: the job may have got its record since (its message
	// is trimmed only after that).
	return s.jobs.GetForTenant(ctx, tenant, id)
}

// queuedJob reads the job whose message is at seq in the jobs stream, if
// that message is the tenant's and carries nonce. A message older than
// JobRetention is not read: its job's record, written after it, may have
// expired, and the job is then gone, not queued again.
func (s *Service) queuedJob(ctx context.Context, tenant, id string, seq uint64, nonce string) (contract.JobRecord, bool, error) {
	msg, err := s.jobsStream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return contract.JobRecord{}, false, nil
	}
	if err != nil {
		return contract.JobRecord{}, false, fmt.Errorf("read job %s: %w", id, err)
	}
	msgTenant, jobType, err := contract.ParseJobSubject(msg.Subject)
	batch := false
	if err != nil {
		msgTenant, jobType, err = contract.ParseJobBatchSubject(msg.Subject)
		batch = true
	}
	if err != nil || msgTenant != tenant || s.now().Sub(msg.Time) >= s.cfg.JobRetention {
		return contract.JobRecord{}, false, nil
	}
	req, found := jobInMessage(batch, msg.Data, nonce)
	if !found {
		return contract.JobRecord{}, false, nil
	}
	return jobstore.Queued(tenant, jobType, id, req, msg.Time, s.cfg.JobRetention), true, nil
}

// jobInMessage returns the job with nonce that a job message written by
// intake holds: its JobRequest, or one of its JobBatch (batch).
func jobInMessage(batch bool, data []byte, nonce string) (contract.JobRequest, bool) {
	data = contract.ValidUTF8(data) // as the processor reads it (an older intake's message)
	var jobs []contract.JobRequest
	var err error
	if batch {
		var b contract.JobBatch
		err = json.Unmarshal(data, &b)
		jobs = b.Jobs
	} else {
		jobs = make([]contract.JobRequest, 1)
		err = json.Unmarshal(data, &jobs[0])
	}
	if err != nil {
		return contract.JobRequest{}, false
	}
	for _, req := range jobs {
		if req.ID == "" && req.Nonce == nonce {
			return req, true
		}
	}
	return contract.JobRequest{}, false
}

// writeJob writes the job's record and its message at the same time, so
// that a 202 waits for one round trip to JetStream instead of two; seq is
// the message's stream sequence.
func (s *Service) writeJob(ctx context.Context, rec contract.JobRecord) (rev uint64, createErr error, seq uint64, pubErr error) {
	type published struct {
		ack *jetstream.PubAck
		err error
	}
	done := make(chan published, 1)
	go func() {
		ack, err := s.publishJob(ctx, rec)
		done <- published{ack, err}
	}()
	rev, createErr = s.jobs.Create(ctx, rec)
	p := <-done
	if p.err != nil {
		return rev, createErr, 0, p.err
	}
	return rev, createErr, p.ack.Sequence, nil
}

// publishJob publishes the job's message, de-duplicated on its id and, for
// an Idempotency-Key job, its request hash: the message of a request that
// reuses a key (answered 422) cannot take the place of the stored job's.
func (s *Service) publishJob(ctx context.Context, rec contract.JobRecord) (*jetstream.PubAck, error) {
	msgID := rec.ID
	if rec.RequestHash != "" {
		msgID += "." + rec.RequestHash[:min(16, len(rec.RequestHash))]
	}
	return bus.PublishJSONAck(ctx, s.pub, contract.JobSubject(rec.Tenant, rec.Type), msgID,
		contract.JobRequest{ID: rec.ID, Payload: rec.Payload, CallbackURL: rec.CallbackURL, Metadata: rec.Metadata, RequestHash: rec.RequestHash, CreatedAt: &rec.CreatedAt})
}

// forgetUnpublished removes the record of a job whose message was surely
// not stored (bus.NotStored(pubErr)), so that it does not sit queued
// forever. After an unclear failure (a timeout, a client gone) the message
// may be stored, and a processor that reads the record (as those of
// external types do) must find it: the record stays, and a retry with the
// same Idempotency-Key publishes the message again (de-duplicated if it is
// there). It is best effort: if JetStream is down the record stays, unseen,
// until it expires; the client was answered 503.
func (s *Service) forgetUnpublished(id string, rev uint64, pubErr error) {
	if !bus.NotStored(pubErr) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.jobs.Delete(ctx, id, rev); err != nil {
		s.logger.Debug("forget unpublished job", "job_id", id, "error", err)
	}
}

func (s *Service) getJob(c *gin.Context) {
	wait, err := s.parseWait(c.Query("wait"))
	if err != nil {
		s.respondError(c, err)
		return
	}
	ctx := c.Request.Context()
	rec, rev, err := s.findJob(ctx, tenantOf(c), c.Param("id"))
	if err != nil {
		s.respondError(c, err)
		return
	}
	if wait > 0 && !contract.Terminal(rec.Status) {
		done, ok := s.waits.start(tenantOf(c))
		if !ok {
			s.tooManyWaits(c)
			return
		}
		defer done()
		waitCtx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		defer context.AfterFunc(s.stopping, cancel)()
		for {
			next, cur, err := s.jobs.WaitChange(waitCtx, rec.ID, rev)
			if rev == 0 && errors.Is(err, jobstore.ErrNotFound) {
				break // still no record: unchanged
			}
			if err != nil {
				s.respondError(c, err)
				return
			}
			if cur <= rev {
				break // unchanged, or read from a replica behind: rec stands
			}
			if !sameView(rec, next) || waitCtx.Err() != nil {
				rec = next
				break
			}
			rev = cur // a write that shows nothing new: wait on
		}
	}
	if !contract.Terminal(rec.Status) {
		c.Header("Retry-After", retryAfterValue(s.cfg.RetryAfter))
	}
	c.JSON(http.StatusOK, rec.Job)
}

// sameView tells whether two records of a job show the same to a wait on
// it (a long-poll, the event stream): status, attempts, error, progress and
// result. A write that changes nothing of that wakes no wait: the first
// record of a job read from its message, written still queued by a
// redelivered job's processor before it runs the job, or the note of a
// batch's hand-off. A record that counts a failed attempt is a change.
func sameView(a, b contract.JobRecord) bool {
	return a.Status == b.Status && a.Attempts == b.Attempts && a.Error == b.Error &&
		bytes.Equal(a.Progress, b.Progress) && bytes.Equal(a.Result, b.Result)
}

// parseWait reads ?wait= as a Go duration ("30s") or whole seconds ("30").
func (s *Service) parseWait(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		d, err = time.ParseDuration(v + "s")
	}
	if err != nil || d < 0 || d > s.cfg.MaxWait {
		return 0, badRequest(fmt.Sprintf("wait must be a duration between 0s and %s", s.cfg.MaxWait))
	}
	return d, nil
}

var errFinished = errors.New("job already finished")

func (s *Service) cancelJob(c *gin.Context) {
	ctx := c.Request.Context()
	current, rev, err := s.findJob(ctx, tenantOf(c), c.Param("id"))
	if err != nil {
		s.respondError(c, err)
		return
	}
	// Once begun, the cancel and its event are not cut short by a client
	// that goes away: a processor outside hookstream may not publish the
	// event of a job it finds canceled.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*s.cfg.PublishTimeout)
	defer cancel()
	// At revision 0 (no record yet), this writes the record, canceled.
	rec, err := s.jobs.UpdateFrom(ctx, current, rev, func(r *contract.JobRecord) error {
		if contract.Terminal(r.Status) {
			return errFinished
		}
		now := s.now().UTC()
		r.Status, r.UpdatedAt, r.CompletedAt = contract.StatusCanceled, now, &now
		return nil
	})
	if errors.Is(err, errFinished) {
		if rec.Status == contract.StatusCanceled && s.external[rec.Type] && s.recentlyCompleted(rec) {
			if err := s.publishCanceled(ctx, rec); err != nil {
				s.respondError(c, err)
				return
			}
		}
		s.respondError(c, conflict(fmt.Sprintf("job is already %s", rec.Status)))
		return
	}
	if err != nil {
		s.respondError(c, err)
		return
	}
	if err := s.publishCanceled(ctx, rec); err != nil && s.external[rec.Type] {
		s.respondError(c, err)
		return
	}
	c.JSON(http.StatusAccepted, rec.Job)
}

// recentlyCompleted tells whether a job finished within half the events
// stream's de-duplication window: its event published again now is taken
// for the first one, not sent twice. A DELETE retried after a 503 comes
// then; one much later would make every later DELETE a webhook.
func (s *Service) recentlyCompleted(rec contract.JobRecord) bool {
	return rec.CompletedAt != nil && s.now().Sub(*rec.CompletedAt) < s.eventDuplicates/2
}

// publishCanceled publishes the job.canceled event of rec. hookstream's
// processor republishes the event of every terminal job it meets, so for
// its own types a failure only delays the webhook. No one does for an
// external type: cancelJob answers its failure 503, and the DELETE retried
// soon after (recentlyCompleted) publishes the event again, de-duplicated
// by JetStream, before its 409.
func (s *Service) publishCanceled(ctx context.Context, rec contract.JobRecord) error {
	if err := jobevents.Publish(ctx, s.pub, rec, s.maxPayload); err != nil {
		s.logger.Warn("publish job.canceled", "job_id", rec.ID, "error", err)
		return retryLater("the job is canceled, but its job.canceled event could not be stored; retry the DELETE to store it", s.cfg.RetryAfter)
	}
	return nil
}
