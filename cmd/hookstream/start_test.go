package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/natstest"
)

// A split service's start-up steps are tried again while NATS or JetStream
// is not available yet (a cluster started with it), and given up at once
// on any other error.
func TestWhenAvailable(t *testing.T) {
	t.Parallel()
	logger := slog.New(slog.DiscardHandler)
	notYet := []error{
		fmt.Errorf("connect to nats: %w", nats.ErrNoServers),
		fmt.Errorf("ensure stream: %w", context.DeadlineExceeded),
		&jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"},
		fmt.Errorf("ensure stream: %w", &jetstream.APIError{Code: 400, ErrorCode: 10005, Description: "no suitable peers for placement"}),
		// A NATS host whose name does not resolve yet (a container's).
		fmt.Errorf("connect to nats: %w", &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "nats", IsNotFound: true}}),
		fmt.Errorf("connect to nats: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}),
	}
	calls := 0
	err := whenAvailable(context.Background(), logger, time.Now().Add(time.Minute), "test", func() error {
		calls++
		if calls <= len(notYet) {
			return notYet[calls-1]
		}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, len(notYet)+1, calls)

	for _, wrong := range []error{
		errors.New("HOOKSTREAM_SECRET_KEY: not the key the deployment was set up with"),
		fmt.Errorf("ensure stream: %w", &jetstream.APIError{Code: 503, ErrorCode: 10039, Description: "JetStream not enabled for account"}),
		&jetstream.APIError{Code: 400, ErrorCode: 10058, Description: "stream name already in use with a different configuration"},
	} {
		calls = 0
		err = whenAvailable(context.Background(), logger, time.Now().Add(time.Minute), "test", func() error { calls++; return wrong })
		require.ErrorIs(t, err, wrong)
		require.Equal(t, 1, calls, "%v", wrong)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = whenAvailable(ctx, logger, time.Now().Add(time.Minute), "test", func() error { return nats.ErrTimeout })
	require.Error(t, err, "a stopped start-up does not wait")

	// The steps of a start share one deadline: once it has passed, a step
	// is tried once.
	calls = 0
	err = whenAvailable(context.Background(), logger, time.Now().Add(-time.Second), "test", func() error { calls++; return nats.ErrTimeout })
	require.ErrorIs(t, err, nats.ErrTimeout)
	require.Equal(t, 1, calls)
}

// With the admin API on and no HOOKSTREAM_API_KEYS, serve makes no dev
// tenant: tenants and keys come from the admin API, which could not delete
// a dev tenant given at start.
func TestServeWithAnAdminTokenMakesNoDevTenant(t *testing.T) {
	t.Parallel()
	addr := natstest.FreeAddr(t)
	dir := t.TempDir()
	s, err := parseSettings("serve", nil, env("HOOKSTREAM_DATA_DIR", dir, "HOOKSTREAM_HTTP_ADDR", addr,
		"HOOKSTREAM_ADMIN_TOKEN", "admin-token-0123456789", "HOOKSTREAM_JETSTREAM_SYNC", "2m"), &bytes.Buffer{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var stdout bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- start(ctx, "serve", s, env(), slog.New(slog.DiscardHandler), &stdout) }()
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "serve never ready")
	cancel()
	require.NoError(t, <-done)
	require.NoFileExists(t, filepath.Join(dir, "dev-api-key"))
	require.NotContains(t, stdout.String(), "development tenant")
}
