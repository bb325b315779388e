package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/metrics"
)

// Headers of a NATS atomic batch publish (nats-server 2.12+).
const (
	headerBatchID     = "Nats-Batch-Id"
	headerBatchSeq    = "Nats-Batch-Sequence"
	headerBatchCommit = "Nats-Batch-Commit"
)

// JetStream error codes the committer branches on.
const (
	errCodeAtomicPublishDisabled = 10174
	errCodeWrongLastSequence     = 10071
	// Replicated streams report the same conflict with this code.
	errCodeWrongLastSequenceConstant = 10164
)

// Committer limits.
const (
	// DefaultCommitBatch is the most messages written in one group commit.
	// nats-server refuses atomic batches of more than 1,000.
	DefaultCommitBatch = 256
	// DefaultCommitsInFlight is how many group commits to one stream may
	// wait for their PubAck at once; while they all wait, new publishes
	// gather into the next one.
	DefaultCommitsInFlight = 1
	// MinAtomicBatch is the fewest messages written as an atomic batch;
	// fewer are published one by one, at most MaxSinglesInFlight at once.
	// nats-server 2.15 stages an atomic batch of a file-backed R1 stream in
	// a file store of its own, whose setup costs about as much as a few
	// synced writes: a batch pays off from a few messages on. Measured on
	// a 2-core machine (docs/performance.md): 4 added latency at moderate
	// load, 16 left intake's max throughput where plain publishes are.
	MinAtomicBatch = 8
	// MaxSinglesInFlight bounds the messages published one by one at once.
	// While that many wait for their PubAck, publishes gather into a batch.
	MaxSinglesInFlight = 8
	commitMaxBytes     = 4 << 20
	commitTimeout      = 10 * time.Second
	// plainFor is how long a committer publishes one by one after a stream
	// said atomic publish is disabled, before it tries batches again.
	plainFor = time.Minute
	// ParkLinger is how long the committer of paced parks
	// (GroupCommit.PublishParked) waits for more publishes to join a batch.
	ParkLinger = 5 * time.Millisecond
)

// Committer writes the messages that many goroutines publish to one stream
// as group commits: whatever publishes are waiting when a commit can start
// are written as one NATS atomic batch and acknowledged by one PubAck. A
// stream that syncs to disk on every write (sync_interval: always) then pays
// one disk sync per batch instead of one per message.
//
// Publish returns only once the message's own batch is stored, so "answer
// after the PubAck" keeps holding. A batch is all or nothing: when JetStream
// refuses it (a duplicate message id, a failed expected-sequence check in
// one message), every message of it is published again on its own, so each
// caller gets the answer its message alone would have got. A server older
// than 2.12 gets plain publishes only, and a stream without atomic publish
// (one being reconfigured) turns the committer into plain publishes for a
// minute at a time. Publish reads msg
// and never changes it; it must not be changed once passed in.
//
// It holds only the publishes waiting for it, each with its caller blocked,
// so its memory is bounded by the callers' own concurrency.
type Committer struct {
	direct   direct // publishes one by one, and its connection the batches
	requests chan *commitRequest
	slots    chan struct{}
	singles  chan struct{}
	pool     *Pool
	// linger is how long a publish waits for others to join its batch.
	linger time.Duration
	// plainUntil (Unix nanoseconds) is when to try atomic batches again
	// after the stream refused them as disabled.
	plainUntil atomic.Int64
	done       chan struct{}
	close      sync.Once
}

type commitRequest struct {
	ctx    context.Context
	msg    *nats.Msg
	result chan commitResult
	// state is queued until the committer sends the message (sent) or its
	// caller, gone, withdraws it (withdrawn), whichever comes first: a
	// caller told its write failed must be sure it was not stored, and one
	// whose write was sent waits for its answer, which the write's own
	// timeout bounds.
	state atomic.Int32
}

// The states of a commitRequest.
const (
	queued int32 = iota
	sent
	withdrawn
)

// send claims r for writing; false, with r answered, when its caller has
// gone first.
func (r *commitRequest) send() bool {
	if r.ctx.Err() == nil && r.state.CompareAndSwap(queued, sent) {
		return true
	}
	r.result <- commitResult{err: r.ctx.Err()}
	return false
}

type commitResult struct {
	ack *jetstream.PubAck
	err error
}

