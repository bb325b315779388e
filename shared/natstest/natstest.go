// Package natstest starts a real nats-server with JetStream for tests, in the
// test's temporary directory, and stops it when the test ends.
package natstest

import (
	"log/slog"
	"strings"
	"testing"
	"time"

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

// LaggingReader returns a JetStream that reads the way a replica that has
// fallen behind its stream's leader would: once it has answered a
// key-value read of a key (a direct get of a subject's last message), it
// answers every later read of that key the same, however often the key has
// been written since. A key not found yet is looked up again. Everything
// else, the stream leader's own message reads (STREAM.MSG.GET) included,
// is passed to the server unchanged. In a cluster, direct gets may be
// answered by any replica, so a read right after a write can return what
// was there before it; this makes that happen every time.
func (s *Server) LaggingReader(t testing.TB) jetstream.JetStream {
	t.Helper()
	nc, _ := s.Connect(t)
	const prefix = "$LAGGING.API."
	seen := map[string]*nats.Msg{} // the callback runs one message at a time
	_, err := nc.Subscribe(prefix+">", func(m *nats.Msg) {
		rest := strings.TrimPrefix(m.Subject, prefix)
		subject := "$JS.API." + rest
		if strings.HasPrefix(rest, "$") { // a key-value write: $KV.<bucket>.<key>
			subject = rest
		}
		if strings.HasPrefix(rest, "DIRECT.GET.") && strings.Count(rest, ".") > 3 && len(m.Data) == 0 {
			// DIRECT.GET.<stream>.<subject>: the last message of subject.
			if answer, ok := seen[rest]; ok {
				_ = m.RespondMsg(&nats.Msg{Header: answer.Header, Data: answer.Data})
				return
			}
			answer, err := nc.Request(subject, nil, 5*time.Second)
			if err == nil && answer.Header.Get("Status") == "" { // found
				seen[rest] = answer
				_ = m.RespondMsg(&nats.Msg{Header: answer.Header, Data: answer.Data})
				return
			}
		}
		// Passed on with the caller's reply subject: the server answers it.
		if err := nc.PublishMsg(&nats.Msg{Subject: subject, Reply: m.Reply, Header: m.Header, Data: m.Data}); err != nil {
			t.Errorf("lagging reader: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("lagging reader: %v", err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatalf("lagging reader: %v", err)
	}
	js, err := jetstream.NewWithAPIPrefix(nc, prefix)
	if err != nil {
		t.Fatalf("lagging reader: %v", err)
	}
	return js
}
