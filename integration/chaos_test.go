package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/ledger"
	"github.com/hookstream/hookstream/shared/natstest"
)

// checkLedger waits (bounded) for every accepted job's webhook, then
// asserts the promise: nothing lost, nothing unexpected, every signature
// good, no key that made two jobs.
func checkLedger(t *testing.T, l *ledger.Ledger, minAccepted int) {
	t.Helper()
	r := l.Drain(150 * time.Second) // unsettled messages return after their ack wait
	t.Logf("ledger: %s", r)
	require.GreaterOrEqual(t, r.Accepted, minAccepted)
	require.Zero(t, r.Lost, "lost")
	require.Zero(t, r.Unexpected, "unexpected")
	require.Zero(t, r.BadSignatures, "bad signatures")
	require.Zero(t, r.SplitKeys, "one key, two jobs")
}

// startLoad runs ledger.Load at 50 jobs/s against intake at addr; the
// returned wait fails the test on an unexpected answer.
func startLoad(ctx context.Context, t *testing.T, l *ledger.Ledger, addr, callback string) func() {
	wait := l.Load(ctx, "http://"+addr, keyAcme, callback, 50)
	return func() { require.NoError(t, wait()) }
}

// proc is a real process of ours, started and killed by the test.
type proc struct {
	t     *testing.T
	name  string
	args  []string
	env   []string
	ready func() bool
	cmd   *exec.Cmd
}

func (p *proc) start() {
	p.t.Helper()
	p.cmd = exec.Command(p.args[0], p.args[1:]...)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.cmd.Stdout, p.cmd.Stderr = io.Discard, io.Discard
	began := time.Now()
	require.NoError(p.t, p.cmd.Start(), p.name)
	if p.ready != nil {
		// A split intake on a fresh cluster creates its R3 streams first:
		// with every integration test running at once on 2 cores, that
		// once took longer than 30 s.
		require.Eventually(p.t, p.ready, 60*time.Second, 50*time.Millisecond, "%s not ready", p.name)
		p.t.Logf("%s ready %s after start", p.name, time.Since(began).Round(time.Millisecond))
	}
}

func (p *proc) kill9() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

func buildBinary(t *testing.T, pkg, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

func httpReady(addr string) func() bool {
	return func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
}

func tcpReady(addr string) func() bool {
	return func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
}

func newLedger(t *testing.T, addr string) *ledger.Ledger {
	t.Helper()
	secret, err := ledger.SigningSecret("http://"+addr, keyAcme)
	require.NoError(t, err)
	return ledger.New(secret)
}

// baseEnv is the configuration every hookstream process of a test shares.
func baseEnv(httpAddr string) []string {
	return []string{"HOOKSTREAM_HTTP_ADDR=" + httpAddr, "HOOKSTREAM_API_KEYS=acme:" + keyAcme,
		"HOOKSTREAM_ALLOWED_CALLBACK_NETWORKS=127.0.0.0/8", "HOOKSTREAM_LOG_LEVEL=warn",
		"HOOKSTREAM_RETRY_SCHEDULE=1s,1s,2s,5s,10s,20s"}
}

// TestKill9LosesNothing runs the all-in-one binary under load, kills it with
// SIGKILL five times and restarts it; every job that got a 202 must reach
// its callback, signed, and no Idempotency-Key may make two jobs.
func TestKill9LosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills real processes")
	}
	t.Parallel()
	addr := natstest.FreeAddr(t)
	p := &proc{t: t, name: "hookstream", args: []string{buildBinary(t, "github.com/hookstream/hookstream/cmd/hookstream", "hookstream"), "serve"},
		env: append(baseEnv(addr), "HOOKSTREAM_DATA_DIR="+t.TempDir()), ready: httpReady(addr)}
	p.start()
	t.Cleanup(p.kill9)

	l := newLedger(t, addr)
	rcv := httptest.NewServer(l)
	t.Cleanup(rcv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	wait := startLoad(ctx, t, l, addr, rcv.URL)
	for i := range 5 {
		time.Sleep(3 * time.Second)
		p.kill9()
		t.Logf("kill -9 number %d", i+1)
		time.Sleep(300 * time.Millisecond)
		p.start()
	}
	time.Sleep(3 * time.Second)
	cancel()
	wait()
	checkLedger(t, l, 500)
}

// TestSplitModeKill9LosesNothing runs nats-server, intake, processor and
// notifier as separate processes under load and kills each of them with
// SIGKILL, nats-server included: while NATS is down intake answers 503,
// never 202, and nothing accepted is lost.
func TestSplitModeKill9LosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills real processes")
	}
	t.Parallel()
	hookstream := buildBinary(t, "github.com/hookstream/hookstream/cmd/hookstream", "hookstream")
	natsBin := buildBinary(t, "github.com/nats-io/nats-server/v2", "nats-server")
	natsAddr, httpAddr := natstest.FreeAddr(t), natstest.FreeAddr(t)
	storeDir := t.TempDir()
	conf := filepath.Join(t.TempDir(), "nats.conf")
	host, port, _ := net.SplitHostPort(natsAddr)
	require.NoError(t, os.WriteFile(conf, fmt.Appendf(nil,
		"host: %s\nport: %s\nmax_payload: 8MB\njetstream { store_dir: %q, sync_interval: always }\n", host, port, storeDir), 0o644))
	nats := &proc{t: t, name: "nats-server", args: []string{natsBin, "-c", conf}, ready: tcpReady(natsAddr)}
	nats.start()
	t.Cleanup(nats.kill9)

	env := append(baseEnv(httpAddr), "HOOKSTREAM_NATS_URL=nats://"+natsAddr,
		"HOOKSTREAM_SECRET_KEY=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	services := map[string]*proc{}
	for _, name := range []string{"intake", "processor", "notifier"} {
		p := &proc{t: t, name: name, args: []string{hookstream, name}, env: env}
		if name == "intake" {
			p.ready = httpReady(httpAddr)
		}
		p.start()
		t.Cleanup(p.kill9)
		services[name] = p
	}

	l := newLedger(t, httpAddr)
	rcv := httptest.NewServer(l)
	t.Cleanup(rcv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	wait := startLoad(ctx, t, l, httpAddr, rcv.URL)
	for round := range 2 {
		for _, name := range []string{"intake", "processor", "notifier"} {
			time.Sleep(2 * time.Second)
			services[name].kill9()
			t.Logf("round %d: kill -9 %s", round+1, name)
			time.Sleep(300 * time.Millisecond)
			services[name].start()
		}
	}
	time.Sleep(2 * time.Second)
	nats.kill9()
	t.Log("kill -9 nats-server")
	probeStatus := submitOnce(t, httpAddr)
	require.Equal(t, http.StatusServiceUnavailable, probeStatus, "intake must answer 503 while NATS is down, never 202")
	time.Sleep(2 * time.Second)
	nats.start()
	time.Sleep(5 * time.Second)
	cancel()
	wait()
	checkLedger(t, l, 300)
}

// submitOnce posts one job and returns the status.
func submitOnce(t *testing.T, addr string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/jobs", bytes.NewReader([]byte(`{"type":"echo"}`)))
	req.Header.Set("Authorization", "Bearer "+keyAcme)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}
