package intake

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/embeddednats"
	"github.com/hookstream/hookstream/shared/natstest"
	"github.com/hookstream/hookstream/shared/secretbox"
	"github.com/hookstream/hookstream/shared/ssrf"
)

// gatedPublisher publishes to JetStream only once its gate lets a publish
// through, so that a test can hold messages in flight.
type gatedPublisher struct {
	js   jetstream.JetStream
	gate chan struct{}
}

func (g gatedPublisher) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.js.PublishMsg(ctx, msg, opts...)
}

func batcherSetup(t *testing.T) (*jobBatcher, gatedPublisher, jetstream.Stream) {
	t.Helper()
	_, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))
	stream, err := js.Stream(ctx, contract.StreamJobs)
	require.NoError(t, err)
	pub := gatedPublisher{js: js, gate: make(chan struct{})}
	return newJobBatcher(pub, 5*time.Second, true, 0), pub, stream
}

// waitingJobs waits until n jobs queue for subject behind the messages in
// flight.
func waitingJobs(t *testing.T, b *jobBatcher, subject string, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		lane := b.lanes[subject]
		return lane != nil && len(lane.waiting) == n
	}, 5*time.Second, time.Millisecond)
}

// waitInFlight waits until batchInFlight messages to subject wait for
// their PubAck.
func waitInFlight(t *testing.T, b *jobBatcher, subject string) {
	t.Helper()
	require.Eventually(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		lane := b.lanes[subject]
		return lane != nil && lane.inFlight == batchInFlight
	}, 5*time.Second, time.Millisecond)
}

// fillLane submits batchInFlight jobs of acme's echo type, which wait at
// the gate, and waits until they are in flight; their outcomes come on the
// channel returned.
func fillLane(t *testing.T, b *jobBatcher) <-chan error {
	t.Helper()
	errs := make(chan error, batchInFlight)
	for range batchInFlight {
		go func() {
			_, err := b.submit(context.Background(), "acme", "echo", []byte(`{}`))
			errs <- err
		}()
	}
	waitInFlight(t, b, contract.JobSubject("acme", "echo"))
	return errs
}

type submitted struct {
	nonce string
	seq   uint64
	err   error
}

// While batchInFlight messages to a subject wait for their PubAck, the jobs
// that arrive meanwhile are written together, as one JobBatch message, and
// each caller gets that message's sequence; a job is findable in it by its
// nonce.
func TestJobBatcherWritesWaitingJobsTogether(t *testing.T) {
	t.Parallel()
	b, pub, stream := batcherSetup(t)
	subject := contract.JobSubject("acme", "echo")
	results := make(chan submitted, 100)
	submit := func(nonce string) {
		data, err := json.Marshal(contract.JobRequest{Nonce: nonce, Payload: json.RawMessage(`"` + nonce + `"`)})
		require.NoError(t, err)
		go func() {
			seq, err := b.submit(context.Background(), "acme", "echo", data)
			results <- submitted{nonce: nonce, seq: seq, err: err}
		}()
	}
	for i := range batchInFlight {
		submit("single" + strconv.Itoa(i))
	}
	waitInFlight(t, b, subject)
	const queued = 10
	for i := range queued {
		submit("queued" + strconv.Itoa(i))
	}
	waitingJobs(t, b, subject, queued)
	go func() {
		for range batchInFlight + 1 {
			pub.gate <- struct{}{}
		}
	}()

	seqs := map[uint64][]string{}
	for range batchInFlight + queued {
		r := <-results
		require.NoError(t, r.err)
		seqs[r.seq] = append(seqs[r.seq], r.nonce)
	}
	require.Len(t, seqs, batchInFlight+1, "one message per single, one for the batch")
	for seq, nonces := range seqs {
		msg, err := stream.GetMsg(context.Background(), seq)
		require.NoError(t, err)
		require.Equal(t, contract.Version, msg.Header.Get(contract.HeaderContractVersion))
		batch := len(nonces) > 1
		if !batch {
			require.Equal(t, subject, msg.Subject)
			require.Empty(t, msg.Header.Get(contract.HeaderJobBatch), "a single is a JobRequest")
		} else {
			require.Len(t, nonces, queued)
			require.Equal(t, contract.JobBatchSubject("acme", "echo"), msg.Subject)
			require.Equal(t, strconv.Itoa(queued), msg.Header.Get(contract.HeaderJobBatch))
			var batch contract.JobBatch
			require.NoError(t, json.Unmarshal(msg.Data, &batch))
			require.Len(t, batch.Jobs, queued)
		}
		for _, nonce := range nonces {
			req, found := jobInMessage(batch, msg.Data, nonce)
			require.True(t, found, nonce)
			require.JSONEq(t, `"`+nonce+`"`, string(req.Payload))
		}
		_, found := jobInMessage(batch, msg.Data, "other")
		require.False(t, found)
	}
	// The writer answers its waiters before it forgets the lane.
	require.Eventually(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.lanes) == 0
	}, 5*time.Second, time.Millisecond, "an idle subject is forgotten")
}

