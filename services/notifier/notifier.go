package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/endpoints"
	"github.com/hookstream/hookstream/shared/signing"
)

// Consumer names, shared by every notifier process.
const (
	FanoutConsumer  = "hookstream-fanout"
	DeliverConsumer = "hookstream-deliver"
)

// Notifier fans events out and delivers webhooks.
type Notifier struct {
	cfg Config
	js  jetstream.JetStream
	// pub writes deliveries and attempt logs in group commits.
	pub *bus.GroupCommit
	// logs writes attempt logs behind the webhooks.
	logs *attemptLogs
	// direct holds a token per first attempt fan-out is making itself.
	direct    chan struct{}
	secrets   *signing.Store
	log       jetstream.KeyValue
	tenants   jetstream.KeyValue
	index     *endpoints.Index
	endpoints *endpoints.Store
	limits    *limiter
	parking   parking
	// seenTypes remembers which tenants' event types are already recorded.
	seenTypes sync.Map
	seenCount atomic.Int64
	// typeCounts counts each tenant's recorded event types (*typeCount).
	typeCounts  sync.Map
	fanoutCons  jetstream.Consumer
	deliverCons jetstream.Consumer
	tasksCons   jetstream.Consumer
	client      *http.Client
	logger      *slog.Logger
}

// New builds a notifier on a JetStream whose streams exist (bus.Ensure).
func New(ctx context.Context, cfg Config, js jetstream.JetStream, logger *slog.Logger) (*Notifier, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("notifier config: %w", err)
	}
	secrets, err := signing.Open(ctx, js, cfg.Box)
	if err != nil {
		return nil, err
	}
	log, err := js.KeyValue(ctx, contract.BucketDeliveries)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", contract.BucketDeliveries, err)
	}
	tenants, err := js.KeyValue(ctx, contract.BucketTenants)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", contract.BucketTenants, err)
	}
	index, err := endpoints.NewIndex(ctx, js, cfg.Box, logger)
	if err != nil {
		return nil, err
	}
	eps, err := endpoints.Open(ctx, js, cfg.Box)
	if err != nil {
		return nil, err
	}
	n := &Notifier{
		cfg: cfg, js: js, pub: bus.NewGroupCommit(js, cfg.GroupCommit), direct: make(chan struct{}, max(cfg.DirectAttempts, 0)), secrets: secrets, log: log, tenants: tenants, index: index, endpoints: eps, limits: newLimiter(cfg.EndpointConcurrency, cfg.BreakerFailures, cfg.BreakerCooldown, cfg.Now),
		client: newClient(cfg.Guard, max(cfg.AttemptTimeout, endpoints.MaxAttemptTimeout), cfg.Concurrency+max(cfg.DirectAttempts, 0)),
		logger: logger.With("service", "notifier"),
	}
	n.limits.slowAfter = cfg.slowAfter
	index.OnChange(n.endpointChanged)
	n.logs = newAttemptLogs(n.pub, cfg.logGate)
	n.parking.drains, n.parking.queued = map[string]uint64{}, map[string]bool{}
	n.parking.pace = newPacer(cfg.ParkRate, paceSlice)
	if n.parking.giveUp = cfg.parkedGiveUp; n.parking.giveUp == 0 {
		parked, err := js.Stream(ctx, contract.StreamParked)
		if err != nil {
			n.pub.Close()
			return nil, fmt.Errorf("open stream %s: %w", contract.StreamParked, err)
		}
		n.parking.giveUp = giveUpAge(parked.CachedInfo().Config.MaxAge)
	}
	if err := n.createConsumers(ctx); err != nil {
		n.pub.Close()
		return nil, err
	}
	return n, nil
}

func (n *Notifier) createConsumers(ctx context.Context) error {
	var err error
	n.fanoutCons, err = n.js.CreateOrUpdateConsumer(ctx, contract.StreamEvents, jetstream.ConsumerConfig{
		Durable:       FanoutConsumer,
		Description:   "hookstream fan-out: events to deliveries",
		FilterSubject: contract.SubjectEvents + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       fanoutAckWait,
		MaxDeliver:    -1,
		MaxAckPending: fanoutMaxAckPending,
	})
	if err != nil {
		return fmt.Errorf("create consumer %s: %w", FanoutConsumer, err)
	}
	n.deliverCons, err = n.js.CreateOrUpdateConsumer(ctx, contract.StreamDeliveries, jetstream.ConsumerConfig{
		Durable:       DeliverConsumer,
		Description:   "hookstream webhook deliveries",
		FilterSubject: contract.SubjectDeliveries + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       deliverAckWait,
		MaxDeliver:    -1,
		// Deliveries put back for a short wait (their endpoint at its
		// limits) count as pending while they wait; those that would wait
		// long are parked (park.go), so that no endpoint's queue can use up
		// the slots healthy endpoints need. Pending is server-side state:
		// the client holds only Concurrency.
		MaxAckPending: n.cfg.MaxAckPending,
	})
	if err != nil {
		return fmt.Errorf("create consumer %s: %w", DeliverConsumer, err)
	}
	n.tasksCons, err = n.createTasksConsumer(ctx)
	return err
}

