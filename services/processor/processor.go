package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/jobstore"
)

// ConsumerName is the durable consumer all processors of hookstream share.
const ConsumerName = "hookstream-processor"

// Processor consumes jobs and runs them.
type Processor struct {
	cfg    Config
	js     jetstream.JetStream
	jobs   *jobstore.Store
	cons   jetstream.Consumer
	logger *slog.Logger
	now    func() time.Time
}

// New builds a processor on a JetStream whose streams exist (bus.Ensure).
func New(ctx context.Context, cfg Config, js jetstream.JetStream, logger *slog.Logger) (*Processor, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("processor config: %w", err)
	}
	jobs, err := jobstore.Open(ctx, js)
	if err != nil {
		return nil, err
	}
	p := &Processor{cfg: cfg, js: js, jobs: jobs, logger: logger.With("service", "processor"), now: time.Now}
	if p.cons, err = p.createConsumer(ctx); err != nil {
		return nil, err
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

func (p *Processor) createConsumer(ctx context.Context) (jetstream.Consumer, error) {
	subjects := make([]string, 0, len(p.cfg.Handlers))
	for _, t := range p.Types() {
		subjects = append(subjects, contract.SubjectJobs+".*."+t)
	}
	cons, err := p.js.CreateOrUpdateConsumer(ctx, contract.StreamJobs, jetstream.ConsumerConfig{
		Durable:        ConsumerName,
		Description:    "hookstream processors",
		FilterSubjects: subjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        p.cfg.AckWait,
		MaxDeliver:     -1, // attempts are counted in the job record
		MaxAckPending:  max(1000, 4*p.cfg.Concurrency),
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", ConsumerName, err)
	}
	return cons, nil
}

// Run consumes jobs until ctx ends, then stops taking new ones, lets running
// ones finish within ShutdownGrace and returns.
func (p *Processor) Run(ctx context.Context) error {
	p.logger.Info("processor running", "types", p.Types(), "concurrency", p.cfg.Concurrency)
	return bus.Workers(ctx, p.cons, p.cfg.Concurrency, p.cfg.ShutdownGrace, p.handle)
}

// jobIDOf returns the job id of a message: the id in the body, else its
// Nats-Msg-Id, else one derived from the stream sequence.
func jobIDOf(msg jetstream.Msg, req contract.JobRequest) string {
	if req.ID != "" {
		return req.ID
	}
	if id := msg.Headers().Get(contract.HeaderMsgID); id != "" {
		return id
	}
	meta, err := msg.Metadata()
	if err != nil {
		return ""
	}
	return "job_s" + strconv.FormatUint(meta.Sequence.Stream, 10)
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
	id := jobIDOf(msg, req)
	if id == "" || len(id) > 128 || !contract.ValidType(id) {
		return contract.JobRecord{}, fmt.Errorf("job id %q is not valid", id)
	}
	created := p.now().UTC()
	if meta, err := msg.Metadata(); err == nil {
		created = meta.Timestamp.UTC()
	}
	return contract.JobRecord{
		Job: contract.Job{
			ID: id, Type: jobType, Status: contract.StatusQueued, Metadata: req.Metadata,
			CreatedAt: created, UpdatedAt: created, ExpiresAt: created.Add(p.cfg.JobRetention),
		},
		Tenant: tenant, Payload: req.Payload, CallbackURL: req.CallbackURL,
	}, nil
}
