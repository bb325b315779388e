package notifier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/metrics"
)

// Parking. A delivery whose endpoint's circuit is open cannot be sent now,
// and it may not wait in the delivery consumer either: a message put back
// with a delay stays pending there, and once MaxAckPending of them belong to
// dead endpoints the consumer hands out nothing else, so healthy endpoints'
// deliveries would wait behind a dead one's backlog. So the delivery is
// parked instead: copied to hookstream.parked.<tenant>.<target> in
// HOOKSTREAM_PARKED, then acknowledged. The same goes for a delivery put
// back parkAfter times already because its endpoint was at its limits (rate
// or requests in flight): a long queue for a slow endpoint would otherwise
// cycle through the consumer, every message of it, several times a second.
//
// Every parked target has a consumer of its own (a drain), with no more
// messages out at once than the endpoint may have requests in flight. They
// take the same path as any delivery: while the circuit stays open they wait
// in place, the first one due after the cool-down is the probe, and once a
// probe succeeds the rest flow at the endpoint's limits. A notifier starts a
// drain when it parks a delivery, and at start and every parkedRescan for
// every parked subject it finds, so that parked deliveries of a process that
// stopped are drained by the others.
//
// A process runs at most maxDrains drains at once, each a pull and a few
// goroutines here, however many targets are dead (a tenant's jobs may name
// any number of callback hosts). The targets beyond wait in line for a
// drain; while some do, a drain that has settled nothing for a parkedCheck
// (its circuit open, its deliveries waiting in place), or has had its turn
// for drainTurn, gives its place to the first in line and goes to the back.
// A drain that gives way takes no more deliveries and lets those under way
// finish (each attempt has its own timeout); only a shutdown cuts them
// short, after ShutdownGrace. A dead target's deliveries then wait for
// their turn as well as for their probe. The server keeps each target's
// consumer until it has been idle for parkedIdle.
const (
	// maxDrains is how many drains a process runs at once.
	maxDrains = 128
	// drainTurn is the longest a drain keeps its place while others wait.
	drainTurn = time.Minute
	// drainGrace bounds the wait for the deliveries under way in a drain
	// that gives way: far longer than a round of attempts takes.
	drainGrace = 5 * time.Minute
	// parkAfter is how many times a delivery is put back for its
	// endpoint's limits before it is parked.
	parkAfter = 3
	// parkedCheck is how often a drain looks whether it is empty.
	parkedCheck = 5 * time.Second
	// parkedRescan is how often the parked stream is scanned for targets
	// without a drain in this process.
	parkedRescan = time.Minute
	// parkedIdle is how long the server keeps a drain consumer nobody uses.
	parkedIdle = 10 * time.Minute
	// giveUpMargin is how long before the parked stream's MaxAge would
	// remove a parked delivery that its drain dead-letters it instead.
	giveUpMargin = 24 * time.Hour
)

// giveUpAge is the age of a parked copy at which its drain dead-letters it
// rather than hold it for its target once more: a day, or a quarter of
// maxAge when that is shorter, before the parked stream would remove it
// unseen. A target whose circuit stays open that long (a job callback host
// is never disabled, as an endpoint is after DisableAfter) loses nothing:
// each of its deliveries ends failed in the attempt log, and can be retried.
// Zero (no MaxAge) never gives up.
func giveUpAge(maxAge time.Duration) time.Duration {
	if maxAge <= 0 {
		return 0
	}
	return maxAge - min(giveUpMargin, maxAge/4)
}

// parking tracks this process's drains.
type parking struct {
	// pace spaces out the parks of the delivery consumer (Config.ParkRate).
	pace *pacer
	mu   sync.Mutex
	// ctx is the notifier's run; drains start only while it runs and
	// stopped is false. stopped is set before wg is waited for, so that no
	// drain starts after the wait began.
	ctx     context.Context
	stopped bool
	wg      sync.WaitGroup
	// drains maps each parked subject this process drains to the number
	// of deliveries parked on it since its drain started.
	drains map[string]uint64
	// queue holds the parked subjects waiting for a drain, oldest first,
	// while maxDrains run; queued is its set. most is the most drains run
	// at once.
	queue  []string
	queued map[string]bool
	most   int
	// giveUp is the age of a parked copy that is dead-lettered instead of
	// held (giveUpAge); 0: never.
	giveUp time.Duration
}

