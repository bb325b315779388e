package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/jobevents"
	"github.com/hookstream/hookstream/shared/jobstore"
	"github.com/hookstream/hookstream/shared/metrics"
)

// verdict is what becomes of a job message.
type verdict int

const (
	ack   verdict = iota // done with it
	retry                // deliver again after delay
	term                 // never deliver again (poison)
)

type settlement struct {
	verdict verdict
	delay   time.Duration
	// failed is set when the job's attempt failed and it is to run again
	// after delay, its record saying queued (not for a failure of
	// JetStream, or a shutdown).
	failed bool
}

// source is the message a job was read from: its jobs-stream sequence,
// whether JetStream delivers it for the first time, and whether it is a
// hand-off, which takes over a job whose record says it runs from the
// batch that wrote it (handOff).
type source struct {
	seq      uint64
	first    bool
	takeover bool
}

// settledElsewhere tells whether a job whose record is stored is settled by
// the message it runs, or ran, from, and not by src: another message of the
// job then has nothing to do (contract.JobRecord.RunBy). That message is
// acknowledged only once the job is finished or handed off (and a hand-off
// takes over), so while the job is not finished it is delivered again: for
// the job's retry, or after its run died.
func (src source) settledElsewhere(stored contract.JobRecord) bool {
	return stored.RunBy != 0 && stored.RunBy != src.seq && !src.takeover
}

// errRunElsewhere is a claim refused: another message of the job settles it.
var errRunElsewhere = errors.New("job runs from another message")

// storeRetry is the wait after a failure of JetStream itself.
const storeRetry = time.Second

// maxNotBefore is the furthest ahead a job's not_before is honoured: a
// processor's hand-off waits out a retry's delay (minutes). A message put
// back for longer would hold its consumer's acknowledged floor, and with
// it the trimming of every later message of its type, until the jobs
// stream is full.
const maxNotBefore = time.Hour

// announceTimeout bounds the publish of a job.running event.
const announceTimeout = 5 * time.Second

// handle runs the job of a message that holds one and settles it. A job
// not due yet (NotBefore) is put back until it is. JetStream is told every
// AckWait/3 that the message is still being worked on.
func (p *Processor) handle(ctx context.Context, msg jetstream.Msg) {
	defer bus.KeepAlive(msg, p.cfg.AckWait/3)()
	meta, err := msg.Metadata()
	var rec contract.JobRecord
	var req contract.JobRequest
	if err == nil {
		rec, req, err = p.decodeJob(msg, meta)
	}
	if err != nil {
		p.logger.Error("dropping malformed job message", "subject", msg.Subject(), "error", err)
		p.settle(msg, settlement{verdict: term})
		return
	}
	if req.NotBefore != nil && req.NotBefore.After(p.now()) {
		if req.NotBefore.After(p.now().Add(maxNotBefore)) {
			p.logger.Warn("job's not_before is more than an hour ahead, which no processor sets: running it now", "job_id", rec.ID, "not_before", req.NotBefore)
		} else {
			p.settle(msg, p.notYet(ctx, rec, *req.NotBefore))
			return
		}
	}
	if !p.acquire(ctx, rec.Type) {
		p.settle(msg, settlement{verdict: retry}) // stopping
		return
	}
	defer p.releaseSlot(rec.Type)
	p.settle(msg, p.process(ctx, source{seq: meta.Sequence.Stream, first: meta.NumDelivered == 1, takeover: isHandOff(msg, req, rec)}, rec))
}

// isHandOff tells whether msg is a hand-off (handOff) of the job it holds:
// its body carries the job's id, and its Nats-Msg-Id is <id>.handoff.
func isHandOff(msg jetstream.Msg, req contract.JobRequest, rec contract.JobRecord) bool {
	if req.ID == "" || req.ID != rec.ID {
		return false
	}
	id, ok := strings.CutSuffix(msg.Headers().Get(contract.HeaderMsgID), handOffSuffix)
	return ok && id == rec.ID
}

