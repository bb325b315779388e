// Package natstest starts a real nats-server with JetStream for tests, in the
// test's temporary directory, and stops it when the test ends.
package natstest

import (
	"log/slog"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/embeddednats"
)

// Server is a running test server.
type Server struct {
	*server.Server
	// Dir is the JetStream store directory.
	Dir string
}

// Start starts a JetStream server listening on a random loopback port.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, false)
}

// StartSynced starts one that syncs every write to disk before it
// acknowledges it, as hookstream's embedded server does by default.
func StartSynced(t testing.TB) *Server {
	t.Helper()
	return start(t, true)
}

func start(t testing.TB, syncAlways bool) *Server {
	t.Helper()
	dir := t.TempDir()
	ns, err := embeddednats.Start(embeddednats.Config{StoreDir: dir, Listen: "127.0.0.1:0", SyncAlways: syncAlways}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return &Server{Server: ns, Dir: dir}
}

// Connect returns a connection made the way hookstream makes its own
// (bus.Connect), closed when the test ends.
func (s *Server) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js, err := bus.Connect(bus.ConnectOptions{URL: s.ClientURL(), Name: t.Name()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc, js
}