// parkTarget is the token a delivery is parked under: its endpoint, or for a
// job callback a digest of the tenant's callback host, which is what its
// circuit is kept by (limitKey).
func parkTarget(d *contract.Delivery) string {
	if d.EndpointID != "" {
		return d.EndpointID
	}
	sum := sha256.Sum256([]byte(limitKey(d)))
	return callbackTarget + "_" + hex.EncodeToString(sum[:8])
}

// deliveryTarget is the target token of d's delivery subject.
func deliveryTarget(d *contract.Delivery) string {
	if d.EndpointID != "" {
		return d.EndpointID
	}
	return callbackTarget
}

// park moves a delivery message held back by an open circuit to the parked
// stream and acknowledges it. msgID de-duplicates the parked copy.
func (n *Notifier) park(ctx context.Context, msg jetstream.Msg, tenant, target string) error {
	if err := n.parking.pace.Wait(ctx); err != nil {
		return err
	}
	meta, err := msg.Metadata()
	if err != nil {
		return err
	}
	if err := n.publishParked(ctx, tenant, target, "s"+strconv.FormatUint(meta.Sequence.Stream, 10), msg.Data(), true); err != nil {
		return err
	}
	if err := msg.Ack(); err != nil {
		// Redelivered and parked again: the parked copy is de-duplicated
		// within the stream's window, sent twice after it (same webhook-id).
		n.logger.Warn("acknowledge parked delivery", "subject", msg.Subject(), "error", err)
	}
	return nil
}

// publishParked stores a delivery message on the parked subject of its
// target and makes sure a drain runs for it. A paced park (the delivery
// consumer's) waits for the rest of its group to share its write.
func (n *Notifier) publishParked(ctx context.Context, tenant, target, msgID string, data []byte, paced bool) error {
	subject := contract.ParkedSubject(tenant, target)
	out := nats.NewMsg(subject)
	out.Data = data
	out.Header.Set(contract.HeaderMsgID, "parked."+msgID)
	out.Header.Set(contract.HeaderContractVersion, contract.Version)
	var err error
	if paced {
		_, err = n.pub.PublishParked(ctx, out)
	} else {
		_, err = n.pub.PublishMsg(ctx, out)
	}
	if err != nil {
		return fmt.Errorf("park delivery on %s: %w", subject, err)
	}
	metrics.Parked.Inc("")
	n.ensureDrain(subject)
	return nil
}

// ensureDrain starts a drain of subject unless this process runs one, or
// puts it in line for one while maxDrains run.
func (n *Notifier) ensureDrain(subject string) {
	p := &n.parking
	p.mu.Lock()
	defer p.mu.Unlock()
	if parks, ok := p.drains[subject]; ok {
		p.drains[subject] = parks + 1
		return
	}
	if p.ctx == nil || p.ctx.Err() != nil || p.stopped {
		return
	}
	if len(p.drains) >= n.cfg.maxDrains {
		p.enqueue(subject)
		return
	}
	n.startDrain(subject)
}

// startDrain runs a drain of subject; p.mu is held.
func (n *Notifier) startDrain(subject string) {
	p := &n.parking
	p.drains[subject] = 0
	p.most = max(p.most, len(p.drains))
	p.wg.Go(func() { n.drain(p.ctx, subject) })
}

// enqueue puts subject in line for a drain, unless it is; p.mu is held.
func (p *parking) enqueue(subject string) {
	if !p.queued[subject] {
		p.queued[subject] = true
		p.queue = append(p.queue, subject)
	}
}

// drainEnded forgets subject's drain, puts subject back in line when it
// yielded its place (deliveries are left), and starts the drains of the
// first subjects in line.
func (n *Notifier) drainEnded(subject string, yielded bool) {
	p := &n.parking
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.drains, subject)
	if yielded {
		p.enqueue(subject)
	}
	n.startQueued()
}

// startQueued starts the drains of the first subjects in line, while fewer
// than maxDrains run; p.mu is held.
func (n *Notifier) startQueued() {
	p := &n.parking
	for len(p.queue) > 0 && len(p.drains) < n.cfg.maxDrains && p.ctx.Err() == nil && !p.stopped {
		next := p.queue[0]
		p.queue = p.queue[1:]
		delete(p.queued, next)
		if _, running := p.drains[next]; !running {
			n.startDrain(next)
		}
	}
}

// othersWait tells whether subjects wait in line for a drain.
func (p *parking) othersWait() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue) > 0
}