// acquire takes a slot to run a job of jobType, waiting while Concurrency
// jobs of it run; false when ctx ends or the processor stops first.
func (p *Processor) acquire(ctx context.Context, jobType string) bool {
	if ctx.Err() != nil || p.stopping.Err() != nil {
		return false
	}
	select {
	case p.slots[jobType] <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	case <-p.stopping.Done():
		return false
	}
}

func (p *Processor) releaseSlot(jobType string) { <-p.slots[jobType] }

// settle is the one place that acknowledges job messages.
func (p *Processor) settle(msg jetstream.Msg, s settlement) {
	var err error
	switch s.verdict {
	case ack:
		err = msg.Ack()
	case retry:
		err = msg.NakWithDelay(s.delay)
	case term:
		err = msg.Term()
	}
	if err != nil {
		p.logger.Warn("settle job message", "subject", msg.Subject(), "error", err)
	}
}

// notYet settles the message of a job not due before due: put back until
// then, unless the job has finished meanwhile (canceled).
func (p *Processor) notYet(ctx context.Context, rec contract.JobRecord, due time.Time) settlement {
	stored, _, err := p.jobs.Get(ctx, rec.ID)
	if err == nil && sameJob(stored, rec) && contract.Terminal(stored.Status) {
		return p.finish(ctx, p.logger.With("job_id", rec.ID, "tenant_id", rec.Tenant), stored)
	}
	return settlement{verdict: retry, delay: due.Sub(p.now())}
}

// process runs a job read from a message (rec, from src) and says what
// becomes of that message.
func (p *Processor) process(ctx context.Context, src source, rec contract.JobRecord) settlement {
	logger := p.logger.With("job_id", rec.ID, "tenant_id", rec.Tenant)
	quick := p.cfg.RunningAfter > 0 && src.first
	stored, rev, made, err := p.load(ctx, rec, quick && fromIntake(rec.ID))
	if errors.Is(err, nats.ErrMaxPayload) { // an internal publisher's job: intake refuses such jobs
		return p.failTooLarge(ctx, logger, rec)
	}
	if err != nil {
		logger.Warn("load job", "error", err)
		return settlement{verdict: retry, delay: storeRetry}
	}
	if !sameJob(stored, rec) && rev != 0 {
		// Read again from the bucket's leader before the message is dropped
		// for good: a replica behind it may hold an earlier record under
		// this id (one intake removed after a failed write).
		if stored, rev, err = p.jobs.Latest(ctx, rec.ID); err != nil {
			logger.Warn("load job", "error", err)
			return settlement{verdict: retry, delay: storeRetry}
		}
	}
	if !sameJob(stored, rec) {
		// Another request's job (a reused Idempotency-Key answered 422).
		logger.Warn("job id already used by another tenant, type or request (an Idempotency-Key reused for another request, answered 422); dropping message")
		return settlement{verdict: term}
	}
	if contract.Terminal(stored.Status) {
		if src.settledElsewhere(stored) {
			// Its own message published its event before it was acknowledged.
			logger.Debug("another message of a finished job; dropped")
			return settlement{verdict: ack}
		}
		return p.finish(ctx, logger, stored)
	}
	if quick && stored.Status == contract.StatusQueued && stored.Attempts < p.cfg.MaxAttempts && !src.settledElsewhere(stored) {
		if rev != 0 && !made && !src.takeover && !p.ownMessage(rec, stored) {
			// Another message of the job may be pending with this one: the
			// one its record was made for, which runs quickly, unclaimed
			// for RunningAfter. This one comes back once that has run or
			// said so, and is then dropped, or claims the job first.
			wait := p.otherMessageWait()
			logger.Info("another message of this job may run it first; this one waits", "wait", wait)
			return settlement{verdict: retry, delay: wait}
		}
		return p.runQuickly(ctx, logger, src, stored, rev)
	}
	running, err := p.jobs.UpdateFrom(ctx, stored, rev, p.claim(src))
	if s, claimed := p.claimed(ctx, logger, stored, running, err); !claimed {
		return s
	}
	p.announce(ctx, logger, running)
	prog := p.newProgress(rec.ID, true)
	result, runErr := p.run(ctx, running, prog)
	return p.record(ctx, logger, stored, result, prog.last(), runErr)
}

