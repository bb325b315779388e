package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/endpoints"
	"github.com/hookstream/hookstream/shared/metrics"
	"github.com/hookstream/hookstream/shared/signing"
)

const (
	// deliverAckWait: in-flight deliveries report progress every third of it.
	deliverAckWait = 30 * time.Second
	// infraRetry is the wait after JetStream itself failed.
	infraRetry = time.Second
)

var errAttemptFailed = errors.New("attempt failed")

func (n *Notifier) runDeliveries(ctx context.Context, cons jetstream.Consumer) error {
	return bus.Workers(ctx, n.js.Conn(), n.logger, cons, n.cfg.Concurrency, n.cfg.ShutdownGrace, n.handleDelivery)
}

// verdict is what becomes of a delivery message.
type verdict int

const (
	done      verdict = iota // delivered or rescheduled: ack
	again                    // JetStream failed or shutting down: redeliver
	malformed                // cannot ever be sent: terminate
	// deadLettered is done for a delivery given up on: its attempt log,
	// status failed, is the only record of it (what a recover task re-sends
	// from), so its message is acknowledged only once that log is stored.
	// The log gets deadLetterTries writes; if all fail in a way a later one
	// may not, it becomes unrecorded.
	deadLettered
	// unrecorded is a dead letter whose log could not be stored: it is
	// queued again marked contract.HeaderDeadLetter, for its log alone
	// (settleDelivery), and its message acknowledged; if even that fails,
	// the message is put back for a new round of attempts. A marked
	// message whose log fails again is put back for its log alone.
	unrecorded
)

// onceLogged is the verdict on a message whose attempt log's writes are
// over (attemptLogs.write): false when the last one failed and a later
// one may not.
func (v verdict) onceLogged(over bool) verdict {
	if v == deadLettered && !over {
		return unrecorded
	}
	return v
}

// logTries is how many writes the attempt log of a message with this
// verdict gets.
func (v verdict) logTries() int {
	if v == deadLettered {
		return deadLetterTries
	}
	return 1
}

func (n *Notifier) handleDelivery(ctx context.Context, msg jetstream.Msg) {
	n.handle(ctx, msg, false)
}

// handle delivers one delivery message, from the delivery consumer or, when
// parked, from the drain of a parked target (park.go).
func (n *Notifier) handle(ctx context.Context, msg jetstream.Msg, parked bool) {
	if msg.Headers().Get(contract.HeaderDeadLetter) != "" {
		n.recordDeadLetter(ctx, msg)
		return
	}
	if tenant, target, wait, held := n.heldTarget(msg.Subject(), parked); held {
		// Its endpoint's circuit is open: put back without reading it,
		// which matters when a dead endpoint has a large backlog.
		n.holdBack(ctx, msg, tenant, target, wait, parked, true)
		return
	}
	d, ok := n.decodeDelivery(msg)
	if !ok {
		return
	}
	if n.overtaken(ctx, &d) {
		n.logger.Info("retry dropped: its delivery was sent again, or ended, since it was scheduled", "delivery_id", d.ID, "tenant_id", d.Tenant)
		n.settle(msg, done)
		return
	}
	if !parked && n.limits.slow(limitKey(&d)) {
		// Its endpoint answers slowly: its own drain sends it, not a
		// worker that healthy endpoints' webhooks need (slow.go).
		n.holdBack(ctx, msg, d.Tenant, parkTarget(&d), infraRetry, false, false) // a wait if the park fails
		return
	}
	subject := msg.Subject()
	if parked {
		subject = contract.DeliverySubject(d.Tenant, deliveryTarget(&d)) // where its retries go
	}
	var aside func() bool // a shared worker's, not its drain's (slow.go)
	if !parked {
		aside = func() bool { return bus.StepAside(ctx) }
	}
	wait, ok := n.deliverWithinLimits(ctx, msg, deliverAckWait, &d, subject, aside, func(v verdict) { n.settleDelivery(ctx, msg, &d, v) })
	if !ok {
		if _, held := n.limits.circuitWait(limitKey(&d)); held || putBack(msg) >= n.cfg.parkAfter {
			n.holdBack(ctx, msg, d.Tenant, parkTarget(&d), wait, parked, held)
			return
		}
		_ = msg.NakWithDelay(overLimitDelay(msg, wait)) // over the endpoint's limit: wait in JetStream
	}
}