// NewCommitter starts a committer. All messages given to one committer must
// go to the same stream. Close stops it.
func NewCommitter(js jetstream.JetStream) *Committer { return NewLingeringCommitter(js, 0) }

// NewLingeringCommitter starts a committer that, once a publish arrives,
// waits up to linger for more to join its batch. A plain committer batches
// only the publishes that are already waiting, so publishes that arrive a
// little apart go one by one, a disk sync each; for writes that nobody waits
// on closely, such as parked deliveries, linger trades that much latency for
// fewer syncs (docs/performance.md, finding 24).
func NewLingeringCommitter(js jetstream.JetStream, linger time.Duration) *Committer {
	c := &Committer{
		linger:   linger,
		direct:   directTo(js),
		requests: make(chan *commitRequest),
		slots:    make(chan struct{}, DefaultCommitsInFlight),
		singles:  make(chan struct{}, MaxSinglesInFlight),
		pool:     NewPool(),
		done:     make(chan struct{}),
	}
	go c.run()
	return c
}

// Close stops gathering batches; publishes after Close fail.
func (c *Committer) Close() { c.close.Do(func() { close(c.done) }) }

// ErrCommitterClosed is returned by Publish after Close.
var ErrCommitterClosed = errors.New("committer closed")

// Publish stores msg with its stream's next group commit and returns its
// PubAck. Errors are those of jetstream.PublishMsg.
func (c *Committer) Publish(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
	r := &commitRequest{ctx: ctx, msg: msg, result: make(chan commitResult, 1)}
	select {
	case c.requests <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.done:
		return nil, ErrCommitterClosed
	}
	select {
	case res := <-r.result:
		return res.ack, res.err
	case <-ctx.Done():
		if r.state.CompareAndSwap(queued, withdrawn) {
			return nil, ctx.Err() // never sent
		}
		res := <-r.result // sent: stored or not, its answer says
		return res.ack, res.err
	}
}

func (c *Committer) run() {
	for {
		var first *commitRequest
		select {
		case first = <-c.requests:
		case <-c.done:
			return
		}
		plain := time.Now().UnixNano() < c.plainUntil.Load() || !atomicBatches(c.direct.nc)
		linger := c.linger
		if plain {
			linger = 0 // no batch to gather for
		}
		batch := c.gatherMore([]*commitRequest{first}, linger)
		if len(batch) < MinAtomicBatch || plain {
			// While MaxSinglesInFlight wait, publishes queue up for the
			// next gather and make a batch of it.
			metrics.Writes.Add("single", uint64(len(batch)))
			for _, r := range batch {
				c.singles <- struct{}{}
				c.pool.Go(func() {
					defer func() { <-c.singles }()
					c.publishOne(r)
				})
			}
			continue
		}
		// While the previous batch commits, publishes queue up and join
		// this one.
		c.slots <- struct{}{}
		batch = c.gatherMore(batch, 0)
		c.pool.Go(func() {
			defer func() { <-c.slots }()
			c.commit(batch)
		})
	}
}

// publishOne publishes a message on its own, unless its caller has gone.
// Once sent, the write has until its caller's deadline or the JetStream's
// own timeout from now, whichever is later: a caller that gives up first
// still learns whether it was stored, and one that allows longer gets it.
func (c *Committer) publishOne(r *commitRequest) {
	if r.state.Load() != sent && !r.send() {
		return
	}
	until := time.Now().Add(c.direct.timeout)
	if deadline, ok := r.ctx.Deadline(); ok && deadline.After(until) {
		until = deadline
	}
	ctx, cancel := context.WithDeadline(context.WithoutCancel(r.ctx), until)
	defer cancel()
	ack, err := c.direct.publish(ctx, r.msg)
	r.result <- commitResult{ack: ack, err: err}
}

// gatherMore adds to batch whatever is waiting and whatever arrives within
// wait, up to the batch limits.
func (c *Committer) gatherMore(batch []*commitRequest, wait time.Duration) []*commitRequest {
	size := 0
	for _, r := range batch {
		size += len(r.msg.Data)
	}
	var until <-chan time.Time
	if wait > 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		until = timer.C
	}
	for len(batch) < DefaultCommitBatch && size < commitMaxBytes {
		var r *commitRequest
		select {
		case r = <-c.requests:
		default:
			if until == nil {
				return batch
			}
			select {
			case r = <-c.requests:
			case <-until:
				return batch
			case <-c.done:
				return batch
			}
		}
		batch = append(batch, r)
		size += len(r.msg.Data)
	}
	return batch
}