// ownMessage tells whether a job's record, made by a request and not from
// this message (rec, the job read from it), was made for it: by the request
// that published it. A job has another message when it was published again
// past the jobs stream's de-duplication window (a repeated Idempotency-Key,
// a request answered 503 and retried, an internal publisher reusing a job
// id); two messages are at least the window apart, so the record's
// created_at must be within half the window of the message's (its body's
// created_at, else when it was stored). Run quickly, two messages would
// both run the job before either claimed it; only the record's own message
// runs quickly. The record made from this message (load), and a hand-off
// of the job's own, are the message's own without asking. An internal
// publisher that sends one body, created_at and all, twice past the window
// makes two messages this cannot tell apart: the contract asks it to leave
// created_at out.
func (p *Processor) ownMessage(rec, stored contract.JobRecord) bool {
	return stored.CreatedAt.Sub(rec.CreatedAt).Abs() < p.duplicates/2
}

// otherMessageWait is how long a message that is not its record's own
// waits on its first delivery (ownMessage): until the own one, if taken
// with it, has run or been marked running (RunningAfter), a quarter of the
// de-duplication window (30 s) at least.
func (p *Processor) otherMessageWait() time.Duration {
	return max(p.duplicates/4, 2*p.cfg.RunningAfter)
}

// sameJob tells whether a stored record is that of the job read from a
// message: same tenant, type and request.
func sameJob(stored, rec contract.JobRecord) bool {
	return stored.Tenant == rec.Tenant && stored.Type == rec.Type && stored.RequestHash == rec.RequestHash
}

// record stores the outcome of an attempt of a job whose record says
// running, and settles its message; an attempt cut short by shutdown puts
// the job back instead.
func (p *Processor) record(ctx context.Context, logger *slog.Logger, stored contract.JobRecord, result, progress json.RawMessage, runErr error) settlement {
	if runErr != nil && ctx.Err() != nil {
		return p.release(logger, stored.ID)
	}
	ctx, cancel := outcomeContext(ctx)
	defer cancel()
	final, err := p.jobs.Update(ctx, stored.ID, func(r *contract.JobRecord) error {
		return p.complete(r, result, progress, runErr)
	})
	return p.outcome(ctx, logger, stored, final, runErr, err)
}

// claimed tells whether the claim of a job (p.claim) left it running; when
// not, the settlement says what to do with its message.
func (p *Processor) claimed(ctx context.Context, logger *slog.Logger, stored, running contract.JobRecord, err error) (settlement, bool) {
	switch {
	case errors.Is(err, nats.ErrMaxPayload):
		return p.failTooLarge(ctx, logger, stored), false
	case errors.Is(err, errRunElsewhere):
		logger.Info("job runs from another message of it; this one dropped", "attempts", running.Attempts)
		return settlement{verdict: ack}, false
	case errors.Is(err, jobstore.ErrUnchanged) || (err == nil && contract.Terminal(running.Status)):
		return p.finish(ctx, logger, running), false
	case err != nil:
		logger.Warn("claim job", "error", err)
		return settlement{verdict: retry, delay: storeRetry}, false
	}
	return settlement{}, true
}

