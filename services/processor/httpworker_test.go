package processor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/processor"
)

// worker is an httptest server standing in for an internal HTTP worker. It
// records the last request and answers with answer.
type worker struct {
	*httptest.Server
	got chan workerRequest
}

type workerRequest struct {
	header http.Header
	body   []byte
}

func newWorker(t *testing.T, answer http.HandlerFunc) *worker {
	t.Helper()
	w := &worker{got: make(chan workerRequest, 16)}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.got <- workerRequest{header: r.Header.Clone(), body: body}
		answer(rw, r)
	}))
	t.Cleanup(w.Close)
	return w
}

func answerWith(status int, contentType, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func isPermanent(err error) bool {
	var p *backoff.PermanentError
	return errors.As(err, &p)
}

var testJob = processor.Job{
	ID: "job_abc", Tenant: "acme", Type: "resize", Attempt: 1,
	Payload: json.RawMessage(`{"image":"cat.png"}`),
}

// A 2xx answer is the job's result: JSON as it is, anything else as a JSON
// string, nothing as no result.
func TestHTTPWorkerResult(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		givenStatus     int
		givenType       string
		givenBody       string
		wantResult      string
		wantEmptyResult bool // nil result
	}{
		{name: "JSON object", givenStatus: 200, givenType: "application/json", givenBody: `{"width":100}`, wantResult: `{"width":100}`},
		{name: "JSON with surrounding space", givenStatus: 201, givenType: "application/json", givenBody: " [1,2]\n", wantResult: `[1,2]`},
		{name: "JSON number as text/plain", givenStatus: 200, givenType: "text/plain", givenBody: `42`, wantResult: `42`},
		{name: "plain text becomes a JSON string", givenStatus: 200, givenType: "text/plain", givenBody: "done: 3 files", wantResult: `"done: 3 files"`},
		{name: "HTML becomes a JSON string", givenStatus: 202, givenType: "text/html", givenBody: `<b>"ok"</b>`, wantResult: `"\u003cb\u003e\"ok\"\u003c/b\u003e"`},
		{name: "empty body is no result", givenStatus: 204, wantEmptyResult: true},
		{name: "blank body is no result", givenStatus: 200, givenType: "text/plain", givenBody: " \n\t", wantEmptyResult: true},
		{name: "JSON with Latin-1 in a string", givenStatus: 200, givenType: "application/json", givenBody: "{\"city\":\"Z\xfcrich\"}", wantResult: `{"city":"Z\ufffdrich"}`},
		{name: "Latin-1 text", givenStatus: 200, givenType: "text/plain", givenBody: "gr\xfcn", wantResult: `"gr\ufffdn"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorker(t, answerWith(tt.givenStatus, tt.givenType, tt.givenBody))
			result, err := processor.HTTPWorker{URL: w.URL}.Handle(context.Background(), testJob)
			require.NoError(t, err)
			if tt.wantEmptyResult {
				require.Nil(t, result)
				return
			}
			require.True(t, json.Valid(result) && utf8.Valid(result), "result %q must be JSON text", result)
			require.JSONEq(t, tt.wantResult, string(result))
		})
	}
}

// Statuses that may heal are retried; the others fail the job at once.
func TestHTTPWorkerStatusErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		givenStatus   int
		wantPermanent bool
	}{
		{name: "500 is retried", givenStatus: http.StatusInternalServerError},
		{name: "502 is retried", givenStatus: http.StatusBadGateway},
		{name: "503 is retried", givenStatus: http.StatusServiceUnavailable},
		{name: "429 is retried", givenStatus: http.StatusTooManyRequests},
		{name: "408 is retried", givenStatus: http.StatusRequestTimeout},
		{name: "425 is retried", givenStatus: http.StatusTooEarly},
		{name: "400 is permanent", givenStatus: http.StatusBadRequest, wantPermanent: true},
		{name: "404 is permanent", givenStatus: http.StatusNotFound, wantPermanent: true},
		{name: "409 is permanent", givenStatus: http.StatusConflict, wantPermanent: true},
		{name: "422 is permanent", givenStatus: http.StatusUnprocessableEntity, wantPermanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorker(t, answerWith(tt.givenStatus, "text/plain", "no luck"))
			result, err := processor.HTTPWorker{URL: w.URL}.Handle(context.Background(), testJob)
			require.Error(t, err)
			require.Nil(t, result)
			require.Equal(t, tt.wantPermanent, isPermanent(err), "permanent: %v", err)
			require.Contains(t, err.Error(), fmt.Sprintf("worker answered %d", tt.givenStatus))
			require.Contains(t, err.Error(), "no luck", "the error quotes the start of the answer")
		})
	}
}

// The worker gets the payload and the job's identity; Idempotency-Key is the
// job id, the same on every attempt.
func TestHTTPWorkerSendsJobHeaders(t *testing.T) {
	t.Parallel()
	w := newWorker(t, answerWith(http.StatusOK, "application/json", `{}`))
	for attempt := 1; attempt <= 2; attempt++ {
		job := testJob
		job.Attempt = attempt
		_, err := processor.HTTPWorker{URL: w.URL}.Handle(context.Background(), job)
		require.NoError(t, err)
		got := <-w.got
		require.JSONEq(t, string(testJob.Payload), string(got.body))
		require.Equal(t, "application/json", got.header.Get("Content-Type"))
		require.Equal(t, "job_abc", got.header.Get("Hookstream-Job-Id"))
		require.Equal(t, "job_abc", got.header.Get("Idempotency-Key"))
		require.Equal(t, "resize", got.header.Get("Hookstream-Job-Type"))
		require.Equal(t, "acme", got.header.Get("Hookstream-Tenant"))
	}
}

// Timeout bounds an attempt on a worker that never answers; the timeout is
// retried like any failure that may heal.
func TestHTTPWorkerTimeout(t *testing.T) {
	t.Parallel()
	w := newWorker(t, func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	_, err := processor.HTTPWorker{URL: w.URL, Timeout: 50 * time.Millisecond}.Handle(context.Background(), testJob)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.False(t, isPermanent(err))
}

func TestHTTPWorkerTransportErrors(t *testing.T) {
	t.Parallel()
	t.Run("unreachable worker is retried", func(t *testing.T) {
		t.Parallel()
		w := newWorker(t, answerWith(http.StatusOK, "", ""))
		w.Close()
		_, err := processor.HTTPWorker{URL: w.URL}.Handle(context.Background(), testJob)
		require.Error(t, err)
		require.False(t, isPermanent(err))
	})
	t.Run("invalid URL is permanent", func(t *testing.T) {
		t.Parallel()
		_, err := processor.HTTPWorker{URL: "http://[::1"}.Handle(context.Background(), testJob)
		require.Error(t, err)
		require.True(t, isPermanent(err))
	})
	t.Run("result over 1 MiB is permanent", func(t *testing.T) {
		t.Parallel()
		w := newWorker(t, answerWith(http.StatusOK, "text/plain", strings.Repeat("a", 1<<20+1)))
		_, err := processor.HTTPWorker{URL: w.URL}.Handle(context.Background(), testJob)
		require.Error(t, err)
		require.True(t, isPermanent(err))
	})
}

// A worker's redirect fails the job: followed, a 302 turned the POST into
// a GET and its answer became the job's result.
func TestHTTPWorkerFollowsNoRedirect(t *testing.T) {
	t.Parallel()
	var followed atomic.Bool
	other := newWorker(t, func(w http.ResponseWriter, _ *http.Request) {
		followed.Store(true)
		_, _ = io.WriteString(w, `{"from":"the redirect target"}`)
	})
	w := newWorker(t, func(rw http.ResponseWriter, r *http.Request) {
		http.Redirect(rw, r, other.URL+"/elsewhere", http.StatusFound)
	})
	_, err := processor.HTTPWorker{URL: w.URL}.Handle(context.Background(), testJob)
	require.Error(t, err)
	require.True(t, isPermanent(err))
	require.Contains(t, err.Error(), "302")
	require.False(t, followed.Load())
}

// A failed call's error, which the tenant reads in the job, names neither
// the worker's URL (its query may carry a token) nor its address.
func TestHTTPWorkerErrorKeepsTheURLOut(t *testing.T) {
	t.Parallel()
	w := newWorker(t, answerWith(http.StatusOK, "", ""))
	w.Close()
	u := w.URL + "/resize?api_key=s3cr3t"
	_, err := processor.HTTPWorker{URL: u}.Handle(context.Background(), testJob)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cr3t")
	require.NotContains(t, err.Error(), strings.TrimPrefix(w.URL, "http://"))
	require.Contains(t, err.Error(), "connection refused")
}

// An answer cut off while its body is read fails the call without the
// worker's address in the error either.
func TestHTTPWorkerBrokenAnswerKeepsTheAddressOut(t *testing.T) {
	t.Parallel()
	w := newWorker(t, func(rw http.ResponseWriter, _ *http.Request) {
		conn, buf, err := rw.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"partial\":")
		_ = buf.Flush()
		time.Sleep(50 * time.Millisecond)
		_ = conn.(*net.TCPConn).SetLinger(0)
		_ = conn.Close() // a reset, mid-body
	})
	_, err := processor.HTTPWorker{URL: w.URL + "/resize?api_key=s3cr3t"}.Handle(context.Background(), testJob)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "127.0.0.1")
	require.NotContains(t, err.Error(), "s3cr3t")
}