// A job whose caller gives up while it is queued is not written.
func TestJobBatcherWithdrawsQueuedJob(t *testing.T) {
	t.Parallel()
	b, pub, stream := batcherSetup(t)
	subject := contract.JobSubject("acme", "echo")
	singles := fillLane(t, b)
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		_, err := b.submit(ctx, "acme", "echo", []byte(`{"nonce":"late"}`))
		gaveUp <- err
	}()
	waitingJobs(t, b, subject, 1)
	cancel()
	require.ErrorIs(t, <-gaveUp, context.Canceled)
	waitingJobs(t, b, subject, 0)
	for range batchInFlight {
		pub.gate <- struct{}{}
		require.NoError(t, <-singles)
	}
	info, err := stream.Info(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(batchInFlight), info.State.Msgs, "the withdrawn job was not written")
}

// A caller whose job is already being written when its context ends gets
// the outcome of that write, not an error for a job that is stored.
func TestJobBatcherTakenJobGetsItsOutcome(t *testing.T) {
	t.Parallel()
	b, pub, _ := batcherSetup(t)
	subject := contract.JobSubject("acme", "echo")
	singles := fillLane(t, b)
	ctx, cancel := context.WithCancel(context.Background())
	late := make(chan submitted, 1)
	go func() {
		seq, err := b.submit(ctx, "acme", "echo", []byte(`{"nonce":"late"}`))
		late <- submitted{seq: seq, err: err}
	}()
	waitingJobs(t, b, subject, 1)
	pub.gate <- struct{}{} // one single is written; the queued job is taken
	require.NoError(t, <-singles)
	waitingJobs(t, b, subject, 0)
	cancel()
	select {
	case r := <-late:
		t.Fatalf("answered before its write ended: %+v", r)
	case <-time.After(50 * time.Millisecond):
	}
	for range batchInFlight {
		pub.gate <- struct{}{}
	}
	r := <-late
	require.NoError(t, r.err)
	require.NotZero(t, r.seq)
}

// A batch holds at most batchMaxJobs jobs and about batchMaxBytes; a job
// too large to share a message is written alone.
func TestJobLaneTakeBounds(t *testing.T) {
	t.Parallel()
	jobs := func(sizes ...int) []*waitingJob {
		var out []*waitingJob
		for _, n := range sizes {
			out = append(out, &waitingJob{data: make([]byte, n)})
		}
		return out
	}
	many := make([]int, batchMaxJobs+3)
	for i := range many {
		many[i] = 10
	}
	tests := []struct {
		name      string
		givenSize []int
		wantTaken []int // lengths of successive takes
	}{
		{name: "count", givenSize: many, wantTaken: []int{batchMaxJobs, 3}},
		{name: "bytes", givenSize: []int{batchMaxBytes / 2, batchMaxBytes / 2, 10}, wantTaken: []int{1, 2}},
		{name: "one too large", givenSize: []int{2 * batchMaxBytes, 10}, wantTaken: []int{1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lane := &jobLane{waiting: jobs(tt.givenSize...)}
			var got []int
			for batch := lane.take(batchMaxBytes); batch != nil; batch = lane.take(batchMaxBytes) {
				for _, w := range batch {
					require.True(t, w.taken)
				}
				got = append(got, len(batch))
			}
			require.Equal(t, tt.wantTaken, got)
			require.Empty(t, lane.waiting)
		})
	}
}

