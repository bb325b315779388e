package processor

import (
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

// Processor consumes jobs and runs them.
type Processor struct {
	cfg    Config
	js     jetstream.JetStream
	pub    *bus.GroupCommit
	jobs   *jobstore.Store
	cons   []jetstream.Consumer
	logger *slog.Logger
	now    func() time.Time
}

// New builds a processor on a JetStream whose streams exist (bus.Ensure).
func New(ctx context.Context, cfg Config, js jetstream.JetStream, logger *slog.Logger) (*Processor, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("processor config: %w", err)
	}
	pub := bus.NewGroupCommit(js, cfg.GroupCommit)
	jobs, err := jobstore.Open(ctx, js, pub)
	if err != nil {
		pub.Close()
		return nil, err
	}
	p := &Processor{cfg: cfg, js: js, pub: pub, jobs: jobs, logger: logger.With("service", "processor"), now: time.Now}
	for _, t := range p.Types() {
		cons, err := p.createConsumer(ctx, t)
		if err != nil {
			pub.Close()
			return nil, err
		}
		p.cons = append(p.cons, cons)
	}
	return p, nil
}

// Types returns the job types this processor runs, sorted.
func (p *Processor) Types() []string {
	types := make([]string, 0, len(p.cfg.Handlers))
	for t := range p.cfg.Handlers {
		types = append(types, t)
	}
	slices.Sort(types)
	return types
}

func (p *Processor) createConsumer(ctx context.Context, jobType string) (jetstream.Consumer, error) {
	name := ConsumerName(jobType)
	cons, err := p.js.CreateOrUpdateConsumer(ctx, contract.StreamJobs, jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "hookstream processors of " + jobType + " jobs",
		FilterSubject: contract.SubjectJobs + ".*." + jobType,
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
	var wg sync.WaitGroup
	errs := make([]error, len(p.cons))
	for i, cons := range p.cons {
		wg.Go(func() { errs[i] = bus.Workers(ctx, cons, p.cfg.Concurrency, p.cfg.ShutdownGrace, p.handle) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// jobIDOf returns the job id of a message: the id in the body, else one
// made from the stream sequence, masked, and the nonce intake set, else its
// Nats-Msg-Id, else one made from the stream sequence alone.
func (p *Processor) jobIDOf(msg jetstream.Msg, req contract.JobRequest) string {
	if req.ID != "" {
		return req.ID
	}
	if id := msg.Headers().Get(contract.HeaderMsgID); id != "" && req.Nonce == "" {
		return id
	}
	meta, err := msg.Metadata()
	if err != nil {
		return ""
	}
	seq := meta.Sequence.Stream
	if req.Nonce != "" {
		seq ^= p.cfg.Box.JobIDMask(req.Nonce)
	}
	return contract.SequenceJobID(seq, req.Nonce)
}

// decodeJob reads a job message into the record it stands for.
func (p *Processor) decodeJob(msg jetstream.Msg) (contract.JobRecord, error) {
	tenant, jobType, err := contract.ParseJobSubject(msg.Subject())
	if err != nil {
		return contract.JobRecord{}, err
	}
	var req contract.JobRequest
	if err := json.Unmarshal(msg.Data(), &req); err != nil {
		return contract.JobRecord{}, fmt.Errorf("decode job request: %w", err)
	}
	id := p.jobIDOf(msg, req)
	if id == "" || len(id) > 128 || !contract.ValidType(id) {
		return contract.JobRecord{}, fmt.Errorf("job id %q is not valid", id)
	}
	stored := p.now()
	if meta, err := msg.Metadata(); err == nil {
		stored = meta.Timestamp
	}
	return jobstore.Queued(tenant, jobType, id, req, stored, p.cfg.JobRetention), nil
}
