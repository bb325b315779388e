package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/services/intake"
	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/metrics"
)

var errStopping = errors.New("stopping")

// readyCheckTimeout bounds one /readyz check of the ops address, within
// the 1 s a Kubernetes probe waits by default.
const readyCheckTimeout = 800 * time.Millisecond

// serveOps serves /healthz, /readyz and /metrics on addr (HOOKSTREAM_OPS_ADDR)
// until stop is called: the only HTTP of a split processor or notifier,
// for liveness and readiness probes and Prometheus. ready says why the
// process is not ready, or nil; once ctx ends, it is stopping (its
// consumers drain meanwhile, and its metrics are still served).
func serveOps(ctx context.Context, addr string, ready func(context.Context) error, logger *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("HOOKSTREAM_OPS_ADDR (--ops-addr): listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeOpsJSON(w, http.StatusOK, "application/json", map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		checkCtx, cancel := context.WithTimeout(r.Context(), readyCheckTimeout)
		defer cancel()
		err := errStopping
		if ctx.Err() == nil {
			err = ready(checkCtx)
		}
		if err != nil {
			w.Header().Set("Retry-After", "1")
			writeOpsJSON(w, http.StatusServiceUnavailable, "application/problem+json", intake.Problem{
				Type: "urn:hookstream:problem:unavailable", Title: http.StatusText(http.StatusServiceUnavailable),
				Status: http.StatusServiceUnavailable, Detail: err.Error(),
			})
			return
		}
		writeOpsJSON(w, http.StatusOK, "application/json", map[string]string{"status": "ready"})
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		metrics.WriteTo(w)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	logger.Info("ops listening", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}

func writeOpsJSON(w http.ResponseWriter, status int, contentType string, v any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// splitReadiness is the readiness of a split service: not ready while it
// connects to NATS and starts (which may wait for a cluster that is still
// forming, and for the service's own start: intake loads its API keys, the
// notifier its endpoints), then ready while its connections are up and
// JetStream answers for the stream it works on.
type splitReadiness struct {
	stream string

	mu      sync.Mutex
	js      jetstream.JetStream // nil until connected
	records *nats.Conn          // intake's and processors' second connection
	running <-chan struct{}     // closed once the service works
}

// newSplitReadiness is the readiness of the split service cmd.
func newSplitReadiness(cmd string) *splitReadiness {
	stream := contract.StreamJobs
	if cmd == "notifier" {
		stream = contract.StreamDeliveries
	}
	return &splitReadiness{stream: stream}
}

// connected records the service's connection and js on it; records is
// the second connection of intake and processors (job records), if any.
func (r *splitReadiness) connected(js jetstream.JetStream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.js = js
}

func (r *splitReadiness) recordsOn(rnc *nats.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = rnc
}

// run records that the service runs: it works once working is closed.
func (r *splitReadiness) run(working <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running = working
}

func (r *splitReadiness) check(ctx context.Context) error {
	r.mu.Lock()
	js, records, running := r.js, r.records, r.running
	r.mu.Unlock()
	if js == nil {
		return errors.New("connecting to NATS")
	}
	select {
	case <-running: // a nil channel (not run yet) is never ready
	default:
		return errors.New("starting")
	}
	var others []*nats.Conn
	if records != nil {
		others = append(others, records)
	}
	return bus.CheckAvailable(ctx, js, r.stream, others...)
}

// workingWhen is the channel closed once svc works: its Ready, or at once
// for a service without one (a processor works as soon as it runs).
func workingWhen(svc any) <-chan struct{} {
	if r, ok := svc.(interface{ Ready() <-chan struct{} }); ok {
		return r.Ready()
	}
	now := make(chan struct{})
	close(now)
	return now
}