// deletedEndpointsKept is how long a deleted endpoint's marker stays in the
// endpoints bucket: an index whose watch resumes after a longer break in
// its connection would not see the delete (its watch reads on from where it
// was). forgetEvery is how often the notifier removes older ones.
const (
	deletedEndpointsKept = 24 * time.Hour
	forgetEvery          = time.Hour
)

// forgetDeletedEndpoints removes, every forgetEvery until ctx ends, the
// markers of endpoints deleted longer ago than that: otherwise
// the bucket keeps one for every endpoint ever deleted, and every index
// reads them all again at its start.
func (n *Notifier) forgetDeletedEndpoints(ctx context.Context) {
	tick := time.NewTicker(forgetEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := n.endpoints.ForgetDeleted(ctx, deletedEndpointsKept); err != nil && ctx.Err() == nil {
				n.logger.Warn("forget deleted endpoints", "error", err)
			}
		}
	}
}

// endpointChanged gives an endpoint a fresh start in this process's
// limiter when it is enabled again or moved to another URL: its circuit,
// opened by the failures that got it disabled or by its old URL's, closes,
// and it is no longer slow, so that what a recover re-sends to it goes at
// once, not after the circuit's cool-down.
func (n *Notifier) endpointChanged(old, now *endpoints.Endpoint) {
	if old == nil || now == nil || !now.Enabled || (old.Enabled && old.URL == now.URL) {
		return
	}
	n.limits.forget(endpointLimitKey(now.Tenant, now.ID))
}

// Close releases what New took, for a notifier that will not Run (Run
// releases it itself).
func (n *Notifier) Close() { n.pub.Close() }

// Ready is closed once Run fans out and delivers: its index holds every
// stored endpoint.
func (n *Notifier) Ready() <-chan struct{} { return n.index.Ready() }

// Run fans out and delivers until ctx ends, then drains both consumers.
func (n *Notifier) Run(ctx context.Context) error {
	n.logger.Info("notifier running", "concurrency", n.cfg.Concurrency)
	defer n.pub.Close()
	defer n.logs.wait() // before pub closes
	indexCtx, stopIndex := context.WithCancel(context.WithoutCancel(ctx))
	indexDone := make(chan error, 1)
	go func() { indexDone <- n.index.Run(indexCtx) }()
	defer stopIndex()
	select { // fan-out and delivery need every endpoint
	case <-n.index.Ready():
	case err := <-indexDone:
		return fmt.Errorf("endpoint index: %w", err)
	case <-ctx.Done():
		return nil
	}
	// An index that stops (its bucket is gone) stops the notifier: it
	// could no longer tell where events go.
	runCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	go func() {
		select {
		case err := <-indexDone:
			if err != nil {
				n.logger.Error("stopping: endpoint index", "error", err)
				stop(fmt.Errorf("endpoint index: %w", err))
			}
		case <-runCtx.Done():
		}
	}()
	var wg sync.WaitGroup
	errs := make([]error, 6)
	wg.Go(func() { errs[0] = n.runFanout(runCtx, n.fanoutCons) })
	wg.Go(func() { errs[1] = n.runDeliveries(runCtx, n.deliverCons) })
	wg.Go(func() { errs[2] = n.runTasks(runCtx, n.tasksCons) })
	wg.Go(func() { errs[3] = n.runParking(runCtx) })
	// The notifier runs in every deployment, so it keeps the jobs stream
	// trimmed too, for processors of any kind.
	wg.Go(func() { errs[4] = bus.Trim(runCtx, n.js, n.logger, n.cfg.TrimInterval, bus.TrimTargets()...) })
	wg.Go(func() { n.forgetDeletedEndpoints(runCtx) })
	wg.Go(func() {
		if err := n.secrets.Watch(runCtx, n.logger); err != nil {
			n.logger.Warn("signing secrets not watched: a rotation is seen within the cache's 5 s", "error", err)
		}
	})
	wg.Wait()
	if ctx.Err() == nil && runCtx.Err() != nil { // stopped by the index, not by ctx
		errs[5] = context.Cause(runCtx)
	}
	return errors.Join(errs...)
}
