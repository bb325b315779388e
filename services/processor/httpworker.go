package processor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/hookstream/hookstream/shared/contract"
)

// HTTPWorker is a job type whose work an internal HTTP service does: the
// processor POSTs the job's payload to URL and takes the response as the
// result. It turns any slow synchronous endpoint into a 202 + webhook API.
//
// Worker URLs are the operator's configuration and may be internal; they do
// not pass the callback SSRF guard.
//
// The request carries Hookstream-Job-Id, Hookstream-Job-Type,
// Hookstream-Tenant and Idempotency-Key (the job id, stable across
// attempts). A 2xx response is the result (JSON as is; other content as a
// JSON string); 408, 425, 429 and 5xx are retried; other statuses fail the
// job at once.
type HTTPWorker struct {
	// URL receives the POST.
	URL string
	// Timeout bounds one attempt. Default 5 minutes.
	Timeout time.Duration
	// Client sends the request. Default: a client with keep-alive.
	Client *http.Client
}

// DefaultWorkerTimeout bounds one attempt of an HTTP job.
const DefaultWorkerTimeout = 5 * time.Minute

// maxResultBytes bounds a worker's response: the result must fit a job record.
const maxResultBytes = 1 << 20

// defaultWorkerClient keeps every connection to a worker for reuse (the
// processor's concurrency bounds how many there are): with fewer kept than
// in use, a busy worker's connections would be closed and dialled again.
// It follows no redirect: a 3xx fails the job, as any other answer that is
// not 2xx and not retried (a 302 followed would turn the POST into a GET
// and take that answer for the result).
var defaultWorkerClient = &http.Client{
	Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 1024, IdleConnTimeout: 90 * time.Second,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Handle implements [Handler].
func (w HTTPWorker) Handle(ctx context.Context, job Job) (json.RawMessage, error) {
	timeout, client := w.Timeout, w.Client
	if timeout <= 0 {
		timeout = DefaultWorkerTimeout
	}
	if client == nil {
		client = defaultWorkerClient
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(job.Payload))
	if err != nil {
		return nil, Permanent(fmt.Errorf("build request to worker: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Hookstream-Job-Id", job.ID)
	req.Header.Set("Hookstream-Job-Type", job.Type)
	req.Header.Set("Hookstream-Tenant", job.Tenant)
	req.Header.Set("Idempotency-Key", job.ID)
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("call the worker of %s: %w", job.Type, callError(ctx, err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResultBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read the answer of the worker of %s: %w", job.Type, callError(ctx, err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		err := fmt.Errorf("worker answered %d: %s", resp.StatusCode, snippet(body))
		if retryableStatus(resp.StatusCode) {
			return nil, err
		}
		return nil, Permanent(err)
	}
	if len(body) > maxResultBytes {
		return nil, Permanent(fmt.Errorf("worker result is larger than %d bytes", maxResultBytes))
	}
	return asJSON(body), nil
}

// callError says why a call to a worker failed without its URL, host or
// address: the job's error is the tenant's to read, and the worker's URL is
// the operator's (it may carry a token in its query).
func callError(ctx context.Context, err error) error {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("no answer in time: %w", ctx.Err())
	case errors.As(err, &dnsErr):
		return errors.New("name lookup failed: " + dnsErr.Err)
	case errors.As(err, &opErr):
		return errors.New(opErr.Op + ": " + opErr.Err.Error())
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("the connection closed before an answer")
	}
	return errors.New("the request failed")
}

func retryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooEarly ||
		code == http.StatusTooManyRequests || code >= 500
}

func asJSON(body []byte) json.RawMessage {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil
	}
	if json.Valid(trimmed) {
		return contract.ValidUTF8(trimmed) // json.Valid takes any bytes in strings
	}
	quoted, _ := json.Marshal(string(body)) // invalid UTF-8 becomes U+FFFD
	return quoted
}

func snippet(b []byte) string {
	const max = 256
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "…"
	}
	return strconv.Quote(string(b))
}
