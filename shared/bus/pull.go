package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A pull request expires after pullExpiry; the server sends a heartbeat
// every pullHeartbeat while one waits. When nothing comes for two heartbeats
// while messages are asked for, its requests are taken as lost and it pulls
// again. After a failure that ends its requests (the consumer deleted, no
// responders, a request not sent) it waits before asking again: 4 s,
// doubled at each failure in a row, up to maxPullWait.
const (
	pullExpiry    = 10 * time.Second
	pullHeartbeat = 2 * time.Second
	maxPullWait   = time.Minute
)

// A puller keeps up to n messages of one consumer asked for or waiting to be
// started: whenever fewer than half are, it asks for the rest, in one pull
// request. It is what nats.go's Consume does, without its race: Consume
// skips asking while its previous request is still being sent, and when
// that skip came at the last message asked for, nothing asked again until
// the heartbeats were missed, a pause of two heartbeats under load
// (docs/performance.md, finding 22). Here the count and the request are
// changed under one lock.
type puller struct {
	nc      *nats.Conn
	logger  *slog.Logger
	name    string // the consumer's
	subject string // where pull requests go
	// stream and config are what the consumer is made of again when the
	// server says it is gone (recreate).
	stream string
	config jetstream.ConsumerConfig
	n      int
	// deliver hands a message over; started is to be called once the
	// message no longer waits for a worker (it runs, or went back).
	deliver func(msg jetstream.Msg, started func())

	sub *nats.Subscription

	mu        sync.Mutex
	asked     int       // messages asked for, not yet received nor given back by a status
	waiting   int       // messages received, not yet started
	heard     time.Time // the last request, or message, heartbeat or status on the inbox
	stopped   bool
	retryAt   time.Time     // after a failure: when to ask again; zero otherwise
	wait      time.Duration // the last wait after a failure; 0 once a pull works
	reconnect chan nats.Status
	// gone is set when the server said the consumer is gone (deleted, or
	// no responders): once the wait after that failure is over, recreate
	// runs instead of asking again. recreating is set while it runs.
	gone, recreating bool
}

// pull starts pulling the messages of cons for deliver, n at most asked for
// or waiting at once, on nc. Stop it with drain.
func pull(nc *nats.Conn, logger *slog.Logger, cons jetstream.Consumer, n int, deliver func(msg jetstream.Msg, started func())) (*puller, error) {
	info := cons.CachedInfo()
	p := &puller{
		nc: nc, logger: logger, name: info.Name, n: n, deliver: deliver, stream: info.Stream, config: info.Config,
		// The default API prefix: hookstream uses no JetStream domain.
		subject: fmt.Sprintf("$JS.API.CONSUMER.MSG.NEXT.%s.%s", info.Stream, info.Name),
		heard:   time.Now(),
	}
	sub, err := nc.Subscribe(nc.NewInbox(), p.receive)
	if err != nil {
		return nil, fmt.Errorf("subscribe to pulls of %s: %w", info.Name, err)
	}
	p.sub = sub
	p.reconnect = nc.StatusChanged(nats.CONNECTED)
	p.mu.Lock()
	p.refill()
	p.mu.Unlock()
	go p.watch()
	return p, nil
}

// refill asks for the messages missing to n once fewer than half are asked
// for or waiting, unless it waits after a failure. p.mu is held.
func (p *puller) refill() {
	if p.stopped || !p.retryAt.IsZero() || p.asked+p.waiting > p.n/2 {
		return
	}
	batch := p.n - p.asked - p.waiting
	req := fmt.Appendf(nil, `{"batch":%d,"expires":%d,"idle_heartbeat":%d}`, batch, pullExpiry, pullHeartbeat)
	if err := p.nc.PublishRequest(p.subject, p.sub.Subject, req); err != nil {
		p.fail(fmt.Sprintf("pull request: %v", err))
		return
	}
	p.asked += batch
	p.heard = time.Now()
}

// fail forgets what was asked for and waits before asking again; why is
// logged once per try that fails (failures reported while it waits are
// not), so at most once a minute in a long outage. p.mu is held.
func (p *puller) fail(why string) {
	p.asked = 0
	if !p.retryAt.IsZero() {
		return
	}
	p.wait = min(max(2*p.wait, 2*pullHeartbeat), maxPullWait)
	p.retryAt = time.Now().Add(p.wait)
	p.logger.Warn("consume", "consumer", p.name, "error", why, "retry_in", p.wait)
}

// receive handles what comes to the inbox, in order: messages, heartbeats
// and the statuses that end pull requests.
func (p *puller) receive(msg *nats.Msg) {
	p.mu.Lock()
	p.heard = time.Now()
	if msg.Reply == "" && msg.Header.Get("Status") != "" {
		p.status(msg)
		p.mu.Unlock()
		return
	}
	p.wait = 0
	p.asked = max(p.asked-1, 0) // below 0 after a request was taken as lost
	p.waiting++
	p.mu.Unlock()
	p.deliver(&pulledMsg{msg: msg}, p.started)
}

