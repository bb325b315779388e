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

// receive is the receiver's handler: verify, then count.
func (l *ledger) receive(secret func() string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(secret(), r.Header, body, time.Now(), webhook.DefaultTolerance); err != nil {
			l.mu.Lock()
			l.badSigs++
			l.mu.Unlock()
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var hook struct {
			Data struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		_ = json.Unmarshal(body, &hook)
		l.mu.Lock()
		if l.seenIDs[r.Header.Get("webhook-id")] {
			l.duplicates++
		} else {
			l.seenIDs[r.Header.Get("webhook-id")] = true
			l.webhooks[hook.Data.ID]++
		}
		l.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}
}

// verdict counts what the promise forbids.
func (l *ledger) verdict() (accepted, delivered, lost, unexpected int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := map[string]bool{}
	for _, id := range l.accepted {
		ids[id] = true
		if l.webhooks[id] > 0 {
			delivered++
		} else {
			lost++
		}
	}
	for id := range l.webhooks {
		if !ids[id] {
			unexpected++
		}
	}
	return len(l.accepted), delivered, lost, unexpected
}

// proc is the hookstream binary running as a real process.
type proc struct {
	t    *testing.T
	bin  string
	dir  string
	addr string
	cmd  *exec.Cmd
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hookstream")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/hookstream/hookstream/cmd/hookstream").CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

func (p *proc) start() {
	p.t.Helper()
	p.cmd = exec.Command(p.bin, "serve")
	p.cmd.Env = append(os.Environ(), "HOOKSTREAM_DATA_DIR="+p.dir, "HOOKSTREAM_HTTP_ADDR="+p.addr,
		"HOOKSTREAM_API_KEYS=acme:"+keyAcme, "HOOKSTREAM_ALLOWED_CALLBACK_NETWORKS=127.0.0.0/8",
		"HOOKSTREAM_LOG_LEVEL=warn", "HOOKSTREAM_RETRY_SCHEDULE=1s,1s,2s,5s,10s,20s")
	p.cmd.Stdout, p.cmd.Stderr = io.Discard, io.Discard
	require.NoError(p.t, p.cmd.Start())
	require.Eventually(p.t, func() bool {
		resp, err := http.Get("http://" + p.addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond)
}

func (p *proc) kill9() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// TestKill9LosesNothing runs the real binary under load, kills it with
// SIGKILL several times and restarts it; every job that got a 202 must
// reach its callback, signed, and no Idempotency-Key may make two jobs.
func TestKill9LosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills real processes for about two minutes")
	}
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	p := &proc{t: t, bin: buildBinary(t), dir: t.TempDir(), addr: addr}
	p.start()
	t.Cleanup(func() { p.kill9() })

	var secret string
	var secretMu sync.Mutex
	getSecret := func() string { secretMu.Lock(); defer secretMu.Unlock(); return secret }
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/signing-secret", nil)
	req.Header.Set("Authorization", "Bearer "+keyAcme)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var sec map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&sec))
	resp.Body.Close()
	secret = sec["secret"].(string)

	l := newLedger()
	rcv := httptest.NewServer(l.receive(getSecret))
	t.Cleanup(rcv.Close)

	// Load: 50 jobs/s for 20 s, each with its own key, retried with the same
	// key until it has a clear answer.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := &http.Client{Timeout: 5 * time.Second}
	var wg sync.WaitGroup
	submit := func(key string) {
		defer wg.Done()
		body := []byte(fmt.Sprintf(`{"type":"echo","payload":{"key":%q},"callback_url":%q}`, key, rcv.URL))
		for attempt := 0; attempt < 200; attempt++ {
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
				require.Contains(t, []int{http.StatusServiceUnavailable, http.StatusTooManyRequests}, resp.StatusCode, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("key %s never got a clear answer", key)
	}
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				wg.Add(1)
				go submit(fmt.Sprintf("chaos-%d", i))
			}
		}
	}()

	const kills = 5
	for i := range kills {
		time.Sleep(3 * time.Second)
		p.kill9()
		t.Logf("kill -9 number %d", i+1)
		time.Sleep(300 * time.Millisecond)
		p.start()
	}
	time.Sleep(3 * time.Second)
	cancel()
	wg.Wait()

	// Drain: unsettled messages come back after their ack wait (30 s).
	deadline := time.Now().Add(150 * time.Second)
	for time.Now().Before(deadline) {
		if _, _, lost, _ := l.verdict(); lost == 0 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	accepted, delivered, lost, unexpected := l.verdict()
	l.mu.Lock()
	t.Logf("ledger: accepted %d, delivered %d, lost %d, unexpected %d, duplicates %d, bad signatures %d, split keys %d, answers %v",
		accepted, delivered, lost, unexpected, l.duplicates, l.badSigs, l.splitKeys, l.statuses)
	badSigs, split := l.badSigs, l.splitKeys
	l.mu.Unlock()
	require.Greater(t, accepted, 500)
	require.Zero(t, lost, "lost")
	require.Zero(t, unexpected, "unexpected")
	require.Zero(t, badSigs, "bad signatures")
	require.Zero(t, split, "one key, two jobs")
}