// runQuickly runs the first delivery of a job before its record says
// running: a job done within RunningAfter has its record written once, with
// its result, instead of twice. One still running then is marked running as
// any other. A job with no record yet (rev 0) gets it with that first
// write. A processor that crashes meanwhile leaves the attempt uncounted,
// but the redelivery takes the counted path (process).
func (p *Processor) runQuickly(ctx context.Context, logger *slog.Logger, src source, stored contract.JobRecord, rev uint64) settlement {
	var mu sync.Mutex
	done, marked := false, false
	var running contract.JobRecord
	var claimErr error
	prog := p.newProgress(stored.ID, false)
	timer := time.AfterFunc(p.cfg.RunningAfter, func() {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			marked = true
			running, claimErr = p.jobs.UpdateFrom(ctx, stored, rev, p.claim(src))
			if claimErr == nil && running.Status == contract.StatusRunning {
				prog.goLive() // and write what was reported before
				p.announce(ctx, logger, running)
			}
		}
	})
	attempt := stored
	attempt.Status, attempt.Attempts = contract.StatusRunning, stored.Attempts+1
	result, runErr := p.run(ctx, attempt, prog)
	timer.Stop()
	mu.Lock() // waits for a claim under way
	done = true
	mu.Unlock()
	if marked && !unclearWrite(claimErr) {
		if s, claimed := p.claimed(ctx, logger, stored, running, claimErr); !claimed {
			return s // canceled while it ran: its result is dropped
		}
		return p.record(ctx, logger, stored, result, prog.last(), runErr)
	}
	// Not marked running, or the mark failed for JetStream (a timeout, a
	// leader change): the outcome is recorded in one write, claim and all,
	// instead of the run being thrown away and made again.
	if runErr != nil && ctx.Err() != nil { // shutdown
		if marked {
			// The mark that seemed to fail may have been stored: the
			// attempt it counted is given back.
			return p.release(logger, stored.ID)
		}
		return settlement{verdict: retry} // the record never said running
	}
	ctx, cancel := outcomeContext(ctx)
	defer cancel()
	final, err := p.jobs.UpdateFrom(ctx, stored, rev, func(r *contract.JobRecord) error {
		if r.Status == contract.StatusRunning && r.RunBy == src.seq {
			// The mark that seemed to fail was stored: claimed already.
			return p.complete(r, result, prog.last(), runErr)
		}
		if err := p.claim(src)(r); err != nil {
			return err
		}
		if r.Status != contract.StatusRunning { // out of attempts: failed
			return nil
		}
		return p.complete(r, result, prog.last(), runErr)
	})
	return p.outcome(ctx, logger, stored, final, runErr, err)
}

// unclearWrite tells whether a record write failed for JetStream itself,
// not for what the record holds (too large, canceled, claimed by another
// message): it may or may not have been stored.
func unclearWrite(err error) bool {
	return err != nil && !errors.Is(err, nats.ErrMaxPayload) && !errors.Is(err, errRunElsewhere) && !errors.Is(err, jobstore.ErrUnchanged)
}

// outcomeTimeout bounds the write of an attempt's outcome and its event.
const outcomeTimeout = 10 * time.Second

// outcomeContext is the context of writing an attempt's outcome: a result
// ready when shutdown cuts ctx short is still recorded, instead of lost
// with its attempt counted (the last attempt then failed the job as
// "attempts exhausted", though it had succeeded).
func outcomeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), outcomeTimeout)
}

// fromIntake tells whether a job was submitted through intake without a
// record: intake can read it from its message (its id says where).
func fromIntake(id string) bool {
	_, _, ok := contract.ParseSequenceJobID(id)
	return ok
}

// outcome settles a job message after the attempt's result was recorded
// (err: how recording it went).
func (p *Processor) outcome(ctx context.Context, logger *slog.Logger, stored, final contract.JobRecord, runErr, err error) settlement {
	switch {
	case errors.Is(err, nats.ErrMaxPayload):
		return p.failTooLarge(ctx, logger, stored)
	case errors.Is(err, errRunElsewhere): // its quick run raced another message's claim
		logger.Info("job runs from another message of it; this one's result dropped")
		return settlement{verdict: ack}
	case errors.Is(err, jobstore.ErrUnchanged):
		return p.finish(ctx, logger, final) // canceled while it ran
	case err != nil:
		logger.Warn("record job result", "error", err)
		return settlement{verdict: retry, delay: storeRetry}
	case final.Status == contract.StatusQueued:
		delay := p.cfg.RetryDelay(final.Attempts)
		logger.Info("job attempt failed; retrying", "attempt", final.Attempts, "delay", delay, "error", runErr)
		return settlement{verdict: retry, delay: delay, failed: true}
	}
	return p.finish(ctx, logger, final)
}