// started is told that a message received no longer waits for a worker.
func (p *puller) started() {
	p.mu.Lock()
	p.waiting--
	p.refill()
	p.mu.Unlock()
}

// status handles a status message: a heartbeat, a request that ended with
// messages left (given back), a leader change (asked again at once), or a
// failure. p.mu is held.
func (p *puller) status(msg *nats.Msg) {
	code, description := msg.Header.Get("Status"), msg.Header.Get("Description")
	switch {
	case code == "100":
		p.wait = 0
		return
	case code == "409" && description == "Leadership Change":
		p.asked = 0
		p.refill()
		return
	case code == "503":
		description = "no responders: the consumer is gone or has no leader"
	}
	if left, err := strconv.Atoi(msg.Header.Get("Nats-Pending-Messages")); err == nil {
		// 408 Request Timeout, or a request ended early: its messages
		// left are no longer coming.
		p.asked = max(p.asked-left, 0)
		p.refill()
		return
	}
	p.fail(code + " " + description)
	if (code == "409" && description == "Consumer Deleted") || code == "503" {
		p.gone = true
	}
}

// recreate makes the consumer again, as it was, if the server says it does
// not exist: deleted by hand, or lost; nothing else would make it, and its
// messages would wait until the process restarts. It runs after the wait
// that followed the failure, not at once: the server says a consumer is
// deleted before its deletion is over, and one made meanwhile was taken
// down with it. One that exists (the 503 of a consumer without a leader
// for a moment) is left as it is. Then it asks again.
func (p *puller) recreate() {
	defer func() {
		p.mu.Lock()
		p.recreating = false
		if !p.stopped {
			p.again()
		}
		p.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := jetstream.New(p.nc)
	if err != nil {
		p.logger.Warn("consume: look the consumer up", "consumer", p.name, "error", err)
		return
	}
	if _, err = js.Consumer(ctx, p.stream, p.name); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		if err != nil {
			p.logger.Warn("consume: look the consumer up", "consumer", p.name, "error", err)
		}
		return
	}
	switch _, err = js.CreateConsumer(ctx, p.stream, p.config); {
	case errors.Is(err, jetstream.ErrConsumerExists): // made meanwhile, by another process
	case err != nil:
		p.logger.Warn("consume: create the consumer again", "consumer", p.name, "error", err)
	default:
		p.logger.Warn("consume: the consumer was gone; created it again", "consumer", p.name)
	}
}

// watch asks again when nothing came for two heartbeats while the puller was
// connected and had messages asked for (its requests were lost: dropped by
// the server, or their end not seen), when a wait after a failure is over,
// and on reconnecting.
func (p *puller) watch() {
	tick := time.NewTicker(pullHeartbeat / 4)
	defer tick.Stop()
	for {
		select {
		case _, ok := <-p.reconnect:
			if !ok {
				return
			}
			p.mu.Lock()
			p.retryAt, p.wait = time.Time{}, 0
			p.again()
			p.mu.Unlock()
		case <-tick.C:
			if !p.check() {
				return
			}
		}
	}
}

// check is watch's look at the puller; false once it is stopped.
func (p *puller) check() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.stopped:
		return false
	case !p.nc.IsConnected():
		// Reconnecting: watch asks again then. Not a silence.
	case p.recreating:
	case !p.retryAt.IsZero():
		if time.Now().After(p.retryAt) {
			p.retryAt = time.Time{}
			if p.gone {
				p.gone, p.recreating = false, true
				go p.recreate()
			} else {
				p.again()
			}
		}
	case p.asked == 0:
		// Every worker busy and enough waiting: nothing is asked for.
	case time.Since(p.heard) > 2*pullHeartbeat:
		p.logger.Warn("consume", "consumer", p.name, "error", "no heartbeat received", "asked", p.asked)
		p.again()
	}
	return true
}

// again forgets what was asked for and asks anew. p.mu is held.
func (p *puller) again() {
	p.asked = 0
	p.heard = time.Now()
	p.refill()
}

// drain stops asking, lets the messages already received be handed over,
// and returns closed, which is closed once they are. stop ends it sooner.
func (p *puller) drain() (closed <-chan struct{}, stop func()) {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.nc.RemoveStatusListener(p.reconnect)
	done := make(chan struct{})
	var once sync.Once
	end := func() { once.Do(func() { close(done) }) }
	p.sub.SetClosedHandler(func(string) { end() })
	if err := p.sub.Drain(); err != nil { // the connection is closed
		_ = p.sub.Unsubscribe()
		end()
	}
	return done, func() { _ = p.sub.Unsubscribe() }
}
