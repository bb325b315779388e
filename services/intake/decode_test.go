package intake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

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
		{name: "nested order", a: `{"a":{"x":[{"p":1,"q":null}],"y":true},"b":"s"}`, b: `{"b":"s","a":{"y":true,"x":[{"q":null,"p":1.0}]}}`, want: true},
		{name: "values swapped between members", a: `{"a":1,"b":2}`, b: `{"a":2,"b":1}`, want: false},
		{name: "null is not 0", a: `[null]`, b: `[0]`, want: false},
		{name: "false is not null", a: `[false]`, b: `[null]`, want: false},
		{name: "empty array is not empty object", a: `{"a":[]}`, b: `{"a":{}}`, want: false},
		{name: "nesting", a: `[1,[2]]`, b: `[[1],2]`, want: false},
		{name: "key and value", a: `{"a":"b"}`, b: `{"b":"a"}`, want: false},
		{name: "escaped quotes and backslashes", a: `["a\"b\\"]`, b: `["a\u0022b\u005c"]`, want: true},
		{name: "surrogate pair", a: `"\ud83d\ude00"`, b: `"😀"`, want: true},
		{name: "a string is not split differently", a: `["ab","c"]`, b: `["a","bc"]`, want: false},
		{name: "a member given twice is not compared", a: `{"a":1,"a":1}`, b: `{"a":1}`, want: false},
		{name: "members given twice in another order", a: `{"amount":1,"amount":2}`, b: `{"amount":2,"amount":1}`, want: false},
		{name: "a member given twice, deep", a: `[{"x":{"a":1,"a":2}}]`, b: `[{"x":{"a":2,"a":1}}]`, want: false},
		{name: "the same key in two objects", a: `[{"a":1},{"a":2}]`, b: `[ {"a":1}, {"a":2} ]`, want: true},
		{name: "exponent of 10^18", a: `1e1000000000000000000`, b: `10e999999999999999999`, want: true},
		// From the review of the fixes: a nested object's keys are its own.
		{name: "a nested object with its parent's key", a: `{"a":{"a":1}}`, b: `{"a": {"a":1}}`, want: true},
		{name: "nested names again", a: `{"children":[{"children":[]}],"b":0}`, b: `{"b":0, "children":[{"children":[]}]}`, want: true},
		{name: "a member given twice, one an object", a: `{"amount":{"v":1},"amount":2}`, b: `{"amount":2,"amount":{"v":1}}`, want: false},
		{name: "exponent beyond int64", a: `1e9223372036854775808`, b: `1e-9223372036854775808`, want: false},
		{name: "exponent beyond int64, written otherwise", a: `0.1e9223372036854775808`, b: `1e-9223372036854775809`, want: false},
		{name: "trailing data", a: `1`, b: `1 2`, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, sameJSON([]byte(tt.a), []byte(tt.b)))
		})
	}
}

// Comparing large values written otherwise takes room for neither value
// as a tree: two 1 MiB arrays of zeros took 221 MiB to compare (from the
// security review), and an object's members take a digest each.
func TestSameJSONLargeValuesInLittleRoom(t *testing.T) { // not parallel: it counts the process's allocations
	zeros := []byte("[" + strings.Repeat("0,", 500_000) + "0]")
	spaced := []byte("[ " + strings.Repeat("0, ", 500_000) + "0 ]")
	var keys strings.Builder
	for i := range 100_000 {
		fmt.Fprintf(&keys, `"k%d":0,`, i)
	}
	members := []byte("{" + keys.String() + `"last":0}`)
	tiny := []byte("{" + strings.Repeat(`"":0,`, 200_000) + `"":0}`) // the smallest members (given twice: not compared)
	for _, tt := range []struct {
		a, b []byte
		want bool
	}{
		{zeros, spaced, true},
		{members, []byte(strings.ReplaceAll(string(members), ":", ": ")), true},
		{tiny, []byte(strings.ReplaceAll(string(tiny), ",", ", ")), false},
	} {
		pair := [2][]byte{tt.a, tt.b}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		before := m.TotalAlloc
		require.Equal(t, tt.want, sameJSON(pair[0], pair[1]))
		runtime.ReadMemStats(&m)
		require.Less(t, m.TotalAlloc-before, uint64(32*len(pair[0])), "bytes allocated to compare two values of %d bytes (200 times that as trees)", len(pair[0]))
	}
}

// referenceSameJSON is sameJSON as it was: both values decoded as trees
// and compared, numbers as the old canonical form wrote them.
func referenceSameJSON(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	decode := func(data []byte) (any, bool) {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) != nil {
			return nil, false
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return nil, false
		}
		var exact func(any) any
		exact = func(v any) any {
			switch v := v.(type) {
			case json.Number:
				return referenceCanonicalNumber(string(v))
			case map[string]any:
				for k, x := range v {
					v[k] = exact(x)
				}
			case []any:
				for i, x := range v {
					v[i] = exact(x)
				}
			}
			return v
		}
		return exact(v), true
	}
	va, okA := decode(a)
	vb, okB := decode(b)
	return okA && okB && reflect.DeepEqual(va, vb)
}

// referenceNumber is a number's canonical form, of its own type so that it
// never equals the string of its digits.
type referenceNumber string

