package intake

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/metrics"
)

// Job batcher limits.
const (
	// batchInFlight is how many messages to one subject may wait for their
	// PubAck at once; jobs that arrive while that many wait are written
	// together once one of them is acknowledged. On a 2-core machine with
	// every write synced, 1 took the most jobs a second and had the lowest
	// end-to-end latency at 1,000 and 1,300 jobs/s, against 2 and 4
	// (docs/performance.md, finding 11).
	batchInFlight = 1
	// batchMaxJobs and batchMaxBytes bound one batch message; a job too
	// large to share one is written on its own.
	batchMaxJobs  = 64
	batchMaxBytes = 256 << 10
	// batchHeadroom is what a batch message needs besides its jobs: the
	// JobBatch around them and the headers.
	batchHeadroom = 1024
)

// publisher publishes one message and waits for its PubAck (bus.GroupCommit).
type publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// jobBatcher writes the job messages of submitJob: the group commit of a
// tenant's jobs of one type. While fewer than batchInFlight of their
// messages wait for their PubAck, a job is a message of its own (a
// contract.JobRequest on contract.JobSubject). While that many wait, the
// jobs that arrive meanwhile queue up and, once one of those messages is
// acknowledged, are written together as one message (a contract.JobBatch
// on contract.JobBatchSubject): one disk write, and one message for the
// server to handle, for all of them. Each caller returns once the message
// holding its job is stored, with that message's stream sequence.
//
// It holds only the jobs whose callers wait for it, so its memory is bounded
// by intake's own concurrency.
type jobBatcher struct {
	pub publisher
	// inFlight is how many messages of a lane may wait for their PubAck
	// before jobs queue up: batchInFlight, or no limit when batches are off.
	inFlight int
	// maxBytes bounds the jobs of one batch message: batchMaxBytes, or less
	// on a NATS server whose max_payload is smaller.
	maxBytes int
	timeout  time.Duration
	mu       sync.Mutex
	lanes    map[string]*jobLane
}

// jobLane is what the batcher knows of one tenant's jobs of one type.
type jobLane struct {
	tenant, jobType string
	inFlight        int
	waiting         []*waitingJob
}

type waitingJob struct {
	data []byte // the encoded contract.JobRequest
	// taken is set once the job is part of a message being written: the
	// caller can no longer withdraw it, and waits for the outcome.
	taken bool
	done  chan batchAck
}

type batchAck struct {
	seq uint64
	err error
}

// newJobBatcher returns a batcher that writes batches, or, when batches is
// false, every job as a message of its own, as soon as it comes.
// maxPayload is the NATS server's largest message (0: unknown).
func newJobBatcher(pub publisher, timeout time.Duration, batches bool, maxPayload int64) *jobBatcher {
	b := &jobBatcher{pub: pub, inFlight: batchInFlight, maxBytes: batchMaxBytes, timeout: timeout, lanes: map[string]*jobLane{}}
	if maxPayload > 0 {
		b.maxBytes = int(min(batchMaxBytes, maxPayload-batchHeadroom))
	}
	if !batches {
		b.inFlight = math.MaxInt
	}
	return b
}

// submit stores one of a tenant's jobs of a type (an encoded
// contract.JobRequest) and returns the stream sequence of the message that
// holds it. A job still queued when ctx ends is withdrawn, not stored, and
// its caller gets ctx's error; one already being written gets the outcome
// of that write, which ends within the batcher's timeout: its job may be
// stored, and a 503 would tell the client otherwise.
func (b *jobBatcher) submit(ctx context.Context, tenant, jobType string, data []byte) (uint64, error) {
	key := contract.JobSubject(tenant, jobType)
	b.mu.Lock()
	lane := b.lanes[key]
	if lane == nil {
		lane = &jobLane{tenant: tenant, jobType: jobType}
		b.lanes[key] = lane
	}
	if lane.inFlight < b.inFlight {
		lane.inFlight++
		b.mu.Unlock()
		seq, err := b.publish(ctx, key, data, 1)
		b.written(key)
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
	taken := w.taken
	if !taken {
		lane.withdraw(w)
	}
	b.mu.Unlock()
	if !taken {
		return 0, fmt.Errorf("publish job: %w", ctx.Err())
	}
	ack := <-w.done
	return ack.seq, ack.err
}

// written frees the in-flight slot of a message of a lane (key) and writes
// the jobs that queued up meanwhile, if any.
func (b *jobBatcher) written(key string) {
	b.mu.Lock()
	lane := b.lanes[key]
	lane.inFlight--
	batch := lane.take(b.maxBytes)
	if batch != nil {
		lane.inFlight++
	} else if lane.inFlight == 0 {
		delete(b.lanes, key)
	}
	b.mu.Unlock()
	if batch != nil {
		go b.writeBatch(key, lane, batch)
	}
}

// take removes the first jobs waiting, as many as one message of at most
// maxBytes holds, and marks them taken. A job alone is taken whatever its
// size: intake accepted it as fitting a message of its own.
func (l *jobLane) take(maxBytes int) []*waitingJob {
	n, size := 0, len(`{"jobs":[]}`)
	for n < len(l.waiting) && n < batchMaxJobs {
		size += len(l.waiting[n].data) + 1
		if n > 0 && size > maxBytes {
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

// writeBatch writes the jobs of a lane (key) as one message (a JobBatch,
// or the JobRequest of a lone job) and tells each caller the outcome.
func (b *jobBatcher) writeBatch(key string, lane *jobLane, jobs []*waitingJob) {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	subject, data := key, jobs[0].data
	if len(jobs) > 1 {
		subject = contract.JobBatchSubject(lane.tenant, lane.jobType)
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
	b.written(key)
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
	if jobs > 1 {
		metrics.JobBatches.Inc("")
		metrics.JobsBatched.Add("", uint64(jobs))
	}
	return ack.Sequence, nil
}