// decodeDelivery reads the delivery in msg; one that cannot be read, or
// has no id or target, is logged and its message terminated (ok false).
func (n *Notifier) decodeDelivery(msg jetstream.Msg) (d contract.Delivery, ok bool) {
	if err := json.Unmarshal(msg.Data(), &d); err != nil || d.ID == "" || (d.URL == "" && d.EndpointID == "") {
		n.logger.Error("dropping malformed delivery message", "subject", msg.Subject(), "error", err)
		n.settle(msg, malformed)
		return d, false
	}
	return d, true
}

// settleDelivery settles msg, the message of d, with v; a dead letter whose
// log could not be stored is queued again for its log alone first
// (queueUnrecorded), and acknowledged if that worked.
func (n *Notifier) settleDelivery(ctx context.Context, msg jetstream.Msg, d *contract.Delivery, v verdict) {
	if v == unrecorded && n.queueUnrecorded(ctx, d, contract.DeliverySubject(d.Tenant, deliveryTarget(d))) == nil {
		v = done // its record is queued, with its attempts
	}
	n.settle(msg, v)
}

// queueUnrecorded queues a delivery that was given up on but whose dead
// letter could not be stored, with its attempts, marked
// contract.HeaderDeadLetter: the notifier that takes it stores its record
// and sends nothing (recordDeadLetter). Put back instead, a delivery
// message would get a new round of attempts each time (a webhook more per
// round while the log bucket fails); fanned out again from fan-out's
// direct path, the event might find no target (a 410 has disabled the
// endpoint), and the dead letter would have no record at all.
func (n *Notifier) queueUnrecorded(ctx context.Context, d *contract.Delivery, subject string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), logWriteTimeout)
	defer cancel()
	data, err := encodeFitting(d, &d.Attempts, n.maxData())
	if err == nil {
		msg := nats.NewMsg(subject)
		msg.Data = data
		// An id of its own: d.ID may be this very delivery's message, within
		// the stream's duplicate window.
		msg.Header.Set(contract.HeaderMsgID, d.ID+".dead."+strconv.Itoa(len(d.Attempts)))
		msg.Header.Set(contract.HeaderContractVersion, contract.Version)
		msg.Header.Set(contract.HeaderDeadLetter, "1")
		_, err = n.pub.PublishMsg(ctx, msg)
	}
	if err != nil {
		n.logger.Warn("queue a delivery whose dead letter was not stored", "delivery_id", d.ID, "error", err)
	}
	return err
}

// recordDeadLetter stores the record of a delivery queued marked
// contract.HeaderDeadLetter (queueUnrecorded): its attempt log, failed,
// with the attempts it carries. It sends no webhook, so it needs none of
// its endpoint's limits, nor its endpoint.
func (n *Notifier) recordDeadLetter(ctx context.Context, msg jetstream.Msg) {
	d, ok := n.decodeDelivery(msg)
	if !ok {
		return
	}
	logger := n.logger.With("delivery_id", d.ID, "tenant_id", d.Tenant)
	if n.recordedLater(ctx, &d) {
		logger.Info("dead letter not recorded: a later round of the delivery is")
		n.settle(msg, done)
		return
	}
	log := n.logMsg(logger, &d, contract.DeliveryFailed, nil)
	if log == nil {
		n.settle(msg, done)
		return
	}
	stopKeepAlive := bus.KeepAlive(msg, deliverAckWait/3)
	n.logs.write(ctx, logger, log, deadLettered.logTries(), func(over bool) {
		defer stopKeepAlive()
		n.settle(msg, deadLettered.onceLogged(over))
	})
}

// recordedLater tells whether d's record holds more attempts than d: a
// later round of the delivery (a replay, or its message delivered again
// after a crash) was recorded since d was given up on, and d's record
// would hide it. A record that cannot be read does not tell.
func (n *Notifier) recordedLater(ctx context.Context, d *contract.Delivery) bool {
	stored, err := n.storedRecord(ctx, d)
	return err == nil && len(stored.Attempts) > len(d.Attempts)
}

