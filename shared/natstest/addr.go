package natstest

import (
	"fmt"
	mrand "math/rand/v2"
	"net"
	"sync"
	"testing"
)

// Ports handed out by FreeAddr, never twice in one test binary.
var (
	portsMu sync.Mutex
	ports   = map[int]bool{}
)

// FreeAddr returns a loopback address that is free now, for a listener
// (a process, a server) the test starts later. Its port is below Linux's
// ephemeral range (32768 on): a port from that range (":0") may be taken
// meanwhile by an outgoing connection's local end, as when a cluster node
// dials its routes before the next node listens on its own (it failed to
// start, "address already in use").
func FreeAddr(t testing.TB) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		port := 10000 + mrand.IntN(22000)
		if ports[port] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		ports[port] = true
		return ln.Addr().String()
	}
	t.Fatal("no free port below 32000")
	return ""
}
