package embeddednats_test

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/embeddednats"
)

// The server really runs with the sync policy it was given: "always" is
// hookstream's default and what makes a 202 survive a power loss.
func TestSyncPolicyIsApplied(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		givenAlways  bool
		givenEvery   time.Duration
		wantAlways   bool
		wantInterval time.Duration
	}{
		{name: "always", givenAlways: true, wantAlways: true},
		{name: "interval", givenEvery: 2 * time.Minute, wantInterval: 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns, err := embeddednats.Start(embeddednats.Config{StoreDir: t.TempDir(), SyncAlways: tt.givenAlways, SyncInterval: tt.givenEvery}, slog.New(slog.DiscardHandler))
			require.NoError(t, err)
			t.Cleanup(ns.Shutdown)
			cfg := ns.JetStreamConfig()
			require.Equal(t, tt.wantAlways, cfg.SyncAlways)
			if !tt.wantAlways {
				require.Equal(t, tt.wantInterval, cfg.SyncInterval)
			}
			require.NotZero(t, ns.JetStreamConfig().StoreDir)
		})
	}
}

// With a token, the listener refuses clients without it, and in-process
// clients give it too.
func TestListenerRequiresTheToken(t *testing.T) {
	t.Parallel()
	const token = "test-token-0123456789"
	ns, err := embeddednats.Start(embeddednats.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", Token: token}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(ns.Shutdown)
	url := ns.ClientURL()
	for _, anonymous := range []string{url, strings.Replace(url, "://", "://wrong-token-0123456789@", 1)} {
		_, err = nats.Connect(anonymous, nats.MaxReconnects(0))
		require.ErrorContains(t, err, "Authorization Violation")
	}
	nc, err := nats.Connect(strings.Replace(url, "://", "://"+token+"@", 1))
	require.NoError(t, err)
	nc.Close()
	nc, err = nats.Connect("", nats.InProcessServer(ns), nats.Token(token))
	require.NoError(t, err)
	nc.Close()
}

// What stops the server's start is its error, at once: it was logged, and
// Start waited 30 s to report "not ready".
func TestStartReportsWhatStoppedTheServer(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = taken.Close() })
	_, err = embeddednats.Start(embeddednats.Config{StoreDir: t.TempDir(), Listen: taken.Addr().String(), Token: "test-token-0123456789"}, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "address already in use")

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "jetstream"), nil, 0o600))
	_, err = embeddednats.Start(embeddednats.Config{StoreDir: dir}, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "not a directory")
}