// storedRecord reads the record of d, which has made attempts: at its key,
// or, not found there, at its key from before keys named their target (a
// delivery begun before the upgrade; d's own record is written under its
// key, and stands for that one). An old record created before d is an
// earlier publication of its event id, and is not d's.
func (n *Notifier) storedRecord(ctx context.Context, d *contract.Delivery) (contract.DeliveryRecord, error) {
	stored, err := n.readRecord(ctx, d.LogKey())
	if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return stored, err
	}
	if stored, err = n.readRecord(ctx, d.OldLogKey()); err == nil && stored.CreatedAt.Before(d.CreatedAt) {
		return contract.DeliveryRecord{}, jetstream.ErrKeyNotFound
	}
	return stored, err
}

// readRecord reads the delivery record at key.
func (n *Notifier) readRecord(ctx context.Context, key string) (contract.DeliveryRecord, error) {
	var rec contract.DeliveryRecord
	entry, err := n.log.Get(ctx, key)
	if err != nil {
		return rec, err
	}
	return rec, json.Unmarshal(entry.Value(), &rec)
}

// overtaken tells whether d, a retry fired by its schedule (it carries
// attempts and is no replay), was overtaken since the round that scheduled
// it: its record says the delivery succeeded (a round of its message
// delivered again after a crash, or a replay), or is of another event under
// the same delivery id (an event id published again, its delivery created
// at another time). Such a retry would send a delivered webhook, or an old
// body, again and write over the newer record. A schedule is removed only
// by the next one on its subject, so this is where a stale one ends. A
// failed replay does not end the schedule; a record that cannot be read
// does not tell.
func (n *Notifier) overtaken(ctx context.Context, d *contract.Delivery) bool {
	if d.Replay || len(d.Attempts) == 0 {
		return false
	}
	stored, err := n.storedRecord(ctx, d)
	if err != nil {
		return false
	}
	return stored.Status == contract.DeliverySucceeded || !stored.CreatedAt.Equal(d.CreatedAt)
}

// deliverWithinLimits makes d's round of attempts (deliver) if its
// endpoint's limits allow a request now, telling JetStream meanwhile that
// msg, whose consumer waits ackWait, is being worked on. settle is then
// called with the verdict on msg: at once, or once the attempt log is
// stored (attemptLogs), while the endpoint's slot is already free for the
// next request. Otherwise ok is false, settle is not called, and wait is
// how long the limits ask for. On a shared worker, aside steps aside from
// it (bus.StepAside) and tells whether it did; it is called once the round
// has taken as long as makes an endpoint slow and the endpoint is slow
// (slow.go), and again until it did. It is nil when the endpoint's own
// drain sends d.
func (n *Notifier) deliverWithinLimits(ctx context.Context, msg jetstream.Msg, ackWait time.Duration, d *contract.Delivery, subject string, aside func() bool, settle func(verdict)) (wait time.Duration, ok bool) {
	key := limitKey(d)
	if ok, wait := n.limits.acquire(key, n.rateLimit(d)); !ok {
		return wait, false
	}
	stopKeepAlive := bus.KeepAlive(msg, ackWait/3)
	logger := n.logger.With("delivery_id", d.ID, "tenant_id", d.Tenant)
	stopAside := func() {}
	if aside != nil && n.limits.slowAfter > 0 {
		// Checked again every quarter of slowAfter: the request started a
		// little after the round, and the bound on rounds aside may be
		// reached for a while.
		stopAside = bus.Every(n.limits.slowAfter, n.limits.slowAfter/4, func() bool {
			return !n.limits.slow(key) || !aside()
		})
	}
	v, log := n.deliver(ctx, logger, d, subject, aside == nil)
	stopAside()
	n.limits.release(key)
	then := func(over bool) {
		defer stopKeepAlive() // settling may queue the delivery again first
		settle(v.onceLogged(over))
	}
	if log == nil {
		then(true)
	} else {
		n.logs.write(ctx, logger, log, v.logTries(), then)
	}
	return 0, true
}

// rateLimit is the endpoint's rate limit (deliveries per second; 0: none).
func (n *Notifier) rateLimit(d *contract.Delivery) int {
	if ep := n.index.Get(d.Tenant, d.EndpointID); ep != nil {
		return ep.RateLimit
	}
	return 0
}