// failTooLarge fails a job whose record, as its run left it (with its
// result, say), is larger than the NATS server takes in a message: without
// its payload, result and progress, so that the job ends and its event
// tells why, instead of its message being delivered again for ever. stored
// is the job as it was read before (its record, or the one made from its
// message, when it has none yet).
func (p *Processor) failTooLarge(ctx context.Context, logger *slog.Logger, stored contract.JobRecord) settlement {
	logger.Error("job record larger than the NATS server takes in a message; the job fails without its result")
	base, rev, err := p.jobs.Get(ctx, stored.ID)
	if errors.Is(err, jobstore.ErrNotFound) {
		base, rev, err = stored, 0, nil
	}
	if err != nil {
		logger.Warn("fail job too large to record", "error", err)
		return settlement{verdict: retry, delay: storeRetry}
	}
	for _, dropMetadata := range []bool{false, true} { // metadata too, if need be
		var failed contract.JobRecord
		failed, err = p.jobs.UpdateFrom(ctx, base, rev, func(r *contract.JobRecord) error {
			if contract.Terminal(r.Status) {
				return jobstore.ErrUnchanged
			}
			now := p.now().UTC()
			r.Status, r.CompletedAt, r.UpdatedAt = contract.StatusFailed, &now, now
			r.Payload, r.Result, r.Progress = nil, nil, nil
			if dropMetadata {
				r.Metadata = nil
			}
			r.Error = "the job's record is larger than the NATS server takes in a message (max_payload): its payload and result were dropped"
			return nil
		})
		if !errors.Is(err, nats.ErrMaxPayload) {
			base = failed
			break
		}
	}
	if errors.Is(err, nats.ErrMaxPayload) {
		logger.Error("dropping a job that cannot be recorded even without its payload, result and metadata")
		return settlement{verdict: term}
	}
	if err != nil && !errors.Is(err, jobstore.ErrUnchanged) {
		logger.Warn("fail job too large to record", "error", err)
		return settlement{verdict: retry, delay: storeRetry}
	}
	return p.finish(ctx, logger, base)
}

// load returns the job's record and its revision. A job without a record
// gets rec, the one made from its message. Intake writes no record for the
// jobs that hookstream's processors run, and reads them from their message
// until there is one; such a job's quick run (unwritten) gets rec at
// revision 0, so that the run's first write creates it, with the result
// for a job done within RunningAfter. Other jobs (internal publishers write
// no record either) get theirs created now; made tells whether it was made
// from this message.
func (p *Processor) load(ctx context.Context, rec contract.JobRecord, unwritten bool) (stored contract.JobRecord, rev uint64, made bool, err error) {
	stored, rev, err = p.jobs.Get(ctx, rec.ID)
	if !errors.Is(err, jobstore.ErrNotFound) {
		return stored, rev, false, err
	}
	if unwritten {
		return rec, 0, false, nil
	}
	if _, err := p.jobs.Create(ctx, rec); err == nil {
		made = true
	} else if !errors.Is(err, jobstore.ErrExists) {
		return contract.JobRecord{}, 0, false, err
	}
	stored, rev, err = p.jobs.Get(ctx, rec.ID)
	return stored, rev, made, err
}

// claim returns the change that moves a job to running for a run from
// src: it counts the attempt, notes src as the job's message (RunBy) and
// clears the progress of the attempt before. A job that has used up its
// attempts without recording a result (its processor died each time) fails
// instead. A job that runs, or ran, from another message is left to it
// (errRunElsewhere; source.settledElsewhere).
func (p *Processor) claim(src source) func(r *contract.JobRecord) error {
	return func(r *contract.JobRecord) error {
		switch {
		case contract.Terminal(r.Status):
			return jobstore.ErrUnchanged
		case src.settledElsewhere(*r):
			return errRunElsewhere
		}
		now := p.now().UTC()
		r.UpdatedAt, r.RunBy = now, src.seq
		if r.Attempts >= p.cfg.MaxAttempts {
			r.Status, r.CompletedAt = contract.StatusFailed, &now
			r.Error = "attempts exhausted: the job did not finish in any of its attempts"
			return nil
		}
		r.Status, r.Progress = contract.StatusRunning, nil // an attempt starts over
		r.Attempts++
		return nil
	}
}

