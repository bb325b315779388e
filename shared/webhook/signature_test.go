package webhook_test

import (
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/webhook"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// vector is one pinned signature: the inputs and the header hookstream sends.
type vector struct {
	Name      string   `json:"name"`
	Secrets   []string `json:"secrets"`
	ID        string   `json:"id"`
	Timestamp int64    `json:"timestamp"`
	Body      string   `json:"body"`
	Signature string   `json:"signature"`
}

var vectorInputs = []vector{
	{Name: "spec example", Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, ID: "msg_p5jXN8AQM9LWM0D4loKWxJek", Timestamp: 1614265330, Body: `{"test": 2432232314}`},
	{Name: "job event", Secrets: []string{"whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="}, ID: "msg_01", Timestamp: 1700000000, Body: `{"type":"job.succeeded","timestamp":"2023-11-14T22:13:20Z","data":{"id":"job_1","status":"succeeded"}}`},
	{Name: "rotation, two secrets", Secrets: []string{"whsec_bmV3LW5ldy1uZXctbmV3LW5ldy1uZXctbmV3LW5ldy0=", "whsec_b2xkLW9sZC1vbGQtb2xkLW9sZC1vbGQtb2xkLW9sZC0="}, ID: "msg_rot", Timestamp: 1700000001, Body: `{}`},
	{Name: "unicode body", Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, ID: "msg_ü", Timestamp: 0, Body: `{"name":"Zoë ✓"}`},
}

func sign(t *testing.T, v vector) string {
	t.Helper()
	keys := make([][]byte, len(v.Secrets))
	for i, s := range v.Secrets {
		key, err := webhook.ParseSecret(s)
		require.NoError(t, err)
		keys[i] = key
	}
	return webhook.SignatureHeader(keys, v.ID, time.Unix(v.Timestamp, 0), []byte(v.Body))
}

// TestGoldenVectors pins the signatures: a change to signing that alters any
// byte fails here. Regenerate with `task golden` (go test -update).
func TestGoldenVectors(t *testing.T) {
	t.Parallel()
	path := filepath.Join("testdata", "signatures.json")
	if *update {
		out := make([]vector, len(vectorInputs))
		for i, v := range vectorInputs {
			v.Signature = sign(t, v)
			out[i] = v
		}
		data, err := json.MarshalIndent(out, "", "  ")
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, append(data, '\n'), 0o644))
	}
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var golden []vector
	require.NoError(t, json.Unmarshal(data, &golden))
	require.Len(t, golden, len(vectorInputs), "golden file is stale: run task golden")
	for i, want := range golden {
		in := vectorInputs[i]
		in.Signature = want.Signature
		require.Equal(t, want, in, "golden inputs are stale: run task golden")
		require.Equal(t, want.Signature, sign(t, in), want.Name)
	}
	// The first vector is the Standard Webhooks spec's own example.
	require.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", golden[0].Signature)
}

