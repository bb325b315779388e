package intake

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/contract"
)

// Job batcher limits.
const (
	// batchInFlight is how many messages to one subject may wait for their
	// PubAck at once; jobs that arrive while that many wait are written
	// together once one of them is acknowledged.
	batchInFlight = 4
	// batchMaxJobs and batchMaxBytes bound one batch message; a job too
	// large to share one is written on its own.
	batchMaxJobs  = 64
	batchMaxBytes = 256 << 10
)

// publisher publishes one message and waits for its PubAck (bus.GroupCommit).
type publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// jobBatcher writes the job messages of submitJob: the group commit of a
// subject. While fewer than batchInFlight messages to a subject wait for
// their PubAck, a job is a message of its own (a contract.JobRequest). While
// that many wait, the jobs that arrive meanwhile queue up and, once one of
// those messages is acknowledged, are written together as one message (a
// contract.JobBatch): one disk write, and one message for the server to
// handle, for all of them. Each caller returns once the message holding its
// job is stored, with that message's stream sequence.
//
// It holds only the jobs whose callers wait for it, so its memory is bounded
// by intake's own concurrency.
type jobBatcher struct {
	pub     publisher
	timeout time.Duration
	mu      sync.Mutex
	lanes   map[string]*jobLane
}

// jobLane is what the batcher knows of one subject.
type jobLane struct {
	inFlight int
	waiting  []*waitingJob
}

type waitingJob struct {
	data []byte // the encoded contract.JobRequest
	// taken is set once the job is part of a message being written: the
	// caller can no longer withdraw it.
	taken bool
	done  chan batchAck
}

type batchAck struct {
	seq uint64
	err error
}

func newJobBatcher(pub publisher, timeout time.Duration) *jobBatcher {
	return &jobBatcher{pub: pub, timeout: timeout, lanes: map[string]*jobLane{}}
}

// submit stores one job (an encoded contract.JobRequest) on subject and
// returns the stream sequence of the message that holds it. A job still
// queued when ctx ends is withdrawn (not stored); one already being
// written returns ctx's error, and may be stored.
func (b *jobBatcher) submit(ctx context.Context, subject string, data []byte) (uint64, error) {
	b.mu.Lock()
	lane := b.lanes[subject]
	if lane == nil {
		lane = &jobLane{}
		b.lanes[subject] = lane
	}
	if lane.inFlight < batchInFlight {
		lane.inFlight++
		b.mu.Unlock()
		seq, err := b.publish(ctx, subject, data, 1)
		b.written(subject)
		return seq, err
	}
	w := &waitingJob{data: data, done: make(chan batchAck, 1)}
	lane.waiting = append(lane.waiting, w)
	b.mu.Unlock()
	select {
	case ack := <-w.done:
		return ack.seq, ack.err
	case <-ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !w.taken {
		if lane := b.lanes[subject]; lane != nil {
			lane.withdraw(w)
		}
	}
	select {
	case ack := <-w.done: // written just now
		return ack.seq, ack.err
	default:
		return 0, fmt.Errorf("publish job: %w", ctx.Err())
	}
}

// written frees the in-flight slot of a message to subject and writes the
// jobs that queued up meanwhile, if any.
func (b *jobBatcher) written(subject string) {
	b.mu.Lock()
	lane := b.lanes[subject]
	lane.inFlight--
	batch := lane.take()
	if batch != nil {
		lane.inFlight++
	} else if lane.inFlight == 0 {
		delete(b.lanes, subject)
	}
	b.mu.Unlock()
	if batch != nil {
		go b.writeBatch(subject, batch)
	}
}

// take removes the first jobs waiting, as many as one message holds, and
// marks them taken.
func (l *jobLane) take() []*waitingJob {
	n, size := 0, 0
	for n < len(l.waiting) && n < batchMaxJobs {
		size += len(l.waiting[n].data) + 1
		if n > 0 && size > batchMaxBytes {
			break
		}
		l.waiting[n].taken = true
		n++
	}
	if n == 0 {
		return nil
	}
	batch := l.waiting[:n:n]
	l.waiting = l.waiting[n:]
	if len(l.waiting) == 0 {
		l.waiting = nil // let the backing array go
	}
	return batch
}

func (l *jobLane) withdraw(w *waitingJob) {
	for i, x := range l.waiting {
		if x == w {
			l.waiting = append(l.waiting[:i:i], l.waiting[i+1:]...)
			return
		}
	}
}

// writeBatch writes jobs as one message (a JobBatch, or the JobRequest of a
// lone job) and tells each caller the outcome.
func (b *jobBatcher) writeBatch(subject string, jobs []*waitingJob) {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	data := jobs[0].data
	if len(jobs) > 1 {
		var buf bytes.Buffer
		buf.WriteString(`{"jobs":[`)
		for i, w := range jobs {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.Write(w.data)
		}
		buf.WriteString(`]}`)
		data = buf.Bytes()
	}
	seq, err := b.publish(ctx, subject, data, len(jobs))
	for _, w := range jobs {
		w.done <- batchAck{seq: seq, err: err}
	}
	b.written(subject)
}

func (b *jobBatcher) publish(ctx context.Context, subject string, data []byte, jobs int) (uint64, error) {
	msg := nats.NewMsg(subject)
	msg.Data = data
	msg.Header.Set(contract.HeaderContractVersion, contract.Version)
	if jobs > 1 {
		msg.Header.Set(contract.HeaderJobBatch, strconv.Itoa(jobs))
	}
	ack, err := b.pub.PublishMsg(ctx, msg)
	if err != nil {
		return 0, fmt.Errorf("publish job: %w", err)
	}
	return ack.Sequence, nil
}