// referenceCanonicalNumber is the canonical form of a number as it was
// written with strings.
func referenceCanonicalNumber(n string) referenceNumber {
	text := n
	sign := ""
	if rest, ok := strings.CutPrefix(text, "-"); ok {
		sign, text = "-", rest
	}
	mantissa, exponent, _ := strings.Cut(strings.ToLower(text), "e")
	whole, frac, _ := strings.Cut(mantissa, ".")
	digits := strings.TrimLeft(whole+frac, "0")
	trimmed := strings.TrimRight(digits, "0")
	if trimmed == "" {
		return "0"
	}
	exp := int64(0)
	if exponent != "" {
		e, err := strconv.ParseInt(exponent, 10, 64)
		if err != nil || e > 1e18 || e < -1e18 {
			return referenceNumber("as written: " + n)
		}
		exp = e
	}
	exp += int64(len(digits) - len(trimmed) - len(frac))
	return referenceNumber(sign + trimmed + "e" + strconv.FormatInt(exp, 10))
}

// sameJSON agrees with decoding both values as trees, for values without a
// member given twice (which a tree keeps once, the last), and takes none
// with one for the same as another text; a value re-encoded by
// encoding/json (members sorted, other escapes) is the same value.
func FuzzSameJSON(f *testing.F) {
	for _, seed := range [][2]string{
		{`{"a":1,"b":[1,2]}`, `{"b":[1,2],"a":1.0}`}, {`"\u00e9"`, `"é"`}, {`[null,true,false]`, `[null, true, false]`},
		{`{"a":{"b":{}}}`, `{"a":{"b":[]}}`}, {`1e400`, `10e399`}, {`-0`, `0.0`}, {`"a\"b"`, `"a\u0022b"`},
		{`{"a":{"a":1}}`, `{"a": {"a":1}}`}, {`{"x":{"y":{"x":[{"y":0}]}}}`, `{"x":{"y":{"x":[{"y":0.0}]}}}`},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if hasDuplicateMembers(a) || hasDuplicateMembers(b) {
			if a != b && sameJSON([]byte(a), []byte(b)) {
				t.Fatalf("sameJSON(%q, %q) with a member given twice", a, b)
			}
			return
		}
		got, want := sameJSON([]byte(a), []byte(b)), referenceSameJSON([]byte(a), []byte(b))
		if got != want {
			t.Fatalf("sameJSON(%q, %q) = %v, decoding both as trees says %v", a, b, got, want)
		}
		var v any
		if json.Unmarshal([]byte(a), &v) == nil && utf8.ValidString(a) {
			dec := json.NewDecoder(strings.NewReader(a))
			dec.UseNumber()
			var exact any
			require.NoError(t, dec.Decode(&exact))
			again, err := json.Marshal(exact)
			require.NoError(t, err)
			if !sameJSON([]byte(a), again) {
				t.Fatalf("%q re-encoded as %q is not the same value", a, again)
			}
		}
	})
}

// hasDuplicateMembers tells whether some object in the JSON text data has
// a member given twice (or data is not JSON: nothing to compare).
func hasDuplicateMembers(data string) bool {
	dec := json.NewDecoder(strings.NewReader(data))
	var keys []map[string]bool // of the objects open, innermost last
	var inObject []bool        // of the containers open: whether an object, and expecting a key
	expectKey := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch tok := tok.(type) {
		case json.Delim:
			switch tok {
			case '{':
				keys = append(keys, map[string]bool{})
				inObject = append(inObject, true)
				expectKey = true
				continue
			case '[':
				inObject = append(inObject, false)
				expectKey = false
				continue
			case '}':
				keys = keys[:len(keys)-1]
				fallthrough
			case ']':
				inObject = inObject[:len(inObject)-1]
			}
		case string:
			if expectKey {
				if keys[len(keys)-1][tok] {
					return true
				}
				keys[len(keys)-1][tok] = true
				expectKey = false
				continue
			}
		}
		expectKey = len(inObject) > 0 && inObject[len(inObject)-1]
		if len(inObject) == 0 && !dec.More() {
			return false
		}
	}
}

// Random values whose nested objects reuse their ancestors' key names
// (never one key twice in an object) are the same value written compactly
// and indented: 5,761 of 200,000 were not, while a nested object's
// duplicate check took its ancestors' keys for its own.
func TestSameJSONRandomNestedValues(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	var value func(depth int) any
	value = func(depth int) any {
		switch k := rng.IntN(6); {
		case depth > 4 || k == 0:
			return rng.IntN(3)
		case k == 1:
			return []any{value(depth + 1), value(depth + 1)}
		case k == 2:
			return "s"
		default:
			obj := map[string]any{}
			for _, name := range []string{"a", "b", "c"}[:1+rng.IntN(3)] {
				obj[name] = value(depth + 1)
			}
			return obj
		}
	}
	for range 20_000 {
		v := value(0)
		compact, err := json.Marshal(v)
		require.NoError(t, err)
		indented, err := json.MarshalIndent(v, "", " ")
		require.NoError(t, err)
		require.True(t, sameJSON(compact, indented), "%s", compact)
	}
}
