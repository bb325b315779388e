package intake

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hookstream/hookstream/shared/ssrf"
)

func TestCheckDepthIgnoresBracketsInStrings(t *testing.T) {
	t.Parallel()
	if err := checkDepth([]byte(`{"a":"[[[[[[[[[[{{{{{{{\"]]"}`), 3); err != nil {
		t.Fatalf("brackets inside a string counted: %v", err)
	}
	if err := checkDepth([]byte(strings.Repeat("[", 4)+strings.Repeat("]", 4)), 3); err == nil {
		t.Fatal("depth 4 passed a limit of 3")
	}
}

// FuzzDecodeJob feeds arbitrary bodies to the request decoder: it must never
// panic, and every refusal is a 400 or a 422.
func FuzzDecodeJob(f *testing.F) {
	for _, s := range []string{`{"type":"echo","payload":{"a":[1,2,{"b":null}]}}`, `{"type":`, `[]`, `{} {}`, `"\u0000"`, strings.Repeat("[", 40)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req createJobRequest
		err := decodeJSON(body, DefaultMaxJSONDepth, &req)
		if err == nil {
			return
		}
		var ae *apiError
		if !errors.As(err, &ae) || (ae.status != 400 && ae.status != 422) {
			t.Fatalf("decode error %v is not a 400 or 422", err)
		}
	})
}

func BenchmarkDecodeAndValidateJob(b *testing.B) {
	body := []byte(`{"type":"echo","payload":{"order":42,"items":[{"sku":"a-1","qty":2},{"sku":"b-7","qty":1}]},"callback_url":"https://hooks.example.com/cb","metadata":{"customer":"c_1"}}`)
	s := &Service{cfg: Config{JobTypes: []string{"echo"}, Guard: ssrf.NewGuard(nil)}, jobTypes: map[string]bool{"echo": true}}
	b.ReportAllocs()
	for b.Loop() {
		var req createJobRequest
		if err := decodeJSON(body, DefaultMaxJSONDepth, &req); err != nil {
			b.Fatal(err)
		}
		if err := s.validateJob(&req); err != nil {
			b.Fatal(err)
		}
		_ = req.hash()
	}
}

// A payload is stored compact: whitespace between tokens goes, whitespace
// in strings stays, and a compact payload is kept as it is.
func TestValidateJobCompactsPayload(t *testing.T) {
	t.Parallel()
	s := &Service{cfg: Config{JobTypes: []string{"echo"}, Guard: ssrf.NewGuard(nil)}, jobTypes: map[string]bool{"echo": true}}
	for given, want := range map[string]string{
		"{ \"a\" : [1,\t2],\r\n \"b\":\"x y\" }": `{"a":[1,2],"b":"x y"}`,
		`{"a":[1,2],"b":"x\ty"}`:                 `{"a":[1,2],"b":"x\ty"}`,
		`"plain"`:                                `"plain"`,
	} {
		req := createJobRequest{Type: "echo", Payload: json.RawMessage(given)}
		if err := s.validateJob(&req); err != nil {
			t.Fatal(err)
		}
		if string(req.Payload) != want {
			t.Errorf("payload %q stored as %q, want %q", given, req.Payload, want)
		}
	}
}