// complete records the outcome of an attempt.
func (p *Processor) complete(r *contract.JobRecord, result, progress json.RawMessage, runErr error) error {
	if r.Status != contract.StatusRunning {
		return jobstore.ErrUnchanged
	}
	if progress != nil {
		r.Progress = contract.ValidUTF8(progress)
	}
	now := p.now().UTC()
	r.UpdatedAt = now
	switch {
	case runErr == nil:
		r.Status, r.Result, r.Error, r.CompletedAt = contract.StatusSucceeded, contract.ValidUTF8(result), "", &now
	case isPermanent(runErr) || r.Attempts >= p.cfg.MaxAttempts:
		r.Status, r.Error, r.CompletedAt = contract.StatusFailed, runErr.Error(), &now
	default:
		r.Status, r.Error, r.Progress = contract.StatusQueued, runErr.Error(), nil // the retry starts over
	}
	return nil
}

// release puts a job interrupted by shutdown back in the queue without
// counting the attempt.
func (p *Processor) release(logger *slog.Logger, id string) settlement {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := p.jobs.Update(ctx, id, func(r *contract.JobRecord) error {
		if r.Status != contract.StatusRunning {
			return jobstore.ErrUnchanged
		}
		r.Status, r.Attempts, r.UpdatedAt, r.Progress = contract.StatusQueued, max(r.Attempts-1, 0), p.now().UTC(), nil
		return nil
	})
	if err != nil && !errors.Is(err, jobstore.ErrUnchanged) {
		logger.Warn("release interrupted job", "error", err)
	}
	return settlement{verdict: retry}
}

// finish publishes the event of a terminal job; only then is its message
// acknowledged, so a crash in between republishes the (de-duplicated) event.
// A record that is not terminal leaves the message to be delivered again:
// acknowledging it would leave the job unfinished for good.
func (p *Processor) finish(ctx context.Context, logger *slog.Logger, rec contract.JobRecord) settlement {
	if !contract.Terminal(rec.Status) {
		logger.Error("job not finished, yet about to be acknowledged; it runs again", "status", rec.Status, "attempts", rec.Attempts)
		return settlement{verdict: retry, delay: storeRetry}
	}
	if err := jobevents.Publish(ctx, p.pub, rec, p.js.Conn().MaxPayload()); err != nil {
		logger.Warn("publish job event", "error", err)
		return settlement{verdict: retry, delay: storeRetry}
	}
	logger.Debug("job finished", "status", rec.Status, "attempts", rec.Attempts)
	metrics.JobsFinished.Inc(rec.Status)
	return settlement{verdict: ack}
}

// announce publishes the job.running event of an attempt whose record says
// running, in the background: the attempt goes on at once, and its
// terminal event may be stored first. It is best effort: a publish that
// fails within announceTimeout is logged, and a crash between the record
// and the event loses the event (the terminal event never is).
func (p *Processor) announce(ctx context.Context, logger *slog.Logger, running contract.JobRecord) {
	p.announcing.Go(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), announceTimeout)
		defer cancel()
		if err := jobevents.Publish(ctx, p.pub, running, p.js.Conn().MaxPayload()); err != nil {
			logger.Warn("publish job event", "status", running.Status, "error", err)
		}
	})
}

// run calls the job's handler, which reports its progress to prog; prog's
// writer has stopped when run returns.
func (p *Processor) run(ctx context.Context, rec contract.JobRecord, prog *progress) (result json.RawMessage, err error) {
	defer prog.stop()
	handler, ok := p.cfg.Handlers[rec.Type]
	if !ok { // cannot happen with one consumer per type; never run a nil handler
		return nil, fmt.Errorf("no handler for job type %q in this processor", rec.Type)
	}
	defer func() {
		if v := recover(); v != nil {
			err = Permanent(errors.New("handler panicked"))
			p.logger.Error("job handler panicked", "job_id", rec.ID, "panic", v)
		}
	}()
	return handler.Handle(ctx, Job{
		ID: rec.ID, Tenant: rec.Tenant, Type: rec.Type, Attempt: rec.Attempts,
		Payload: rec.Payload, Metadata: rec.Metadata, progress: prog,
	})
}
