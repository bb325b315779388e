package intake

import (
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

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

// Numbers with huge exponents are compared in time linear in their text:
// as exact rationals, 1e999999 was a million digits, and a 361-byte request
// held intake for seconds (found by review). No wall-clock bound here: the
// allocations tell.
func TestSameJSONHugeExponents(t *testing.T) { // not parallel: it counts the process's allocations
	a := []byte("[" + strings.Repeat("1e999999,", 40) + "1]")
	b := []byte("[" + strings.Repeat("1E999999,", 40) + "1]")
	require.True(t, sameJSON(a, b))
	allocated := testing.AllocsPerRun(3, func() { sameJSON(a, b) })
	require.Less(t, allocated, 1000.0)
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	before := m.TotalAlloc
	sameJSON(a, b)
	runtime.ReadMemStats(&m)
	require.Less(t, m.TotalAlloc-before, uint64(1<<20), "bytes allocated to compare 400 bytes")
}

func TestSameJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a, b string
		want bool
	}{
		{name: "spacing and order", a: `{"a":1,"b":[1,2]}`, b: ` { "b" : [1, 2], "a" : 1 } `, want: true},
		{name: "1.0 is 1", a: `{"v":1}`, b: `{"v":1.0}`, want: true},
		{name: "escapes", a: `"é"`, b: `"\u00e9"`, want: true},
		{name: "large numbers exactly", a: `12345678901234567890`, b: `12345678901234567891`, want: false},
		{name: "2^53+1", a: `9007199254740992`, b: `9007199254740993`, want: false},
		{name: "beyond float64", a: `1e400`, b: ` 1E400`, want: true},
		{name: "other value", a: `{"v":1}`, b: `{"v":2}`, want: false},
		{name: "a number is not its string", a: `{"v":1}`, b: `{"v":"1"}`, want: false},
		{name: "zeros and exponents", a: `[0.00250, -0, 100, 1.5e3]`, b: `[25e-4, 0, 1e2, 1500]`, want: true},
		{name: "sign", a: `-1`, b: `1`, want: false},
		{name: "exponent beyond int64", a: `1e99999999999999999999`, b: `1e99999999999999999999`, want: true},
		{name: "exponent beyond 10^18, written otherwise", a: `1e99999999999999999999`, b: `10e99999999999999999998`, want: false},
		{name: "zero with an exponent beyond int64", a: `0e99999999999999999999`, b: `0`, want: true},
		{name: "exponents", a: `[1E+5, 1e-0, 0.1, 1e01]`, b: `[100000, 1, 1e-1, 10]`, want: true},
		{name: "not JSON", a: `{`, b: `{ `, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, sameJSON([]byte(tt.a), []byte(tt.b)))
		})
	}
}
