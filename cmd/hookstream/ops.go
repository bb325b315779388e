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
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/metrics"
)

// readyCheckTimeout bounds one /readyz check of the ops address.
const readyCheckTimeout = 2 * time.Second

// serveOps serves /healthz, /readyz and /metrics on addr until ctx ends
// (HOOKSTREAM_OPS_ADDR): the only HTTP of a split processor or notifier,
// for liveness and readiness probes and Prometheus. ready says why the
// process is not ready, or nil.
func serveOps(ctx context.Context, addr string, ready func(context.Context) error, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("HOOKSTREAM_OPS_ADDR (--ops-addr): listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeOpsJSON(w, http.StatusOK, "application/json", map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyCheckTimeout)
		defer cancel()
		if err := ready(ctx); err != nil {
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
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	logger.Info("ops listening", "addr", ln.Addr().String())
	return nil
}

func writeOpsJSON(w http.ResponseWriter, status int, contentType string, v any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// splitReadiness is the readiness of a split service: not ready while it
// connects to NATS and starts (which may wait for a cluster that is still
// forming), then ready while its connection is up and JetStream answers
// for the stream it works on.
type splitReadiness struct {
	stream string

	mu      sync.Mutex
	nc      *nats.Conn
	js      jetstream.JetStream
	running bool
}

// newSplitReadiness is the readiness of the split service cmd.
func newSplitReadiness(cmd string) *splitReadiness {
	stream := contract.StreamJobs
	if cmd == "notifier" {
		stream = contract.StreamDeliveries
	}
	return &splitReadiness{stream: stream}
}

func (r *splitReadiness) connected(nc *nats.Conn, js jetstream.JetStream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nc, r.js = nc, js
}

func (r *splitReadiness) run() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running = true
}

func (r *splitReadiness) check(ctx context.Context) error {
	r.mu.Lock()
	nc, js, running := r.nc, r.js, r.running
	r.mu.Unlock()
	switch {
	case nc == nil:
		return errors.New("connecting to NATS")
	case !running:
		return errors.New("starting")
	case !nc.IsConnected():
		return errors.New("not connected to NATS")
	}
	if _, err := js.Stream(ctx, r.stream); err != nil {
		return fmt.Errorf("JetStream does not answer for %s: %w", r.stream, err)
	}
	return nil
}
