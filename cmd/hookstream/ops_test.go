package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/intake"
	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/natstest"
)

const testSecretKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

// A split notifier with HOOKSTREAM_OPS_ADDR answers its probes and
// Prometheus there: live at once, ready once it works.
func TestOpsAddressOfASplitService(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	addr := natstest.FreeAddr(t)
	done := startInProcess(t, "notifier", env("HOOKSTREAM_NATS_URL", ns.ClientURL(), "HOOKSTREAM_SECRET_KEY", testSecretKey, "HOOKSTREAM_OPS_ADDR", addr))
	waitReady(t, addr, done)
	code, _, _ := opsGet(addr, "/healthz")
	require.Equal(t, http.StatusOK, code)
	code, contentType, body := opsGet(addr, "/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, contentType, "text/plain")
	require.Contains(t, string(body), "hookstream_webhook_attempts_total")
}

// hookstream serve with HOOKSTREAM_OPS_ADDR is ready there once its
// services work.
func TestOpsAddressOfServe(t *testing.T) {
	t.Parallel()
	addr := natstest.FreeAddr(t)
	done := startInProcess(t, "serve", env("HOOKSTREAM_DATA_DIR", t.TempDir(), "HOOKSTREAM_HTTP_ADDR", "127.0.0.1:0", "HOOKSTREAM_OPS_ADDR", addr))
	waitReady(t, addr, done)
}

// A split service is not ready while it connects and starts, nor while a
// connection is down, nor once it stops.
func TestSplitReadiness(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newSplitReadiness("processor")
	require.ErrorContains(t, r.check(ctx), "connecting to NATS")
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))
	r.connected(js)
	require.ErrorContains(t, r.check(ctx), "starting")
	working := make(chan struct{})
	r.run(working)
	require.ErrorContains(t, r.check(ctx), "starting", "not working yet (a notifier loading its endpoints)")
	close(working)
	require.NoError(t, r.check(ctx))
	records, _ := ns.Connect(t)
	r.recordsOn(records)
	records.Close()
	require.ErrorContains(t, r.check(ctx), "not connected to NATS", "the records' connection counts too")
}

// The ops address says why it is not ready, as problem+json, and that it
// is stopping once its context ends, while it still serves.
func TestOpsReadyz(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := natstest.FreeAddr(t)
	var notReady atomic.Bool
	stop, err := serveOps(ctx, addr, func(context.Context) error {
		if notReady.Load() {
			return io.ErrUnexpectedEOF
		}
		return nil
	}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer stop()
	code, _, _ := opsGet(addr, "/readyz")
	require.Equal(t, http.StatusOK, code)
	notReady.Store(true)
	requireNotReady(t, addr, io.ErrUnexpectedEOF.Error())
	notReady.Store(false)
	cancel()
	requireNotReady(t, addr, "stopping")
	code, _, _ = opsGet(addr, "/healthz")
	require.Equal(t, http.StatusOK, code, "still live while it stops")
}

// An ops address that another listener of the command takes is refused
// at start, naming the settings.
func TestOpsAddressConflicts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cmd     string
		env     []string
		wantErr string
	}{
		{cmd: "serve", env: []string{"HOOKSTREAM_OPS_ADDR", ":8080"}, wantErr: "HOOKSTREAM_HTTP_ADDR"},
		{cmd: "intake", env: []string{"HOOKSTREAM_OPS_ADDR", "127.0.0.1:8080"}, wantErr: "HOOKSTREAM_HTTP_ADDR"},
		{cmd: "notifier", env: []string{"HOOKSTREAM_OPS_ADDR", ":8080", "HOOKSTREAM_SECRET_KEY", testSecretKey}}, // no API: :8080 is free
		{cmd: "notifier", env: []string{"HOOKSTREAM_OPS_ADDR", ":6060", "HOOKSTREAM_PPROF_ADDR", "127.0.0.1:6060"}, wantErr: "HOOKSTREAM_PPROF_ADDR"},
		{cmd: "serve", env: []string{"HOOKSTREAM_OPS_ADDR", "127.0.0.1:9090", "HOOKSTREAM_HTTP_ADDR", "127.0.0.2:9090"}},
		{cmd: "serve", env: []string{"HOOKSTREAM_OPS_ADDR", "9090"}, wantErr: "HOOKSTREAM_OPS_ADDR"},
	} {
		_, err := parseSettings(tc.cmd, nil, env(tc.env...), io.Discard)
		if tc.wantErr == "" {
			require.NoError(t, err, "%s %v", tc.cmd, tc.env)
			continue
		}
		require.ErrorContains(t, err, tc.wantErr, "%s %v", tc.cmd, tc.env)
		require.ErrorContains(t, err, "HOOKSTREAM_OPS_ADDR")
		var stderr bytes.Buffer
		require.Equal(t, 2, run([]string{tc.cmd}, env(tc.env...), io.Discard, &stderr))
	}
}

// startInProcess runs start(cmd) until the test ends; its error, if it
// returns early, comes on the channel.
func startInProcess(t *testing.T, cmd string, getenv func(string) string) <-chan error {
	t.Helper()
	s, err := parseSettings(cmd, nil, getenv, io.Discard)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	stopped := make(chan struct{}) // closed once start returned, its error read from done or not
	go func() {
		defer close(stopped)
		done <- start(ctx, cmd, s, getenv, slog.New(slog.DiscardHandler), io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		<-stopped
	})
	return done
}

func waitReady(t *testing.T, addr string, done <-chan error) {
	t.Helper()
	require.Eventually(t, func() bool {
		select {
		case err := <-done:
			t.Fatalf("stopped before it was ready: %v", err)
		default:
		}
		code, _, _ := opsGet(addr, "/readyz")
		return code == http.StatusOK
	}, 20*time.Second, 20*time.Millisecond)
}

func requireNotReady(t *testing.T, addr, reason string) {
	t.Helper()
	code, contentType, body := opsGet(addr, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "application/problem+json", contentType)
	var problem intake.Problem
	require.NoError(t, json.Unmarshal(body, &problem))
	require.Equal(t, reason, problem.Detail)
}

func opsGet(addr, path string) (code int, contentType string, body []byte) {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0, "", nil
	}
	defer resp.Body.Close()
	body, _ = io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}
