package processor

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/jobstore"
)

// ConsumerName is the durable consumer of one job type, shared by every
// processor that runs that type: "hookstream-processor-<type>" (dots become
// underscores). One consumer per type lets processors with different types
// share a cluster, and other-language processors own their own types.
func ConsumerName(jobType string) string {
	return "hookstream-processor-" + strings.ReplaceAll(jobType, ".", "_")
}

// BatchConsumerName is the durable consumer of one job type's batches
// (contract.JobBatchSubject), shared like ConsumerName's:
// "hookstream-job-batches-<type>". Batches have a subject and a consumer of
// their own, so that a processor that does not know them never gets one.
func BatchConsumerName(jobType string) string {
	return "hookstream-job-batches-" + strings.ReplaceAll(jobType, ".", "_")
}

// Processor consumes jobs and runs them.
type Processor struct {
	cfg  Config
	js   jetstream.JetStream
	pub  *bus.GroupCommit
	jobs *jobstore.Store
	// consumers are two per job type: its jobs' and its batches'.
	consumers []consumer
	// slots holds, per job type, one token per job running (Concurrency):
	// a message that holds several jobs runs them at once, each in a slot.
	slots map[string]chan struct{}
	// pool runs the jobs of batches.
	pool *bus.Pool
	// announcing tracks job.running events being published (announce).
	announcing sync.WaitGroup
	// stopping ends when Run is told to stop: no job of a batch starts
	// after that.
	stopping context.Context
	logger   *slog.Logger
	now      func() time.Time
	// duplicates is the jobs stream's de-duplication window, as read at
	// start.
	duplicates time.Duration
}

type consumer struct {
	cons   jetstream.Consumer
	handle func(context.Context, jetstream.Msg)
}

// New builds a processor on a JetStream whose streams exist (bus.Ensure).
func New(ctx context.Context, cfg Config, js jetstream.JetStream, logger *slog.Logger) (*Processor, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("processor config: %w", err)
	}
	pub := bus.NewGroupCommit(js, cfg.GroupCommit)
	jobs, err := jobstore.Open(ctx, cmp.Or(cfg.RecordReader, js), pub)
	if err != nil {
		pub.Close()
		return nil, err
	}
	p := &Processor{
		cfg: cfg, js: js, pub: pub, jobs: jobs, slots: map[string]chan struct{}{}, pool: bus.NewPool(), stopping: context.Background(),
		logger: logger.With("service", "processor"), now: time.Now,
	}
	stream, err := js.Stream(ctx, contract.StreamJobs)
	if err != nil {
		pub.Close()
		return nil, fmt.Errorf("read stream %s: %w", contract.StreamJobs, err)
	}
	p.duplicates = stream.CachedInfo().Config.Duplicates
	for _, t := range p.Types() {
		p.slots[t] = make(chan struct{}, cfg.Concurrency)
		jobsCons, err := p.createConsumer(ctx, ConsumerName(t), "hookstream processors of "+t+" jobs", contract.JobSubject("*", t))
		if err != nil {
			pub.Close()
			return nil, err
		}
		batchCons, err := p.createConsumer(ctx, BatchConsumerName(t), "hookstream processors of batches of "+t+" jobs", contract.JobBatchSubject("*", t))
		if err != nil {
			pub.Close()
			return nil, err
		}
		p.consumers = append(p.consumers, consumer{jobsCons, p.handle}, consumer{batchCons, p.handleBatch})
	}
	return p, nil
}

// Close releases what New took, for a processor that will not Run (Run
// releases it itself).
func (p *Processor) Close() { p.pub.Close() }

// Types returns the job types this processor runs, sorted.
func (p *Processor) Types() []string {
	types := make([]string, 0, len(p.cfg.Handlers))
	for t := range p.cfg.Handlers {
		types = append(types, t)
	}
	slices.Sort(types)
	return types
}

func (p *Processor) createConsumer(ctx context.Context, name, description, filter string) (jetstream.Consumer, error) {
	cons, err := p.js.CreateOrUpdateConsumer(ctx, contract.StreamJobs, jetstream.ConsumerConfig{
		Durable:       name,
		Description:   description,
		FilterSubject: filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       p.cfg.AckWait,
		MaxDeliver:    -1, // attempts are counted in the job record
		// Jobs waiting for a retry (NakWithDelay) count as pending: a high
		// cap keeps failing jobs from holding back the others of their type.
		MaxAckPending: 20_000,
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", name, err)
	}
	return cons, nil
}

// Run consumes jobs until ctx ends, then stops taking new ones, lets running
// ones finish within ShutdownGrace and returns. Each job type runs up to
// Concurrency jobs at once.
func (p *Processor) Run(ctx context.Context) error {
	p.logger.Info("processor running", "types", p.Types(), "concurrency", p.cfg.Concurrency)
	defer p.pub.Close()
	p.stopping = ctx
	var wg sync.WaitGroup
	errs := make([]error, len(p.consumers))
	for i, c := range p.consumers {
		wg.Go(func() {
			errs[i] = bus.Workers(ctx, p.js.Conn(), p.logger, c.cons, p.cfg.Concurrency, p.cfg.ShutdownGrace, c.handle)
		})
	}
	wg.Wait()
	p.announcing.Wait()
	return errors.Join(errs...)
}

// jobID returns the id of a job read from a message: the id in the body,
// else one made from the stream sequence, masked, and the nonce intake set,
// else the message's Nats-Msg-Id, else one made from the stream sequence
// alone.
func (p *Processor) jobID(req contract.JobRequest, msgID string, seq uint64) string {
	switch {
	case req.ID != "":
		return req.ID
	case req.Nonce != "":
		return contract.SequenceJobID(seq^p.cfg.Box.JobIDMask(req.Nonce), req.Nonce)
	case msgID != "":
		return msgID
	}
	return contract.SequenceJobID(seq, "")
}

// decodeJob reads a job message that holds one job, described by meta,
// into the record it stands for, and the job as the message says it.
func (p *Processor) decodeJob(msg jetstream.Msg, meta *jetstream.MsgMetadata) (contract.JobRecord, contract.JobRequest, error) {
	var req contract.JobRequest
	tenant, jobType, err := contract.ParseJobSubject(msg.Subject())
	if err != nil {
		return contract.JobRecord{}, req, err
	}
	if err := json.Unmarshal(contract.ValidUTF8(msg.Data()), &req); err != nil {
		return contract.JobRecord{}, req, fmt.Errorf("decode job request: %w", err)
	}
	rec, err := p.jobRecord(tenant, jobType, req, msg.Headers().Get(contract.HeaderMsgID), meta)
	return rec, req, err
}

// jobRecord makes the record that a job read from the message described by
// meta stands for.
func (p *Processor) jobRecord(tenant, jobType string, req contract.JobRequest, msgID string, meta *jetstream.MsgMetadata) (contract.JobRecord, error) {
	id := p.jobID(req, msgID, meta.Sequence.Stream)
	if len(id) > 128 || !contract.ValidType(id) {
		return contract.JobRecord{}, fmt.Errorf("job id %q is not valid", id)
	}
	return jobstore.Queued(tenant, jobType, id, req, meta.Timestamp, p.cfg.JobRetention), nil
}