// TestStandardWebhooksLibraryAccepts cross-checks with the reference Go
// verifier: every secret of a rotation must verify on its own.
func TestStandardWebhooksLibraryAccepts(t *testing.T) {
	t.Parallel()
	for _, v := range vectorInputs {
		now := time.Now()
		keys := make([][]byte, len(v.Secrets))
		for i, s := range v.Secrets {
			keys[i], _ = webhook.ParseSecret(s)
		}
		h := http.Header{}
		webhook.SetHeaders(h, keys, v.ID, now, []byte(v.Body))
		for _, s := range v.Secrets {
			wh, err := standardwebhooks.NewWebhook(s)
			require.NoError(t, err)
			require.NoError(t, wh.Verify([]byte(v.Body), h), v.Name)
			require.NoError(t, webhook.Verify(s, h, []byte(v.Body), now, webhook.DefaultTolerance), v.Name)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	secret, err := webhook.NewSecret()
	require.NoError(t, err)
	other, err := webhook.NewSecret()
	require.NoError(t, err)
	key, _ := webhook.ParseSecret(secret)
	now := time.Unix(1700000000, 0)
	body := []byte(`{"a":1}`)
	signed := func() http.Header {
		h := http.Header{}
		webhook.SetHeaders(h, [][]byte{key}, "msg_1", now, body)
		return h
	}
	tests := []struct {
		name    string
		secret  string
		header  func() http.Header
		body    []byte
		now     time.Time
		wantErr error
	}{
		{name: "other secret", secret: other, header: signed, body: body, now: now, wantErr: webhook.ErrNoMatchingSigner},
		{name: "tampered body", secret: secret, header: signed, body: []byte(`{"a":2}`), now: now, wantErr: webhook.ErrNoMatchingSigner},
		{name: "too old", secret: secret, header: signed, body: body, now: now.Add(6 * time.Minute), wantErr: webhook.ErrTimestampTooFar},
		{name: "missing id", secret: secret, header: func() http.Header { h := signed(); h.Del(webhook.HeaderID); return h }, body: body, now: now, wantErr: webhook.ErrMissingHeaders},
		{name: "bad timestamp", secret: secret, header: func() http.Header { h := signed(); h.Set(webhook.HeaderTimestamp, "x"); return h }, body: body, now: now, wantErr: webhook.ErrBadTimestamp},
		{name: "bad secret", secret: "whsec_short", header: signed, body: body, now: now, wantErr: webhook.ErrBadSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.ErrorIs(t, webhook.Verify(tt.secret, tt.header(), tt.body, tt.now, webhook.DefaultTolerance), tt.wantErr)
		})
	}
}

func TestParseSecret(t *testing.T) {
	t.Parallel()
	s, err := webhook.NewSecret()
	require.NoError(t, err)
	key, err := webhook.ParseSecret(s)
	require.NoError(t, err)
	require.Len(t, key, webhook.DefaultSecretBytes)
	for _, bad := range []string{"", "whsec_", "sk_abc", "whsec_!!!", "whsec_" + "AAAA"} {
		_, err := webhook.ParseSecret(bad)
		require.ErrorIs(t, err, webhook.ErrBadSecret, bad)
	}
}

// FuzzSignVerify checks that what Sign produces always verifies, with our
// verifier and the reference library, and that any change of the body fails.
func FuzzSignVerify(f *testing.F) {
	f.Add([]byte("0123456789abcdef01234567"), "msg_1", int64(1700000000), []byte(`{"a":1}`))
	f.Fuzz(func(t *testing.T, key []byte, id string, unix int64, body []byte) {
		if len(key) < webhook.MinSecretBytes || len(key) > webhook.MaxSecretBytes || id == "" || unix < 0 || unix > 1<<40 {
			return
		}
		for _, r := range id {
			if r < 0x21 || r > 0x7e { // header values: visible ASCII
				return
			}
		}
		now := time.Unix(unix, 0)
		secret := webhook.SecretPrefix + base64Std(key)
		h := http.Header{}
		webhook.SetHeaders(h, [][]byte{key}, id, now, body)
		if err := webhook.Verify(secret, h, body, now, webhook.DefaultTolerance); err != nil {
			t.Fatalf("verify own signature: %v", err)
		}
		wh, _ := standardwebhooks.NewWebhookRaw(key)
		if err := wh.VerifyIgnoringTimestamp(body, h); err != nil {
			t.Fatalf("reference library rejects: %v", err)
		}
		if err := webhook.Verify(secret, h, append(body, 'x'), now, webhook.DefaultTolerance); err == nil {
			t.Fatal("changed body verified")
		}
	})
}

// FuzzVerify feeds arbitrary headers to the verifier: it must never panic.
func FuzzVerify(f *testing.F) {
	f.Add("msg_1", "1700000000", "v1,abc v2,def", []byte("{}"))
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(webhook.HeaderID, id)
		h.Set(webhook.HeaderTimestamp, ts)
		h.Set(webhook.HeaderSignature, sig)
		_ = webhook.Verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", h, body, time.Unix(1700000000, 0), webhook.DefaultTolerance)
	})
}

func BenchmarkSignatureHeader(b *testing.B) {
	key := make([]byte, webhook.DefaultSecretBytes)
	body := []byte(`{"type":"job.succeeded","timestamp":"2026-11-23T12:00:00Z","data":{"id":"job_0123456789abcdefghijklmnop","type":"echo","status":"succeeded","attempts":1,"result":{"n":1}}}`)
	now := time.Unix(1700000000, 0)
	b.ReportAllocs()
	for b.Loop() {
		_ = webhook.SignatureHeader([][]byte{key}, "msg_0123456789abcdefghijklmnop", now, body)
	}
}
