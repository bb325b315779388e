package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/intake"
	"github.com/hookstream/hookstream/shared/natstest"
)

// A split notifier with HOOKSTREAM_OPS_ADDR answers its probes and
// Prometheus there: live at once, ready once it runs, not ready while its
// NATS server is gone.
func TestOpsAddressOfASplitService(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	addr := freeLocalAddr(t)
	getenv := env("HOOKSTREAM_NATS_URL", ns.ClientURL(), "HOOKSTREAM_SECRET_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"HOOKSTREAM_OPS_ADDR", addr)
	s, err := parseSettings("notifier", nil, getenv, io.Discard)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- start(ctx, "notifier", s, getenv, slog.New(slog.DiscardHandler), io.Discard) }()
	defer func() {
		cancel()
		<-done
	}()
	get := func(path string) (int, string, []byte) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, "", nil
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), body
	}

	require.Eventually(t, func() bool { code, _, _ := get("/readyz"); return code == http.StatusOK }, 20*time.Second, 20*time.Millisecond)
	code, _, _ := get("/healthz")
	require.Equal(t, http.StatusOK, code)
	code, contentType, body := get("/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, contentType, "text/plain")
	require.Contains(t, string(body), "hookstream_webhook_attempts_total")

	ns.Shutdown()
	var problem intake.Problem
	require.Eventually(t, func() bool {
		code, contentType, body := get("/readyz")
		return code == http.StatusServiceUnavailable && contentType == "application/problem+json" && json.Unmarshal(body, &problem) == nil
	}, 10*time.Second, 20*time.Millisecond, "ready without its NATS server")
	require.Equal(t, http.StatusServiceUnavailable, problem.Status)
	require.NotEmpty(t, problem.Detail)
	code, _, _ = get("/healthz")
	require.Equal(t, http.StatusOK, code, "still live")
}

// A split service is not ready while it connects and starts.
func TestSplitReadinessBeforeItRuns(t *testing.T) {
	t.Parallel()
	r := newSplitReadiness("processor")
	require.ErrorContains(t, r.check(context.Background()), "connecting to NATS")
	nc, js := natstest.Start(t).Connect(t)
	r.connected(nc, js)
	require.ErrorContains(t, r.check(context.Background()), "starting")
}

// freeLocalAddr is a loopback address with a port free a moment ago.
func freeLocalAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}