func (c *Committer) commit(batch []*commitRequest) {
	live := batch[:0]
	for _, r := range batch {
		if r.send() { // else its caller has gone: not written
			live = append(live, r)
		}
	}
	switch {
	case len(live) == 0:
		return
	case len(live) == 1:
		metrics.Writes.Add("single", 1)
		c.publishOne(live[0])
		return
	}
	metrics.GroupCommits.Inc("")
	metrics.Writes.Add("batched", uint64(len(live)))
	acks, err := c.publishBatch(live)
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		for i, r := range live {
			r.result <- commitResult{ack: acks[i]}
		}
	case errors.As(err, &apiErr):
		// Refused as a whole, nothing stored: let each message get its own
		// answer.
		if apiErr.ErrorCode == errCodeAtomicPublishDisabled {
			// An older server, or a stream being updated right now.
			c.plainUntil.Store(time.Now().Add(plainFor).UnixNano())
		}
		c.publishEach(live)
	case errors.Is(err, errBatchNotSent):
		// Nothing reached the stream's commit: each message on its own
		// (one may be too large, the others fine).
		c.publishEach(live)
	default:
		// Unclear whether the batch was stored (a timeout, a lost
		// connection): the callers see the error, as with one publish.
		for _, r := range live {
			r.result <- commitResult{err: err}
		}
	}
}

// publishEach publishes every message on its own, all at once.
func (c *Committer) publishEach(batch []*commitRequest) {
	for _, r := range batch {
		c.pool.Go(func() { c.publishOne(r) })
	}
}

// batchAck is the PubAck of an atomic batch's commit.
type batchAck struct {
	jetstream.PubAck
	Count int                 `json:"count"`
	Error *jetstream.APIError `json:"error,omitempty"`
}

// publishBatch writes batch as one atomic batch: every message but the last
// is sent without a reply, the last one commits and is answered with the
// PubAck of the whole batch.
func (c *Committer) publishBatch(batch []*commitRequest) ([]*jetstream.PubAck, error) {
	id := nuid.Next()
	last := len(batch) - 1
	var commit *nats.Msg
	for i, r := range batch {
		// A copy: the caller's message is left as it was.
		m := &nats.Msg{Subject: r.msg.Subject, Data: r.msg.Data, Header: nats.Header{}}
		for k, v := range r.msg.Header {
			m.Header[k] = v
		}
		m.Header.Set(headerBatchID, id)
		m.Header.Set(headerBatchSeq, strconv.Itoa(i+1))
		if i == last {
			m.Header.Set(headerBatchCommit, "1")
			commit = m
			break
		}
		if err := c.direct.nc.PublishMsg(m); err != nil {
			return nil, fmt.Errorf("publish batch %s: %w: %w", id, errBatchNotSent, err)
		}
	}
	resp, err := c.direct.nc.RequestMsg(commit, commitTimeout)
	switch {
	case errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrBadSubject):
		return nil, fmt.Errorf("publish batch %s: %w: %w", id, errBatchNotSent, err)
	case err != nil:
		return nil, fmt.Errorf("publish batch %s: %w", id, err)
	}
	var ack batchAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return nil, fmt.Errorf("publish batch %s: decode ack: %w", id, err)
	}
	if ack.Error != nil {
		return nil, ack.Error
	}
	if ack.Count != len(batch) || ack.Sequence < uint64(len(batch)) {
		return nil, fmt.Errorf("publish batch %s: ack counts %d of %d messages", id, ack.Count, len(batch))
	}
	acks := make([]*jetstream.PubAck, len(batch))
	first := ack.Sequence - uint64(len(batch)) + 1
	for i := range batch {
		acks[i] = &jetstream.PubAck{Stream: ack.Stream, Sequence: first + uint64(i), Domain: ack.Domain}
	}
	return acks, nil
}

// errBatchNotSent: the batch's commit never reached the server, so nothing
// of it is stored.
var errBatchNotSent = errors.New("batch not sent")

// IsWrongLastSequence reports whether err is JetStream refusing a write
// whose expected last sequence did not match: for a key-value create, the
// key exists.
func IsWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == errCodeWrongLastSequence || apiErr.ErrorCode == errCodeWrongLastSequenceConstant)
}

