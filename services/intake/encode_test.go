package intake

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/hookstream/hookstream/shared/contract"
)

// accepted is the 202 body of POST /v1/jobs as encoding/json wrote it
// before appendAccepted.
type accepted struct {
	ID        string    `json:"id"`
	Status    string    `json:"status"`
	Type      string    `json:"type"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Links     links     `json:"links"`
}

type links struct {
	Self string `json:"self"`
}

// encodeCases are strings that take every path of appendJSONString.
var encodeCases = []string{
	"", "echo", "job_s2279002941993255010_ue7rk069u642h93eesst53dbtc", "/v1/jobs/job_1",
	`quote"`, `back\slash`, "<script>&amp;", "tab\tnew\nline\r", "\x00\x01\x1f\x7f",
	"é ü 日本", "line\u2028sep\u2029", "bad \xff utf-8 \xc3", "https://example.com/cb?a=1&b=<2>",
}

// appendJSONString writes the bytes encoding/json writes, for any string.
func TestAppendJSONString(t *testing.T) {
	t.Parallel()
	for _, s := range encodeCases {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	}
}

// FuzzAppendJSONString holds appendJSONString to encoding/json's bytes.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range encodeCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendJSONString([]byte("x"), s); string(got[1:]) != string(want) {
			t.Fatalf("appendJSONString(%q) = %s, want %s", s, got[1:], want)
		}
	})
}

// The hand-written 202 body is byte for byte what encoding/json writes
// for accepted.
func TestAppendAccepted(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 11, 30, 19, 22, 46, 564421358, time.UTC)
	for _, tc := range []struct {
		name         string
		givenID      string
		givenType    string
		givenCreated time.Time
	}{
		{"sequence id", "job_s2279002941993255010_ue7rk069u642h93eesst53dbtc", "echo", created},
		{"whole second", "job_01", "resize.image", created.Truncate(time.Second)},
		{"characters to escape", `job_"<&>`, "t\u2028", created.Add(time.Millisecond)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			job := contract.JobRecord{Job: contract.Job{
				ID: tc.givenID, Type: tc.givenType, Status: contract.StatusQueued,
				CreatedAt: tc.givenCreated, ExpiresAt: tc.givenCreated.Add(7 * 24 * time.Hour),
			}}
			self := "/v1/jobs/" + job.ID
			want, err := json.Marshal(accepted{
				ID: job.ID, Status: job.Status, Type: job.Type,
				CreatedAt: job.CreatedAt, ExpiresAt: job.ExpiresAt, Links: links{Self: self},
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := appendAccepted(nil, job, self); string(got) != string(want) {
				t.Errorf("202 body\n got %s\nwant %s", got, want)
			}
		})
	}
}

// A job message written by hand decodes to the contract.JobRequest it
// stands for, and, for a payload without characters encoding/json escapes,
// has its exact bytes.
func TestAppendJobRequest(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 11, 30, 19, 22, 46, 564421358, time.UTC)
	for _, tc := range []struct {
		name      string
		givenRec  contract.JobRecord
		wantBytes bool // the same bytes as encoding/json
	}{
		{"payload only", contract.JobRecord{Payload: json.RawMessage(`{"order":"ord_1234","amount":4200}`)}, true},
		{"no payload", contract.JobRecord{}, true},
		{"null payload", contract.JobRecord{Payload: json.RawMessage(`null`)}, true},
		{"callback and metadata", contract.JobRecord{
			Payload: json.RawMessage(`[1,"two",{"3":null}]`), CallbackURL: "https://example.com/cb?a=1&b=2",
			Job: contract.Job{Metadata: map[string]string{"z": "last", "a": "first <1>", "m": "é"}},
		}, true},
		{"payload with html characters", contract.JobRecord{Payload: json.RawMessage(`{"html":"<b>&</b>"}`)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := tc.givenRec
			rec.CreatedAt = created
			got := appendJobRequest(nil, "ue7rk069u642h93eesst53dbtc", rec)
			want := contract.JobRequest{
				Nonce: "ue7rk069u642h93eesst53dbtc", CreatedAt: &created,
				Payload: rec.Payload, CallbackURL: rec.CallbackURL, Metadata: rec.Metadata,
			}
			wantData, err := json.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantBytes && string(got) != string(wantData) {
				t.Errorf("job message\n got %s\nwant %s", got, wantData)
			}
			var decoded, wantDecoded contract.JobRequest
			if err := json.Unmarshal(got, &decoded); err != nil {
				t.Fatalf("job message %s does not decode: %v", got, err)
			}
			if err := json.Unmarshal(wantData, &wantDecoded); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(jsonValue(t, decoded.Payload), jsonValue(t, wantDecoded.Payload)) {
				t.Errorf("payload %s, want %s", decoded.Payload, wantDecoded.Payload)
			}
			decoded.Payload, wantDecoded.Payload = nil, nil
			if !reflect.DeepEqual(decoded, wantDecoded) {
				t.Errorf("job message decodes to %+v, want %+v", decoded, wantDecoded)
			}
		})
	}
}

// jsonValue is the value a JSON document stands for (nil for none).
func jsonValue(t *testing.T, data json.RawMessage) any {
	t.Helper()
	if data == nil {
		return nil
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}