// runParking drains every parked subject until ctx ends: those found now,
// those found by each later scan, and those parked meanwhile.
func (n *Notifier) runParking(ctx context.Context) error {
	p := &n.parking
	p.mu.Lock()
	p.ctx, p.stopped = ctx, false
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.stopped = true
		p.mu.Unlock()
		p.wg.Wait()
	}()
	tick := time.NewTicker(n.cfg.parkedRescan)
	defer tick.Stop()
	for {
		if err := n.scanParked(ctx); err != nil && ctx.Err() == nil {
			n.logger.Warn("scan parked deliveries", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// scanParked starts a drain for every subject with parked deliveries.
func (n *Notifier) scanParked(ctx context.Context) error {
	stream, err := n.js.Stream(ctx, contract.StreamParked)
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(contract.SubjectParked+".>"))
	if err != nil {
		return err
	}
	for subject, count := range info.State.Subjects {
		if count > 0 {
			n.ensureDrain(subject)
		}
	}
	return nil
}

// drain delivers the deliveries parked on subject until none is left or ctx
// ends.
func (n *Notifier) drain(ctx context.Context, subject string) {
	done := func() { n.drainEnded(subject, false) }
	sum := sha256.Sum256([]byte(subject))
	cons, err := n.js.CreateOrUpdateConsumer(ctx, contract.StreamParked, jetstream.ConsumerConfig{
		Durable:           "hookstream-parked-" + hex.EncodeToString(sum[:8]),
		Description:       "hookstream drain of " + subject,
		FilterSubject:     subject,
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           deliverAckWait,
		MaxDeliver:        -1,
		MaxAckPending:     n.cfg.EndpointConcurrency,
		InactiveThreshold: parkedIdle,
	})
	if err != nil {
		done() // the next scan tries again
		if ctx.Err() == nil {
			n.logger.Warn("start drain of parked deliveries", "subject", subject, "error", err)
		}
		return
	}
	workCtx, stop := context.WithCancel(ctx)
	defer stop()
	// Deliveries under way run until they are done when the drain gives
	// way (stop), and get ShutdownGrace when the process stops (ctx).
	handlers, cutShort := context.WithCancel(context.WithoutCancel(ctx))
	defer cutShort()
	defer context.AfterFunc(ctx, func() { time.AfterFunc(n.cfg.ShutdownGrace, cutShort) })()
	ran := make(chan error, 1)
	go func() {
		ran <- bus.Workers(workCtx, n.js.Conn(), n.logger, cons, n.cfg.EndpointConcurrency, drainGrace, func(wctx context.Context, msg jetstream.Msg) {
			hctx, cancel := context.WithCancel(handlers)
			defer cancel()
			defer context.AfterFunc(wctx, cancel)() // Workers' grace is over
			n.handleParked(hctx, msg)
		})
	}()
	tick := time.NewTicker(n.cfg.parkedCheck)
	defer tick.Stop()
	failed := 0
	began := time.Now()
	var settled uint64 // the consumer's ack floor at the last check
	for {
		select {
		case err := <-ran:
			done()
			if err != nil && ctx.Err() == nil {
				n.logger.Warn("drain parked deliveries", "subject", subject, "error", err)
			}
			return
		case <-tick.C:
			empty, err := n.drained(ctx, cons, subject)
			if err != nil {
				failed++
			} else {
				failed = 0
			}
			if failed >= 3 && ctx.Err() == nil {
				// Its consumer is gone (deleted, or removed as idle
				// while this process was cut off): start over at
				// the next park or scan.
				n.logger.Warn("drain of parked deliveries lost its consumer", "subject", subject, "error", err)
				stop()
				<-ran
				done()
				return
			}
			if empty { // and forgotten (drained)
				stop()
				<-ran
				n.parking.mu.Lock()
				n.startQueued()
				n.parking.mu.Unlock()
				return
			}
			if err != nil || !n.parking.othersWait() {
				continue
			}
			info, err := cons.Info(ctx)
			if err != nil {
				continue
			}
			if info.AckFloor.Consumer == settled || time.Since(began) >= drainTurn { // give way
				stop()
				<-ran
				n.drainEnded(subject, true)
				return
			}
			settled = info.AckFloor.Consumer
		}
	}
}

// drained reports whether cons has nothing left, and then forgets its drain.
// A delivery parked meanwhile is either counted by the consumer or, parked
// after it was asked, has changed the drain's park count (ensureDrain runs
// after the park is stored), so the drain is kept; or it comes after the
// drain was forgotten and starts a new one.
func (n *Notifier) drained(ctx context.Context, cons jetstream.Consumer, subject string) (bool, error) {
	p := &n.parking
	p.mu.Lock()
	parks := p.drains[subject]
	p.mu.Unlock()
	info, err := cons.Info(ctx)
	if err != nil || info.NumPending > 0 || info.NumAckPending > 0 {
		return false, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drains[subject] != parks {
		return false, nil
	}
	delete(p.drains, subject)
	return true, nil
}

// handleParked delivers one parked delivery.
func (n *Notifier) handleParked(ctx context.Context, msg jetstream.Msg) {
	n.handle(ctx, msg, true)
}

// parkedTooLong tells whether msg, a parked copy, has waited giveUp since it
// was parked.
func (n *Notifier) parkedTooLong(msg jetstream.Msg) (time.Duration, bool) {
	meta, err := msg.Metadata()
	if err != nil || n.parking.giveUp == 0 {
		return 0, false
	}
	age := n.cfg.Now().Sub(meta.Timestamp)
	return age, age >= n.parking.giveUp
}

// giveUpParked dead-letters a parked delivery whose target has not taken it
// for age (an open circuit, or limits it never got under): its attempt log
// says failed, with why, before its message is acknowledged, and the tenant
// gets a delivery.exhausted event.
func (n *Notifier) giveUpParked(ctx context.Context, msg jetstream.Msg, age time.Duration) {
	d, ok := n.decodeDelivery(msg)
	if !ok {
		return
	}
	if n.overtaken(ctx, &d) { // not to be written over with failed
		n.settle(msg, done)
		return
	}
	logger := n.logger.With("delivery_id", d.ID, "tenant_id", d.Tenant)
	reason := "not sent: parked for " + age.Round(time.Minute).String() +
		" (its target's circuit open, or its limits reached), and parked deliveries are kept no longer; retry it once the target takes deliveries"
	d.Attempts = append(d.Attempts, contract.Attempt{At: n.cfg.Now().UTC(), Error: reason})
	logger.Warn("parked delivery dead-lettered", "parked_for", age.Round(time.Minute).String())
	n.announceExhausted(ctx, logger, &d, reason)
	v, log := n.finish(logger, &d, contract.DeliveryFailed, nil)
	if log == nil {
		n.settle(msg, v)
		return
	}
	stopKeepAlive := bus.KeepAlive(msg, deliverAckWait/3)
	n.logs.write(ctx, logger, log, v.logTries(), func(over bool) {
		defer stopKeepAlive()
		n.settleDelivery(ctx, msg, &d, v.onceLogged(over))
	})
}

// putBack is how many times msg was handed out before this time.
func putBack(msg jetstream.Msg) uint64 {
	if meta, err := msg.Metadata(); err == nil && meta.NumDelivered > 0 {
		return meta.NumDelivered - 1
	}
	return 0
}

// holdBack puts back a delivery that its endpoint cannot take for wait
// still: from the delivery consumer it is parked; from a drain (or when it
// cannot be parked) it waits in place, since a drain has only a few
// messages out, unless it has been parked too long (giveUpAge).
func (n *Notifier) holdBack(ctx context.Context, msg jetstream.Msg, tenant, target string, wait time.Duration, parked, circuit bool) {
	if parked {
		if age, old := n.parkedTooLong(msg); old {
			n.giveUpParked(ctx, msg, age)
			return
		}
	} else {
		err := n.park(ctx, msg, tenant, target)
		if err == nil {
			return
		}
		n.logger.Warn("park delivery", "subject", msg.Subject(), "error", err)
	}
	if circuit {
		_ = msg.NakWithDelay(wait + rand.N(wait/4+1)) // until the probe is due
		return
	}
	_ = msg.NakWithDelay(overLimitDelay(msg, wait))
}

// heldTarget reads a delivery message's tenant and target from its subject,
// and whether that target is an endpoint whose circuit is open, and for how
// long still: a job callback's circuit is kept by host, which only the
// message tells.
func (n *Notifier) heldTarget(subject string, parked bool) (tenant, target string, wait time.Duration, held bool) {
	parse := contract.ParseDeliverySubject
	if parked {
		parse = contract.ParseParkedSubject
	}
	tenant, target, err := parse(subject)
	if err != nil || target == callbackTarget || strings.HasPrefix(target, callbackTarget+"_") {
		return tenant, target, 0, false
	}
	wait, held = n.limits.circuitWait(tenant + "/" + target)
	return tenant, target, wait, held
}
