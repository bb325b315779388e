package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookstream/hookstream/shared/latency"
)

// newHTTPClient returns a keep-alive client with room for conns connections.
func newHTTPClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns: conns * 2, MaxIdleConnsPerHost: conns * 2, MaxConnsPerHost: 0,
			IdleConnTimeout: 90 * time.Second,
			DialContext:     (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		},
	}
}

// post sends one JSON POST and returns the status and the body.
func post(ctx context.Context, client *http.Client, url, key string, body []byte, header ...string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// receiver is the tool's own webhook receiver: it matches each webhook to
// its job's request and records the end-to-end latencies: from the 202,
// and from when the request was due.
type receiver struct {
	srv  *http.Server
	url  string
	seen sync.Map // webhook-id → struct{}

	// A webhook can arrive before its 202 has been read by the client: the
	// first of the two to arrive waits in pending for the other.
	mu      sync.Mutex
	pending map[string]arrival
	// latency is 202 → webhook (zero when the webhook came first); fromDue
	// is from when the job's request was due to the webhook, which adds
	// the request's own time and any wait for a connection.
	latency, fromDue latency.Histogram
	delivered        atomic.Uint64
	dupes            atomic.Uint64
	// last is when the latest webhook arrived, or the load began (Unix
	// nanoseconds); pause is the longest time without a webhook since the
	// load began (nanoseconds): a stalled pipeline shows there.
	last, pause atomic.Int64
}

// begin marks when the load starts, for pause.
func (r *receiver) begin(at time.Time) { r.last.Store(at.UnixNano()) }

func startReceiver(addr string) (*receiver, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	r := &receiver{url: "http://" + ln.Addr().String() + "/hook", pending: map[string]arrival{}}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	now := time.Now()
	if prev := r.last.Swap(now.UnixNano()); prev != 0 {
		for p := now.UnixNano() - prev; ; {
			longest := r.pause.Load()
			if p <= longest || r.pause.CompareAndSwap(longest, p) {
				break
			}
		}
	}
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	w.WriteHeader(http.StatusNoContent)
	if _, dup := r.seen.LoadOrStore(req.Header.Get("webhook-id"), struct{}{}); dup {
		r.dupes.Add(1)
		return
	}
	var hook struct {
		Data struct {
			ID     string `json:"id"`
			SentAt int64  `json:"sent_at"` // fan-out events: when the request was due
		} `json:"data"`
	}
	if json.Unmarshal(body, &hook) != nil {
		return
	}
	if hook.Data.SentAt != 0 {
		r.latency.Record(now.Sub(time.Unix(0, hook.Data.SentAt)))
		r.fromDue.Record(now.Sub(time.Unix(0, hook.Data.SentAt)))
		r.delivered.Add(1)
		return
	}
	r.match(hook.Data.ID, arrival{at: now, webhook: true})
}

// arrival is a 202 or a webhook for a job; due is when a 202's request
// was due.
type arrival struct {
	at, due time.Time
	webhook bool
}

// match pairs a job's 202 with its webhook, in whichever order they come,
// and records 202 → webhook (zero when the webhook came first) and due →
// webhook.
func (r *receiver) match(jobID string, a arrival) {
	r.mu.Lock()
	other, ok := r.pending[jobID]
	if !ok || other.webhook == a.webhook {
		r.pending[jobID] = a
		r.mu.Unlock()
		return
	}
	delete(r.pending, jobID)
	r.mu.Unlock()
	accepted, hook := a, other
	if a.webhook {
		accepted, hook = other, a
	}
	r.latency.Record(max(hook.at.Sub(accepted.at), 0))
	r.fromDue.Record(hook.at.Sub(accepted.due))
	r.delivered.Add(1)
}

// drainCap bounds a drain that keeps making progress, in timeouts.
const drainCap = 20

// drain waits until every accepted job has its webhook, or until no
// webhook came for timeout: an overloaded pipeline drains its backlog as
// long as it makes progress, up to drainCap timeouts in all.
func (r *receiver) drain(accepted uint64, timeout time.Duration) {
	deadline, end := time.Now().Add(timeout), time.Now().Add(drainCap*timeout)
	for seen := r.delivered.Load(); seen < accepted && time.Now().Before(deadline); seen = r.delivered.Load() {
		time.Sleep(50 * time.Millisecond)
		if r.delivered.Load() > seen {
			deadline = time.Now().Add(timeout)
			if deadline.After(end) {
				deadline = end
			}
		}
	}
}

func (r *receiver) close() { _ = r.srv.Close() }

func idOf(body []byte) string {
	var out struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(body, &out)
	return out.ID
}

func jobBody(jobType, callback string, i int) []byte {
	b := append([]byte(`{"type":"`), jobType...)
	b = append(b, `","payload":{"n":`...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, '}')
	if callback != "" {
		b = append(b, `,"callback_url":"`...)
		b = append(b, callback...)
		b = append(b, '"')
	}
	return append(b, '}')
}