// overLimitDelay is the wait of a delivery put back because its endpoint is
// at its limit: the limiter's hint, doubled for every time this message was
// put back already (at most 0.5 s), so that a long queue for a slow endpoint
// does not spin.
func overLimitDelay(msg jetstream.Msg, hint time.Duration) time.Duration {
	return min(hint<<min(putBack(msg), 8), 500*time.Millisecond)
}

// settle is the one place that acknowledges delivery messages.
func (n *Notifier) settle(msg jetstream.Msg, v verdict) {
	var err error
	switch v {
	case done, deadLettered:
		err = msg.Ack()
	case again, unrecorded:
		err = msg.NakWithDelay(infraRetry)
	case malformed:
		err = msg.Term()
	}
	if err != nil {
		n.logger.Warn("settle delivery message", "subject", msg.Subject(), "error", err)
	}
}

// deliver makes this round of attempts: the first, plus the retries short
// enough to wait for in process. If the delivery is not finished, it
// schedules the next round in JetStream. It returns the verdict on the
// delivery's message and, but for again, the attempt log to store before
// the message is settled. own is set when the endpoint's own drain sends
// d, not a shared worker (slow.go).
func (n *Notifier) deliver(ctx context.Context, logger *slog.Logger, d *contract.Delivery, subject string, own bool) (verdict, *nats.Msg) {
	key := limitKey(d)
	dest, unsendable, err := n.destination(ctx, d)
	if err != nil {
		logger.Warn("resolve webhook destination", "error", err)
		n.limits.probeUnsent(key) // no outcome: the next may probe
		return again, nil
	}
	if unsendable != "" {
		n.limits.probeUnsent(key)
		d.Attempts = append(d.Attempts, contract.Attempt{At: n.cfg.Now().UTC(), Error: unsendable})
		if dest.announce {
			logger.Warn("webhook dead-lettered unsent", "error", unsendable)
			n.announceExhausted(ctx, logger, d, unsendable)
		}
		return n.finish(logger, d, contract.DeliveryFailed, nil)
	}
	var last outcome
	policy := &inProcessBackOff{cfg: &n.cfg, last: func() (int, time.Duration, bool) { return len(d.Attempts), last.retryAfter, last.slowDown }}
	switch {
	case d.Replay:
		policy.cfg = &Config{} // no schedule: one attempt
	case dest.schedule != nil:
		own := n.cfg
		own.Schedule = dest.schedule
		policy.cfg = &own
	}
	first := true
	err = backoff.Retry(func() error {
		if !first && !n.limits.token(key, n.rateLimit(d)) {
			// The endpoint's rate allows no retry now: the schedule goes
			// on in JetStream, which waits without holding the slot.
			policy.stopInProcess()
			return backoff.Permanent(errAttemptFailed)
		}
		first = false
		last = n.send(ctx, d, dest, key)
		if ctx.Err() != nil {
			return backoff.Permanent(ctx.Err()) // shutdown: not an attempt
		}
		metrics.WebhookResults.Inc(last.outcomeName())
		n.limits.report(key, last.ok())
		d.Attempts = append(d.Attempts, last.attempt)
		switch {
		case last.ok():
			return nil
		case last.gone:
			return backoff.Permanent(errAttemptFailed)
		}
		logger.Debug("webhook attempt failed", "attempt", len(d.Attempts), "status_code", last.attempt.StatusCode, "error", last.attempt.Error)
		if n.limits.circuitOpen(key) || (!own && n.limits.slow(key)) {
			// No more in-process tries, on a slow endpoint not on a shared
			// worker (slow.go); the schedule goes on.
			policy.stopInProcess()
			return backoff.Permanent(errAttemptFailed)
		}
		return errAttemptFailed
	}, backoff.WithContext(policy, ctx))

	if ctx.Err() == nil && d.EndpointID != "" && !last.gone {
		n.trackHealth(ctx, logger, d, dest.url, err == nil)
	}
	next := policy.next
	switch {
	case ctx.Err() != nil:
		n.limits.probeUnsent(key) // cut short: no outcome
		return again, nil
	case err == nil:
		return n.finish(logger, d, contract.DeliverySucceeded, nil)
	case last.gone && !d.Replay && n.moved(ctx, d, dest.url):
		// The endpoint moved while this round went to its old URL: the
		// old URL is gone, not the endpoint. Its new URL gets a retry.
		logger.Info("the endpoint's old URL answered 410 Gone; retrying at its new URL")
		next = time.Nanosecond // scheduled to the next whole second
	case last.gone || next == 0 || d.Replay:
		logger.Warn("webhook dead-lettered", "attempts", len(d.Attempts), "error", last.attempt.Error)
		if last.gone && d.EndpointID != "" {
			// Only the first of several 410s in flight disables and announces,
			// and only if the URL that answered is still the endpoint's.
			n.disableEndpoint(ctx, logger, d.Tenant, d.EndpointID, "the endpoint answered 410 Gone", func(e *endpoints.Endpoint) bool { return e.Enabled && e.URL == dest.url })
		}
		n.announceExhausted(ctx, logger, d, attemptError(last.attempt))
		return n.finish(logger, d, contract.DeliveryFailed, nil)
	}
	due := n.cfg.Now().Add(next)
	if err := n.scheduleRetry(ctx, d, subject, due); errors.Is(err, errTooLarge) || errors.Is(err, nats.ErrMaxPayload) {
		// Never to fit: put back, it would be sent again and again.
		logger.Warn("webhook dead-lettered: its retry cannot be scheduled", "attempts", len(d.Attempts), "error", err)
		n.announceExhausted(ctx, logger, d, "its retry is larger than the NATS server takes in a message")
		return n.finish(logger, d, contract.DeliveryFailed, nil)
	} else if err != nil {
		logger.Warn("schedule webhook retry", "error", err)
		return again, nil
	}
	return n.finish(logger, d, contract.DeliveryPending, &due)
}

