package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/natstest"
)

// TestOverloadShedsLoadAndLosesNothing drives the all-in-one binary far past
// what it can take (256 clients without pause against an in-flight cap of
// 32): the excess gets 503 with Retry-After, the process neither crashes nor
// grows without bound, and every 202 is delivered.
func TestOverloadShedsLoadAndLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real process and overloads it")
	}
	t.Parallel()
	addr := natstest.FreeAddr(t)
	p := &proc{t: t, name: "hookstream", args: []string{buildBinary(t, "github.com/hookstream/hookstream/cmd/hookstream", "hookstream"), "serve"},
		env: append(baseEnv(addr), "HOOKSTREAM_DATA_DIR="+t.TempDir(), "HOOKSTREAM_MAX_INFLIGHT=32"), ready: httpReady(addr)}
	p.start()
	t.Cleanup(p.kill9)
	l := newLedger(t, addr)
	rcv := httptest.NewServer(l)
	t.Cleanup(rcv.Close)

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	var wg sync.WaitGroup
	var retryAfterMissing sync.Once
	deadline := time.Now().Add(8 * time.Second)
	for w := range 256 {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				key := fmt.Sprintf("overload-%d-%d", w, i)
				body := fmt.Appendf(nil, `{"type":"echo","callback_url":%q}`, rcv.URL)
				req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/jobs", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+keyAcme)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", key)
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				var out map[string]any
				_ = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				l.Answered(resp.StatusCode)
				switch resp.StatusCode {
				case http.StatusAccepted:
					l.Accept(key, out["id"].(string))
				case http.StatusServiceUnavailable:
					if resp.Header.Get("Retry-After") == "" {
						retryAfterMissing.Do(func() { t.Error("503 without Retry-After") })
					}
				default:
					t.Errorf("unexpected answer %d %v", resp.StatusCode, out)
					return
				}
			}
		})
	}
	wg.Wait()
	peak := peakRSSMiB(t, p.cmd.Process.Pid)
	t.Logf("peak RSS of the server: %.0f MiB", peak)
	shed := l.Result().Answers[http.StatusServiceUnavailable]
	require.Positive(t, shed, "overload was shed with 503")
	require.Less(t, peak, 1024.0, "memory stays bounded under overload")
	require.True(t, httpReady(addr)(), "the server still answers")
	checkLedger(t, l, 100)
}

// peakRSSMiB reads VmHWM of a process.
func peakRSSMiB(t *testing.T, pid int) float64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			require.NoError(t, err)
			return kb / 1024
		}
	}
	t.Fatal("no VmHWM")
	return 0
}
