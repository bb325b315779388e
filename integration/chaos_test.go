package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/webhook"
)

// ledger records every accepted job and every webhook, and tells what was
// lost, duplicated or unexpected.
type ledger struct {
	mu         sync.Mutex
	secret     string
	accepted   map[string]string // Idempotency-Key → job id
	splitKeys  int               // a key answered with two job ids
	webhooks   map[string]int    // job id → webhooks received
	seenIDs    map[string]bool   // webhook-id
	duplicates int
	badSigs    int
	statuses   map[int]int
}

func newLedger() *ledger {
	return &ledger{accepted: map[string]string{}, webhooks: map[string]int{}, seenIDs: map[string]bool{}, statuses: map[int]int{}}
}

func (l *ledger) accept(key, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev, ok := l.accepted[key]; ok && prev != id {
		l.splitKeys++
	}
	l.accepted[key] = id
}

// ServeHTTP is the receiver: verify, then count.
func (l *ledger) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := webhook.Verify(l.secret, r.Header, body, time.Now(), webhook.DefaultTolerance); err != nil {
		l.badSigs++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var hook struct {
		Data struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &hook)
	if l.seenIDs[r.Header.Get("webhook-id")] {
		l.duplicates++
	} else {
		l.seenIDs[r.Header.Get("webhook-id")] = true
		l.webhooks[hook.Data.ID]++
	}
	w.WriteHeader(http.StatusNoContent)
}

// result is the ledger's verdict.
type result struct {
	accepted, delivered, lost, unexpected, duplicates, badSigs, splitKeys int
	statuses                                                              map[int]int
}

func (l *ledger) result() result {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := result{accepted: len(l.accepted), duplicates: l.duplicates, badSigs: l.badSigs, splitKeys: l.splitKeys, statuses: map[int]int{}}
	ids := map[string]bool{}
	for _, id := range l.accepted {
		ids[id] = true
		if l.webhooks[id] > 0 {
			r.delivered++
		} else {
			r.lost++
		}
	}
	for id := range l.webhooks {
		if !ids[id] {
			r.unexpected++
		}
	}
	for k, v := range l.statuses {
		r.statuses[k] = v
	}
	return r
}

// check waits (bounded) for every accepted job's webhook, then asserts the
// promise: nothing lost, nothing unexpected, every signature good, no key
// that made two jobs.
func (l *ledger) check(t *testing.T, minAccepted int) {
	t.Helper()
	deadline := time.Now().Add(150 * time.Second) // unsettled messages return after their ack wait
	for time.Now().Before(deadline) && l.result().lost > 0 {
		time.Sleep(500 * time.Millisecond)
	}
	r := l.result()
	t.Logf("ledger: accepted %d, delivered %d, lost %d, unexpected %d, duplicates %d, bad signatures %d, split keys %d, answers %v",
		r.accepted, r.delivered, r.lost, r.unexpected, r.duplicates, r.badSigs, r.splitKeys, r.statuses)
	require.GreaterOrEqual(t, r.accepted, minAccepted)
	require.Zero(t, r.lost, "lost")
	require.Zero(t, r.unexpected, "unexpected")
	require.Zero(t, r.badSigs, "bad signatures")
	require.Zero(t, r.splitKeys, "one key, two jobs")
}

// load submits 50 echo jobs a second to intake at addr, each with its own
// Idempotency-Key and retried with it until it has a clear answer (a 202;
// 503 and 429 mean "try again"; anything else fails the test). It stops
// when ctx ends; the returned wait blocks until every submission is done.
func (l *ledger) load(ctx context.Context, t *testing.T, addr, callback string) (wait func()) {
	client := &http.Client{Timeout: 5 * time.Second}
	var wg sync.WaitGroup
	submit := func(key string) {
		body := fmt.Appendf(nil, `{"type":"echo","payload":{"key":%q},"callback_url":%q}`, key, callback)
		for range 600 {
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/jobs", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+keyAcme)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", key)
			resp, err := client.Do(req)
			if err == nil {
				var out map[string]any
				_ = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				l.mu.Lock()
				l.statuses[resp.StatusCode]++
				l.mu.Unlock()
				if resp.StatusCode == http.StatusAccepted {
					l.accept(key, out["id"].(string))
					return
				}
				if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusTooManyRequests {
					t.Errorf("key %s: unexpected answer %d %v", key, resp.StatusCode, out)
					return
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("key %s never got a clear answer", key)
	}
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				key := fmt.Sprintf("chaos-%d", i)
				wg.Go(func() { submit(key) })
			}
		}
	})
	return wg.Wait
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
		require.Eventually(p.t, p.ready, 30*time.Second, 50*time.Millisecond, "%s not ready", p.name)
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

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
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

func fetchSecret(t *testing.T, addr string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/signing-secret", nil)
	req.Header.Set("Authorization", "Bearer "+keyAcme)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var sec map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&sec))
	return sec["secret"].(string)
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
	addr := freeAddr(t)
	p := &proc{t: t, name: "hookstream", args: []string{buildBinary(t, "github.com/hookstream/hookstream/cmd/hookstream", "hookstream"), "serve"},
		env: append(baseEnv(addr), "HOOKSTREAM_DATA_DIR="+t.TempDir()), ready: httpReady(addr)}
	p.start()
	t.Cleanup(p.kill9)

	l := newLedger()
	l.secret = fetchSecret(t, addr)
	rcv := httptest.NewServer(l)
	t.Cleanup(rcv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	wait := l.load(ctx, t, addr, rcv.URL)
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
	l.check(t, 500)
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
	natsAddr, httpAddr := freeAddr(t), freeAddr(t)
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

	l := newLedger()
	l.secret = fetchSecret(t, httpAddr)
	rcv := httptest.NewServer(l)
	t.Cleanup(rcv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	wait := l.load(ctx, t, httpAddr, rcv.URL)
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
	l.check(t, 300)
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
