package intake

import (
	"errors"
	"strings"
	"testing"
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