// Jobs submitted over HTTP that were written as one batch are each read
// from it, by their own tenant only, until their record exists, and each
// can be canceled alone.
func TestBatchedJobsOverHTTP(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))
	box, err := secretbox.New(make([]byte, secretbox.KeySize))
	require.NoError(t, err)
	svc, err := New(ctx, Config{
		APIKeys:  []APIKey{{Tenant: "acme", Key: "acme-key-0123456789abcdef"}, {Tenant: "other", Key: "other-key-0123456789abcdef"}},
		JobTypes: []string{"echo"}, Guard: ssrf.NewGuard(nil), Box: box, PublishTimeout: 5 * time.Second, GroupCommit: true, JobBatches: true,
	}, nc, js, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	gate := make(chan struct{})
	svc.batcher.pub = gatedPublisher{js: js, gate: gate}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	call := func(method, path, key, body string) (int, map[string]any) {
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		var out map[string]any
		require.NoError(t, json.Unmarshal(data, &out), string(data))
		return resp.StatusCode, out
	}

	const jobs = batchInFlight + 3
	ids := make(chan string, jobs)
	for i := range jobs {
		go func() {
			status, body := call(http.MethodPost, "/v1/jobs", "acme-key-0123456789abcdef", `{"type":"echo","payload":`+strconv.Itoa(i)+`}`)
			assert.Equal(t, http.StatusAccepted, status, body)
			id, _ := body["id"].(string)
			ids <- id
		}()
	}
	waitingJobs(t, svc.batcher, contract.JobSubject("acme", "echo"), 3)
	go func() {
		for range batchInFlight + 1 {
			gate <- struct{}{}
		}
	}()
	perSeq := map[uint64][]string{}
	for range jobs {
		id := <-ids
		masked, nonce, ok := contract.ParseSequenceJobID(id)
		require.True(t, ok, id)
		seq := masked ^ box.JobIDMask(nonce)
		perSeq[seq] = append(perSeq[seq], id)
	}
	var batched []string
	for _, group := range perSeq {
		if len(group) > 1 {
			batched = group
		}
	}
	require.Len(t, batched, 3, "three jobs share a message")

	for _, id := range batched {
		status, body := call(http.MethodGet, "/v1/jobs/"+id, "acme-key-0123456789abcdef", "")
		require.Equal(t, http.StatusOK, status, body)
		require.Equal(t, id, body["id"])
		require.Equal(t, "queued", body["status"])
		status, _ = call(http.MethodGet, "/v1/jobs/"+id, "other-key-0123456789abcdef", "")
		require.Equal(t, http.StatusNotFound, status, "another tenant's job")
	}
	status, body := call(http.MethodDelete, "/v1/jobs/"+batched[0], "acme-key-0123456789abcdef", "")
	require.Equal(t, http.StatusAccepted, status, body)
	require.Equal(t, "canceled", body["status"])
	_, body = call(http.MethodGet, "/v1/jobs/"+batched[0], "acme-key-0123456789abcdef", "")
	require.Equal(t, "canceled", body["status"])
	_, body = call(http.MethodGet, "/v1/jobs/"+batched[1], "acme-key-0123456789abcdef", "")
	require.Equal(t, "queued", body["status"], "its batch-mates are not")
}

// On a NATS server whose max_payload is smaller than batchMaxBytes, a batch
// is no larger than a message may be: jobs that each fit one are stored,
// never refused together as too large (413).
func TestJobBatcherBatchesFitTheServersMaxPayload(t *testing.T) {
	t.Parallel()
	ns, err := embeddednats.Start(embeddednats.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", MaxPayload: 64 << 10}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, js, err := bus.Connect(bus.ConnectOptions{URL: ns.ClientURL()}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	require.NoError(t, bus.Ensure(context.Background(), js, bus.Topology{}))
	pub := gatedPublisher{js: js, gate: make(chan struct{})}
	b := newJobBatcher(pub, 5*time.Second, true, nc.MaxPayload())
	subject := contract.JobSubject("acme", "echo")
	job := []byte(`{"nonce":"x","payload":"` + strings.Repeat("a", 40<<10) + `"}`) // one fits a message, two do not
	errs := make(chan error, 3)
	submit := func() {
		go func() {
			_, err := b.submit(context.Background(), "acme", "echo", job)
			errs <- err
		}()
	}
	submit()
	waitInFlight(t, b, subject)
	submit()
	submit()
	waitingJobs(t, b, subject, 2)
	go func() {
		for range 3 {
			pub.gate <- struct{}{}
		}
	}()
	for range 3 {
		require.NoError(t, <-errs)
	}
}