// moved tells whether d's endpoint has a URL other than url now, as the
// bucket says: this process's index may lag it either way. Its retry then
// goes to the bucket's URL (destination), so a 410 from that URL too is
// the endpoint's own.
func (n *Notifier) moved(ctx context.Context, d *contract.Delivery, url string) bool {
	if d.EndpointID == "" {
		return false
	}
	stored, _, err := n.endpoints.Get(ctx, d.Tenant, d.EndpointID)
	return endpoints.Readable(err) == nil && stored.URL != url
}

// destination resolves where a delivery goes now: a job callback to its URL
// signed with the tenant's keys; an endpoint delivery to the endpoint's
// current URL, keys and headers. unsendable says why a delivery cannot be
// sent (deleted or disabled endpoint, a callback URL refused by the SSRF
// guard): it is dead-lettered.
func (n *Notifier) destination(ctx context.Context, d *contract.Delivery) (dest destination, unsendable string, err error) {
	now := n.cfg.Now()
	if d.EndpointID == "" {
		if err := n.cfg.Guard.CheckURL(d.URL); err != nil {
			// An internal publisher's callback URL, which intake would
			// have refused: no attempt could ever succeed.
			return destination{announce: true}, "callback URL refused: " + err.Error(), nil
		}
		ring, err := n.secrets.Get(ctx, d.Tenant)
		switch {
		case errors.Is(err, signing.ErrTenantDeleted):
			return destination{}, "tenant " + d.Tenant + " was deleted", nil
		case errors.Is(err, signing.ErrUnreadable):
			return destination{announce: true}, "tenant " + d.Tenant + ": " + signing.ErrUnreadable.Error() + " (POST /v1/signing-secret/rotate)", nil
		}
		if err != nil {
			return destination{}, "", err
		}
		keys, err := ring.Keys(now)
		return destination{url: d.URL, keys: keys, timeout: n.cfg.AttemptTimeout}, "", err
	}
	ep := n.index.Get(d.Tenant, d.EndpointID)
	if k := len(d.Attempts); ep == nil || (k > 0 && d.Attempts[k-1].StatusCode == http.StatusGone) {
		// This process's index may not have seen an endpoint created a
		// moment ago, whose delivery another process fanned out: the
		// bucket says whether it was deleted. Nor a move, after which an
		// old URL's 410 retries the delivery (moved): the retry goes where
		// the bucket says. The index is left to its watch (a read put
		// there could bring back one deleted since).
		stored, _, err := n.endpoints.Get(ctx, d.Tenant, d.EndpointID)
		switch err = endpoints.Readable(err); {
		case errors.Is(err, endpoints.ErrNotFound):
			ep = nil
		case err != nil:
			return destination{}, "", err
		default:
			ep = &stored
		}
	}
	switch {
	case ep == nil:
		return destination{}, "endpoint " + d.EndpointID + " was deleted", nil
	case !ep.Enabled:
		return destination{}, "endpoint " + d.EndpointID + " is disabled", nil
	case len(ep.Keyring.Secrets) == 0:
		return destination{announce: true}, "endpoint " + d.EndpointID + ": " + signing.ErrUnreadable.Error(), nil
	}
	keys, err := ep.Keyring.Keys(now)
	dest = destination{url: ep.URL, keys: keys, headers: ep.Headers, timeout: n.cfg.AttemptTimeout, schedule: ep.RetrySchedule}
	if ep.AttemptTimeout > 0 {
		dest.timeout = ep.AttemptTimeout
	}
	return dest, "", err
}

