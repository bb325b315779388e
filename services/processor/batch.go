package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/jobstore"
)

// handleBatch runs the jobs of a batch (a contract.JobBatch, written by
// intake) at once, each in a slot of its own and as process runs a job
// alone, and settles the message once all are done.
//
// A job that failed and is to be retried is handed off: written again as a
// message of its own, due after its delay, so that the batch is
// acknowledged when every job is done or handed off, and its other jobs do
// not wait for that retry. Only a failure of JetStream itself, a shutdown
// or a crash has the whole batch delivered again. Then the jobs finished by
// then are not run again (their events are published again and
// de-duplicated), and those that ran before are handed off rather than run
// by the batch (handOffAgain).
func (p *Processor) handleBatch(ctx context.Context, msg jetstream.Msg) {
	defer bus.KeepAlive(msg, p.cfg.AckWait/3)()
	p.settle(msg, p.processBatch(ctx, msg))
}

// batchMsg is a batch message, read.
type batchMsg struct {
	tenant, jobType string
	meta            *jetstream.MsgMetadata
	jobs            []contract.JobRequest
}

func (p *Processor) processBatch(ctx context.Context, msg jetstream.Msg) settlement {
	b, err := decodeBatch(msg)
	if err != nil {
		p.logger.Error("dropping malformed job batch", "subject", msg.Subject(), "error", err)
		return settlement{verdict: term}
	}
	outcomes := make([]settlement, len(b.jobs))
	var wg sync.WaitGroup
	for i, req := range b.jobs {
		if !p.acquire(ctx, b.jobType) {
			outcomes[i] = settlement{verdict: retry} // stopping: start no more
			continue
		}
		wg.Add(1)
		p.pool.Go(func() {
			defer wg.Done()
			defer p.releaseSlot(b.jobType)
			outcomes[i] = p.processBatched(ctx, b, req)
		})
	}
	wg.Wait()
	return batchSettlement(outcomes)
}

// decodeBatch reads a batch message; one with no jobs, or other than the
// number its header says, is malformed.
func decodeBatch(msg jetstream.Msg) (batchMsg, error) {
	var b batchMsg
	var err error
	if b.tenant, b.jobType, err = contract.ParseJobBatchSubject(msg.Subject()); err != nil {
		return b, err
	}
	if b.meta, err = msg.Metadata(); err != nil {
		return b, err
	}
	var body contract.JobBatch
	if err := json.Unmarshal(contract.ValidUTF8(msg.Data()), &body); err != nil {
		return b, fmt.Errorf("decode job batch: %w", err)
	}
	b.jobs = body.Jobs
	if count := msg.Headers().Get(contract.HeaderJobBatch); len(b.jobs) == 0 || count != strconv.Itoa(len(b.jobs)) {
		return b, fmt.Errorf("batch of %d jobs with %s %q", len(b.jobs), contract.HeaderJobBatch, count)
	}
	return b, nil
}

// processBatched runs one job of a batch and says what becomes of it.
func (p *Processor) processBatched(ctx context.Context, b batchMsg, req contract.JobRequest) settlement {
	if req.Nonce == "" || req.ID != "" {
		p.logger.Error("dropping a job of a batch without its nonce", "tenant_id", b.tenant, "type", b.jobType)
		return settlement{verdict: term}
	}
	rec, err := p.jobRecord(b.tenant, b.jobType, req, "", b.meta)
	if err != nil {
		p.logger.Error("dropping malformed job of a batch", "tenant_id", b.tenant, "type", b.jobType, "error", err)
		return settlement{verdict: term}
	}
	src := source{seq: b.meta.Sequence.Stream, first: b.meta.NumDelivered == 1}
	if !src.first {
		if s, handedOff := p.handOffAgain(ctx, rec); handedOff {
			return s
		}
	}
	s := p.process(ctx, src, rec)
	if s.failed {
		due := p.now().Add(s.delay)
		return p.handOff(ctx, rec, &due)
	}
	return s
}

// handOffAgain hands off a job of a batch delivered again that ran in an
// earlier delivery: its record counts attempts and is not finished. It
// either failed then and was handed off already (its record says so, or
// it was not yet marked, and writing its message again within JetStream's
// duplicate window adds nothing), or that delivery ended while it ran (its
// message then runs it, as a redelivery would). False for a job the batch
// is to run.
func (p *Processor) handOffAgain(ctx context.Context, rec contract.JobRecord) (settlement, bool) {
	stored, _, err := p.jobs.Get(ctx, rec.ID)
	switch {
	case errors.Is(err, jobstore.ErrNotFound):
		return settlement{}, false
	case err != nil:
		return settlement{verdict: retry, delay: storeRetry}, true
	case stored.HandedOff:
		// Its own message runs it, maybe right now: one written again
		// past the duplicate window would run it a second time.
		return settlement{verdict: ack}, true
	case contract.Terminal(stored.Status) || stored.Attempts == 0:
		return settlement{}, false
	}
	var due *time.Time
	if stored.Status == contract.StatusQueued {
		t := stored.UpdatedAt.Add(p.cfg.RetryDelay(stored.Attempts))
		due = &t
	}
	return p.handOff(ctx, rec, due), true
}

// handOffSuffix ends the Nats-Msg-Id of a job's message written by handOff
// (<job id>.handoff), which takes the job over from its batch.
const handOffSuffix = ".handoff"

// handOff writes a job of a batch again as a message of its own, which no
// processor runs before due (NotBefore) when set, then marks its record
// HandedOff; the batch is then done with the job. The message's
// Nats-Msg-Id is <id>.handoff, so that a hand-off repeated before the mark
// (a crash, or a failed write of the mark, between the two) adds nothing
// within JetStream's duplicate window (2 minutes).
func (p *Processor) handOff(ctx context.Context, rec contract.JobRecord, due *time.Time) settlement {
	created := rec.CreatedAt
	err := bus.PublishJSON(ctx, p.pub, contract.JobSubject(rec.Tenant, rec.Type), rec.ID+handOffSuffix, contract.JobRequest{
		ID: rec.ID, CreatedAt: &created, Payload: rec.Payload, CallbackURL: rec.CallbackURL, Metadata: rec.Metadata, NotBefore: due,
	})
	if err == nil {
		_, err = p.jobs.Update(ctx, rec.ID, func(r *contract.JobRecord) error {
			if r.HandedOff {
				return jobstore.ErrUnchanged
			}
			r.HandedOff = true
			return nil
		})
		if errors.Is(err, jobstore.ErrUnchanged) {
			err = nil
		}
	}
	if err != nil {
		p.logger.Warn("hand off job of a batch", "job_id", rec.ID, "error", err)
		return settlement{verdict: retry, delay: storeRetry}
	}
	return settlement{verdict: ack}
}

// batchSettlement is what becomes of a batch whose jobs had these
// outcomes: delivered again after the longest delay asked for if any job
// is to be tried again, else acknowledged (a malformed job is dropped
// alone).
func batchSettlement(outcomes []settlement) settlement {
	s := settlement{verdict: ack}
	for _, o := range outcomes {
		if o.verdict == retry {
			s.verdict, s.delay = retry, max(s.delay, o.delay)
		}
	}
	return s
}
