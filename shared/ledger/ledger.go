// Package ledger checks hookstream's promise from the outside: it records
// every job answered 202 and every webhook received (verified with the
// signing secret), and says what was lost, unexpected, badly signed, split
// (one Idempotency-Key, two jobs) or duplicated. Three of every four
// submissions have no Idempotency-Key and are sent at the same moment, so
// that every way intake stores a job is checked: with its record, as its
// message alone, and in a job batch (the first in flight, the other two
// written together). The reliability tests and
// `hookbench ledger` both use it.
package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/hookstream/hookstream/shared/webhook"
)

// metadataKey is the job metadata field that carries a submission's ledger
// key, so that a webhook can be traced to the submission that made it.
const metadataKey = "ledger_key"

// Ledger is safe for concurrent use; as an http.Handler it is the webhook
// receiver.
type Ledger struct {
	mu        sync.Mutex
	secret    string
	accepted  map[string]string // ledger key (the Idempotency-Key, if sent) → job id
	splitKeys int
	webhooks  map[string]int // job id → webhooks received
	// keyOf is the ledger key in the metadata of each job a webhook was
	// received for.
	keyOf map[string]string
	// unclear counts, per ledger key sent without an Idempotency-Key, the
	// attempts with an unclear outcome: no answer (the connection failed),
	// or 503 "unavailable" (JetStream did not confirm the write in time,
	// which it may still have made). Each may have stored a job that the
	// client never learned of. A 503 "overloaded" or a 429 is refused
	// before anything is written.
	unclear    map[string]int
	seenIDs    map[string]bool // webhook-id
	duplicates int
	badSigs    int
	statuses   map[int]int
}

// New returns a ledger whose receiver verifies with secret (whsec_…).
func New(secret string) *Ledger {
	return &Ledger{secret: secret, accepted: map[string]string{}, webhooks: map[string]int{}, seenIDs: map[string]bool{}, statuses: map[int]int{},
		keyOf: map[string]string{}, unclear: map[string]int{}}
}

// Accept records a 202: key answered with job id.
func (l *Ledger) Accept(key, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev, ok := l.accepted[key]; ok && prev != id {
		l.splitKeys++
	}
	l.accepted[key] = id
}

// Answered counts an HTTP answer of the intake by status.
func (l *Ledger) Answered(status int) {
	l.mu.Lock()
	l.statuses[status]++
	l.mu.Unlock()
}