// Publisher publishes to JetStream and waits for the PubAck: a
// jetstream.JetStream, or a GroupCommit in front of one.
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

var (
	_ Publisher = (jetstream.JetStream)(nil)
	_ Publisher = (*GroupCommit)(nil)
)

// GroupCommit is a Publisher that writes to each of hookstream's busy
// streams (jobs, events, deliveries, parked deliveries, and the job and
// delivery-log buckets) through a Committer of its own. Other subjects, and
// publishes with options, go to JetStream directly.
//
// Group commits pay off only when the server syncs every write to disk: an
// atomic batch costs nats-server 2.15 more work than the messages it holds
// (it stages them in a file store of its own), which only the syncs it
// saves make up for. Off, GroupCommit publishes straight to JetStream.
type GroupCommit struct {
	js     jetstream.JetStream
	direct direct
	routes []commitRoute
	// parks writes paced parks (PublishParked); nil when off.
	parks *Committer
}

type commitRoute struct {
	prefix string
	c      *Committer
}

// atomicBatches tells whether the server nc is connected to takes atomic
// batches (nats-server 2.12 or later). An older one stores each message of
// a batch as a message of its own and answers the commit as a plain
// publish, which the committer cannot tell from a failed batch: its
// callers were told their stored writes failed, and retried them.
func atomicBatches(nc *nats.Conn) bool { return versionAtLeast(nc.ConnectedServerVersion(), 2, 12) }

// versionAtLeast tells whether a server version ("2.12.1", "2.14.0-RC.2")
// is major.minor or later; false when it cannot be read (not connected).
func versionAtLeast(version string, major, minor int) bool {
	ma, rest, _ := strings.Cut(version, ".")
	mi, _, _ := strings.Cut(rest, ".")
	gotMajor, err1 := strconv.Atoi(ma)
	gotMinor, err2 := strconv.Atoi(strings.TrimRightFunc(mi, func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return false
	}
	return gotMajor > major || (gotMajor == major && gotMinor >= minor)
}

// NewGroupCommit starts the committers when on; Close stops them.
func NewGroupCommit(js jetstream.JetStream, on bool) *GroupCommit {
	if !on {
		return &GroupCommit{js: js, direct: directTo(js)}
	}
	deliveries := NewCommitter(js) // deliveries and retries share a stream
	return &GroupCommit{js: js, direct: directTo(js), routes: []commitRoute{
		{contract.SubjectJobs + ".", NewCommitter(js)},
		{contract.SubjectEvents + ".", NewCommitter(js)},
		{contract.SubjectDeliveries + ".", deliveries},
		{contract.SubjectRetries + ".", deliveries},
		{contract.SubjectParked + ".", NewCommitter(js)},
		{KeySubject(contract.BucketJobs, ""), NewCommitter(js)},
		{KeySubject(contract.BucketDeliveries, ""), NewCommitter(js)},
	}, parks: NewLingeringCommitter(js, ParkLinger)}
}

// PublishParked publishes msg, a delivery parked by the notifier's pacer
// (hookstream.parked.…), with a committer that lingers ParkLinger for the
// rest of its group, so that the group is one atomic batch. Parks nobody
// waits on closely go this way; fan-out's, which hold up their event, go by
// PublishMsg.
func (g *GroupCommit) PublishParked(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
	if g.parks == nil {
		return g.direct.publish(ctx, msg)
	}
	return g.parks.Publish(ctx, msg)
}

// KeySubject is the subject a key-value bucket stores key under.
func KeySubject(bucket, key string) string { return "$KV." + bucket + "." + key }

// HeaderKVOperation is set on a bucket's delete and purge markers.
const HeaderKVOperation = "KV-Operation"

// PublishMsg publishes msg with the group commit of its stream.
func (g *GroupCommit) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if len(opts) == 0 {
		for _, r := range g.routes {
			if strings.HasPrefix(msg.Subject, r.prefix) {
				return r.c.Publish(ctx, msg)
			}
		}
		return g.direct.publish(ctx, msg)
	}
	return g.js.PublishMsg(ctx, msg, opts...)
}

// Close stops the committers.
func (g *GroupCommit) Close() {
	for _, r := range g.routes {
		r.c.Close()
	}
	if g.parks != nil {
		g.parks.Close()
	}
}
