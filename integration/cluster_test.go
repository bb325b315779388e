package integration

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/natstest"
)

// TestClusterNodeFailuresLoseNothing runs a 3-node NATS cluster with R3
// streams and the three services in split mode under load; it kills the
// jobs stream's leader with SIGKILL and brings it back, then stops another
// node (SIGSTOP) for 15 s. Nothing accepted may be lost.
func TestClusterNodeFailuresLoseNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS cluster and kills its nodes")
	}
	t.Parallel()
	hookstream := buildBinary(t, "github.com/hookstream/hookstream/cmd/hookstream", "hookstream")
	natsBin := buildBinary(t, "github.com/nats-io/nats-server/v2", "nats-server")
	const nodes = 3
	clientAddrs, routeAddrs := make([]string, nodes), make([]string, nodes)
	for i := range nodes {
		clientAddrs[i], routeAddrs[i] = natstest.FreeAddr(t), natstest.FreeAddr(t)
	}
	servers := map[string]*proc{}
	var urls []string
	for i := range nodes {
		name := fmt.Sprintf("n%d", i+1)
		host, port, _ := net.SplitHostPort(clientAddrs[i])
		rhost, rport, _ := net.SplitHostPort(routeAddrs[i])
		var routes []string
		for j := range nodes {
			if j != i {
				routes = append(routes, "nats://"+routeAddrs[j])
			}
		}
		conf := filepath.Join(t.TempDir(), name+".conf")
		require.NoError(t, os.WriteFile(conf, fmt.Appendf(nil, `server_name: %s
host: %s
port: %s
max_payload: 8MB
jetstream { store_dir: %q, sync_interval: always }
cluster { name: hookstream, host: %s, port: %s, routes: [%s] }
`, name, host, port, t.TempDir(), rhost, rport, strings.Join(routes, ", ")), 0o644))
		p := &proc{t: t, name: name, args: []string{natsBin, "-c", conf}, ready: tcpReady(clientAddrs[i])}
		p.start()
		t.Cleanup(p.kill9)
		servers[name] = p
		urls = append(urls, "nats://"+clientAddrs[i])
	}
	natsURL := strings.Join(urls, ",")
	nc, err := nats.Connect(natsURL)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.Eventually(t, func() bool { // a JetStream meta leader is elected
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	}, 60*time.Second, 200*time.Millisecond)

	httpAddr := natstest.FreeAddr(t)
	env := append(baseEnv(httpAddr), "HOOKSTREAM_NATS_URL="+natsURL, "HOOKSTREAM_NATS_REPLICAS=3",
		"HOOKSTREAM_SECRET_KEY=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	for _, name := range []string{"intake", "processor", "notifier"} {
		p := &proc{t: t, name: name, args: []string{hookstream, name}, env: env}
		if name == "intake" {
			p.ready = httpReady(httpAddr)
		}
		p.start()
		t.Cleanup(p.kill9)
	}

	l := newLedger(t, httpAddr)
	rcv := httptest.NewServer(l)
	t.Cleanup(rcv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	wait := startLoad(ctx, t, l, httpAddr, rcv.URL)

	time.Sleep(4 * time.Second)
	stream, err := js.Stream(context.Background(), contract.StreamJobs)
	require.NoError(t, err)
	info, err := stream.Info(context.Background())
	require.NoError(t, err)
	require.NotNil(t, info.Cluster)
	require.Len(t, info.Cluster.Replicas, 2, "R3")
	leader := info.Cluster.Leader
	servers[leader].kill9()
	t.Logf("kill -9 %s, the leader of %s", leader, contract.StreamJobs)
	time.Sleep(5 * time.Second)
	servers[leader].start()

	time.Sleep(4 * time.Second)
	var paused *proc
	for name, p := range servers {
		if name != leader {
			paused = p
			break
		}
	}
	require.NoError(t, paused.cmd.Process.Signal(syscall.SIGSTOP))
	t.Logf("SIGSTOP %s for 15 s", paused.name)
	time.Sleep(15 * time.Second)
	require.NoError(t, paused.cmd.Process.Signal(syscall.SIGCONT))
	time.Sleep(4 * time.Second)
	cancel()
	wait()
	checkLedger(t, l, 500)
}