// ServeHTTP receives a webhook: verify it, then count it.
func (l *Ledger) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := webhook.Verify(l.secret, r.Header, body, time.Now(), webhook.DefaultTolerance); err != nil {
		l.badSigs++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var hook struct {
		Data struct {
			ID       string            `json:"id"`
			Metadata map[string]string `json:"metadata"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &hook)
	if l.seenIDs[r.Header.Get("webhook-id")] {
		l.duplicates++
	} else {
		l.seenIDs[r.Header.Get("webhook-id")] = true
		l.webhooks[hook.Data.ID]++
		l.keyOf[hook.Data.ID] = hook.Data.Metadata[metadataKey]
	}
	w.WriteHeader(http.StatusNoContent)
}

// Result is the ledger's verdict. Orphans are jobs that a submission
// without an Idempotency-Key stored in an attempt with an unclear outcome
// (no answer, or 503 "unavailable"; the client then tried again): they are
// delivered, but the client never knew them. More of them for one
// submission than it had such attempts would be a job stored after a clear
// refusal, and count as unexpected.
type Result struct {
	Accepted, Delivered, Lost, Unexpected, Orphans, Duplicates, BadSignatures, SplitKeys int
	Answers                                                                              map[int]int
}

// OK is the promise: nothing lost or unexpected, every signature good, no
// key that made two jobs. Duplicates are allowed and reported.
func (r Result) OK() bool {
	return r.Lost == 0 && r.Unexpected == 0 && r.BadSignatures == 0 && r.SplitKeys == 0
}

func (r Result) String() string {
	return fmt.Sprintf("accepted %d, delivered %d, lost %d, unexpected %d, orphans %d, duplicates %d, bad signatures %d, split keys %d, answers %v",
		r.Accepted, r.Delivered, r.Lost, r.Unexpected, r.Orphans, r.Duplicates, r.BadSignatures, r.SplitKeys, r.Answers)
}

// Result counts what the ledger holds now.
func (l *Ledger) Result() Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := Result{Accepted: len(l.accepted), Duplicates: l.duplicates, BadSignatures: l.badSigs, SplitKeys: l.splitKeys, Answers: map[int]int{}}
	ids := map[string]bool{}
	for _, id := range l.accepted {
		ids[id] = true
		if l.webhooks[id] > 0 {
			r.Delivered++
		} else {
			r.Lost++
		}
	}
	orphans := map[string]int{}
	for id := range l.webhooks {
		if ids[id] {
			continue
		}
		key := l.keyOf[id]
		if orphans[key] < l.unclear[key] {
			orphans[key]++
			r.Orphans++
		} else {
			r.Unexpected++
		}
	}
	for k, v := range l.statuses {
		r.Answers[k] = v
	}
	return r
}

// Drain waits until nothing accepted is missing, or timeout, and returns the
// result.
func (l *Ledger) Drain(timeout time.Duration) Result {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && l.Result().Lost > 0 {
		time.Sleep(500 * time.Millisecond)
	}
	return l.Result()
}

// Load submits echo jobs at rate per second to intake at baseURL, each
// with its own ledger key in its metadata, retried until it has a clear
// answer (202; 503 and 429 mean try again). Submissions go in fours, at
// the same moment: one sends its key as its Idempotency-Key; the other
// three send none (so that two of them can share a job batch), and an
// attempt of theirs that got no answer may have stored a job (an orphan). It stops when ctx
// ends; the returned wait blocks until every submission is done and
// reports unexpected answers.
func (l *Ledger) Load(ctx context.Context, baseURL, apiKey, callback string, rate int) (wait func() error) {
	client := &http.Client{Timeout: 5 * time.Second}
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var firstErr error
	fail := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
	}
	prefix := fmt.Sprintf("ledger-%d-", time.Now().UnixNano())
	submit := func(key string, idempotent bool) {
		body := fmt.Appendf(nil, `{"type":"echo","payload":{"key":%q},"metadata":{%q:%q},"callback_url":%q}`, key, metadataKey, key, callback)
		for range 600 {
			req, _ := http.NewRequest(http.MethodPost, baseURL+"/v1/jobs", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+apiKey)
			req.Header.Set("Content-Type", "application/json")
			if idempotent {
				req.Header.Set("Idempotency-Key", key)
			}
			resp, err := client.Do(req)
			var out map[string]any
			if err == nil {
				_ = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
			}
			problem, _ := out["type"].(string)
			if !idempotent && (err != nil || (resp.StatusCode == http.StatusServiceUnavailable && problem == "urn:hookstream:problem:unavailable")) {
				l.mu.Lock()
				l.unclear[key]++
				l.mu.Unlock()
			}
			if err == nil {
				l.Answered(resp.StatusCode)
				switch resp.StatusCode {
				case http.StatusAccepted:
					id, _ := out["id"].(string)
					l.Accept(key, id)
					return
				case http.StatusServiceUnavailable, http.StatusTooManyRequests:
				default:
					fail(fmt.Errorf("key %s: unexpected answer %d %v", key, resp.StatusCode, out))
					return
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		fail(fmt.Errorf("key %s never got a clear answer", key))
	}
	const group = 4
	interval := group * time.Second / time.Duration(max(rate, 1))
	wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				for j := range group {
					key := prefix + fmt.Sprint(i*group+j)
					wg.Go(func() { submit(key, j == 0) })
				}
			}
		}
	})
	return func() error {
		wg.Wait()
		return firstErr
	}
}

// SigningSecret fetches the tenant's callback signing secret.
func SigningSecret(baseURL, apiKey string) (string, error) {
	req, _ := http.NewRequest(http.MethodGet, baseURL+"/v1/signing-secret", nil)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var sec struct {
		Secret string `json:"secret"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&sec); err != nil || sec.Secret == "" {
		return "", fmt.Errorf("signing secret: status %d", resp.StatusCode)
	}
	return sec.Secret, nil
}