// scheduleRetry stores the delivery, with its attempts so far, as a NATS
// message schedule that puts it back on its subject when due.
func (n *Notifier) scheduleRetry(ctx context.Context, d *contract.Delivery, subject string, due time.Time) error {
	data, err := encodeFitting(d, &d.Attempts, n.maxData())
	if err != nil {
		return fmt.Errorf("encode delivery %s: %w", d.ID, err)
	}
	msg := nats.NewMsg(contract.RetrySubject(d.ID))
	msg.Data = data
	msg.Header.Set(contract.HeaderContractVersion, contract.Version)
	// Schedules have whole-second resolution: round up, never fire early.
	if frac := due.Sub(due.Truncate(time.Second)); frac > 0 {
		due = due.Add(time.Second - frac)
	}
	_, err = n.js.PublishMsg(ctx, msg,
		jetstream.WithScheduleAt(due), jetstream.WithScheduleTarget(subject),
		jetstream.WithMsgID(d.ID+"."+strconv.Itoa(len(d.Attempts))))
	if err != nil {
		return fmt.Errorf("schedule retry of %s: %w", d.ID, err)
	}
	return nil
}

// finish counts the delivery's outcome and returns its attempt log, to be
// stored (attemptLogs) before its message is acknowledged.
func (n *Notifier) finish(logger *slog.Logger, d *contract.Delivery, status string, next *time.Time) (verdict, *nats.Msg) {
	metrics.Deliveries.Inc(status)
	msg := n.logMsg(logger, d, status, next)
	switch {
	case msg == nil:
		// The attempt happened; a lost log line must not resend the webhook.
		return done, nil
	case status == contract.DeliveryFailed:
		return deadLettered, msg
	}
	return done, msg
}

// logMsg is the write of d's record, its attempt log, with status and its
// next attempt; nil if it cannot be encoded (logged).
func (n *Notifier) logMsg(logger *slog.Logger, d *contract.Delivery, status string, next *time.Time) *nats.Msg {
	url := d.URL
	if ep := n.index.Get(d.Tenant, d.EndpointID); ep != nil {
		url = ep.URL
	}
	rec := contract.DeliveryRecord{
		ID: d.ID, EventID: d.EventID, EventType: d.EventType, JobID: d.JobID, EndpointID: d.EndpointID, URL: url,
		Status: status, Attempts: d.Attempts, NextAttemptAt: next, Body: d.Body,
		CreatedAt: d.CreatedAt, UpdatedAt: n.cfg.Now().UTC(),
	}
	data, err := encodeFitting(&rec, &rec.Attempts, n.maxData())
	if errors.Is(err, errTooLarge) {
		// Kept without its body, which a replay then cannot send.
		logger.Warn("delivery record kept without its body", "error", err)
		rec.Body = nil
		data, err = encodeFitting(&rec, &rec.Attempts, n.maxData())
	}
	if err != nil {
		logger.Warn("record delivery attempts", "error", err)
		return nil
	}
	msg := nats.NewMsg(bus.KeySubject(contract.BucketDeliveries, d.LogKey()))
	msg.Data = data
	return msg
}
