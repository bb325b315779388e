package contract_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/contract"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var (
	t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	t1 = t0.Add(1500 * time.Millisecond)
)

// examples are one value of every message type of the wire contract.
var examples = map[string]any{
	"job_request": contract.JobRequest{
		ID: "job_0123456789abcdefghijklmnop", Payload: json.RawMessage(`{"image":"cat.png"}`),
		CallbackURL: "https://example.com/hooks", Metadata: map[string]string{"order": "42"},
		RequestHash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
	},
	// What a processor writes again for a job of a batch that is retried.
	"job_request_retried": contract.JobRequest{
		ID: "job_s123_0123456789abcdefghijklmnop", CreatedAt: &t0, Payload: json.RawMessage(`{"image":"cat.png"}`), NotBefore: &t1,
	},
	// What intake publishes for a job whose record the processor writes.
	"job_request_from_intake": contract.JobRequest{
		Nonce: "0123456789abcdefghijklmnop", CreatedAt: &t0, Payload: json.RawMessage(`{"image":"cat.png"}`),
		CallbackURL: "https://example.com/hooks", Metadata: map[string]string{"order": "42"},
	},
	// What intake publishes for jobs that waited for the same subject.
	"job_batch_from_intake": contract.JobBatch{Jobs: []contract.JobRequest{
		{Nonce: "0123456789abcdefghijklmnop", CreatedAt: &t0, Payload: json.RawMessage(`{"image":"cat.png"}`)},
		{Nonce: "123456789abcdefghijklmnopq", CreatedAt: &t0, Payload: json.RawMessage(`{"image":"dog.png"}`), CallbackURL: "https://example.com/hooks"},
	}},
	"job": contract.Job{
		ID: "job_0123456789abcdefghijklmnop", Type: "echo", Status: contract.StatusSucceeded, Attempts: 1,
		Metadata: map[string]string{"order": "42"}, Progress: json.RawMessage(`{"done":2,"total":2}`), Result: json.RawMessage(`{"ok":true}`),
		CreatedAt: t0, UpdatedAt: t1, CompletedAt: &t1, ExpiresAt: t0.Add(7 * 24 * time.Hour),
	},
	"job_record": contract.JobRecord{
		Job: contract.Job{
			ID: "job_0123456789abcdefghijklmnop", Type: "echo", Status: contract.StatusQueued,
			CreatedAt: t0, UpdatedAt: t0, ExpiresAt: t0.Add(7 * 24 * time.Hour),
		},
		Tenant: "acme", Payload: json.RawMessage(`{"image":"cat.png"}`), CallbackURL: "https://example.com/hooks",
		RequestHash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
	},
	"delivery": contract.Delivery{
		ID: "msg_0123456789abcdefghijklmnop", Tenant: "acme", EventID: "evt_1", EventType: "job.succeeded",
		JobID: "job_0123456789abcdefghijklmnop", URL: "https://example.com/hooks",
		Body: json.RawMessage(`{"type":"job.succeeded","timestamp":"2026-11-23T12:00:01.5Z","data":{}}`), CreatedAt: t0,
		Attempts: []contract.Attempt{{At: t0, StatusCode: 500, LatencyMS: 12, Error: "", Response: "oops"}},
	},
	"delivery_record": contract.DeliveryRecord{
		ID: "msg_0123456789abcdefghijklmnop", EventID: "evt_1", EventType: "invoice.paid", EndpointID: "ep_01", URL: "https://example.com/hooks",
		Status: contract.DeliveryPending, Attempts: []contract.Attempt{{At: t0, LatencyMS: 15000, Error: "timeout"}},
		NextAttemptAt: &t1, CreatedAt: t0, UpdatedAt: t0,
	},
	"webhook_body": contract.WebhookBody{Type: "invoice.paid", Timestamp: t1, Data: json.RawMessage(`{"invoice":"in_1"}`)},
}

// TestGolden pins the JSON of every contract type. A change here is a
// contract change: bump contract.Version and say so in the README.
// Regenerate with `task golden`.
func TestGolden(t *testing.T) {
	t.Parallel()
	for name, v := range examples {
		got, err := json.MarshalIndent(v, "", "  ")
		require.NoError(t, err)
		path := filepath.Join("testdata", name+".json")
		if *update {
			require.NoError(t, os.WriteFile(path, append(got, '\n'), 0o644))
		}
		want, err := os.ReadFile(path)
		require.NoError(t, err, "missing golden file: run task golden")
		require.JSONEq(t, string(want), string(got), "%s changed: a contract change (run task golden, bump contract.Version)", name)
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	require.NoError(t, err)
	require.Len(t, files, len(examples), "stale golden files in testdata")
}

func TestSubjects(t *testing.T) {
	t.Parallel()
	require.Equal(t, "hookstream.jobs.acme.resize", contract.JobSubject("acme", "resize"))
	require.Equal(t, "hookstream.events.acme.invoice.paid", contract.EventSubject("acme", "invoice.paid"))
	tests := []struct {
		name       string
		givenSubj  string
		wantTenant string
		wantType   string
		wantErr    bool
	}{
		{name: "event with dots", givenSubj: "hookstream.events.acme.invoice.paid", wantTenant: "acme", wantType: "invoice.paid"},
		{name: "plain", givenSubj: "hookstream.events.t-1.ping", wantTenant: "t-1", wantType: "ping"},
		{name: "no type", givenSubj: "hookstream.events.acme", wantErr: true},
		{name: "other root", givenSubj: "hookstream.jobs.acme.x", wantErr: true},
		{name: "empty part", givenSubj: "hookstream.events.acme.invoice..paid", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tenant, typ, err := contract.ParseEventSubject(tt.givenSubj)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantTenant, tenant)
			require.Equal(t, tt.wantType, typ)
		})
	}
}

// A batch's subject is read by no consumer of one job type's subjects, and
// parses back only from its own spelling.
func TestJobBatchSubject(t *testing.T) {
	t.Parallel()
	subject := contract.JobBatchSubject("acme", "image.resize")
	require.Equal(t, "hookstream.jobs.acme.$batch.image.resize", subject)
	tenant, jobType, err := contract.ParseJobBatchSubject(subject)
	require.NoError(t, err)
	require.Equal(t, "acme", tenant)
	require.Equal(t, "image.resize", jobType)
	_, _, err = contract.ParseJobSubject(subject)
	require.Error(t, err, "not one job's subject")
	require.False(t, contract.ValidType(contract.JobBatchToken+".image.resize"), "no type's filter matches a batch")
	for _, bad := range []string{
		"hookstream.jobs.acme.image.resize",
		"hookstream.jobs.$batch.acme.resize",
		"hookstream.jobs.acme.$batch.",
		"hookstream.jobs.acme.$batch.$batch.x",
		"hookstream.events.acme.$batch.x",
	} {
		_, _, err := contract.ParseJobBatchSubject(bad)
		require.Error(t, err, bad)
	}
}

func FuzzParseEventSubject(f *testing.F) {
	f.Add("hookstream.events.acme.invoice.paid")
	f.Add("hookstream.events..")
	f.Fuzz(func(t *testing.T, subject string) {
		tenant, typ, err := contract.ParseEventSubject(subject)
		if err != nil {
			return
		}
		if contract.EventSubject(tenant, typ) != subject {
			t.Fatalf("round trip of %q gave %q", subject, contract.EventSubject(tenant, typ))
		}
	})
}

func FuzzDecodeJobRequest(f *testing.F) {
	f.Add([]byte(`{"id":"job_1","payload":{"a":1},"callback_url":"https://x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var req contract.JobRequest
		if json.Unmarshal(data, &req) != nil {
			return
		}
		if _, err := json.Marshal(req); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
	})
}

// Ids made from a stream sequence read back; others are not such ids.
func TestSequenceJobID(t *testing.T) {
	t.Parallel()
	id := contract.SequenceJobID(42, "n0nce")
	if id != "job_s42_n0nce" {
		t.Fatalf("SequenceJobID = %q", id)
	}
	seq, nonce, ok := contract.ParseSequenceJobID(id)
	if !ok || seq != 42 || nonce != "n0nce" {
		t.Fatalf("ParseSequenceJobID(%q) = %d, %q, %v", id, seq, nonce, ok)
	}
	for _, bad := range []string{"job_s42", "job_s42_", "job_s042_n0nce", "job_s+42_n0nce", "job_sx_y", "job_abc", "job_s42_a.b", "job_s42_a*", "evt_s42_x", ""} {
		if _, _, ok := contract.ParseSequenceJobID(bad); ok {
			t.Errorf("ParseSequenceJobID(%q) accepted", bad)
		}
	}
}

// A record's key names its target and its owner, so that a subject filter
// finds an endpoint's records; OldLogKey is its key of the layout before.
func TestLogKey(t *testing.T) {
	t.Parallel()
	d := contract.Delivery{ID: "msg_1", Tenant: "acme", EventID: "evt_1", EndpointID: "ep_1"}
	require.Equal(t, "acme.ep_1.evt_1.msg_1", d.LogKey())
	d.JobID, d.EndpointID = "job_1", ""
	require.Equal(t, "acme.cb.job_1.msg_1", d.LogKey())
	d.EventID, d.JobID, d.EndpointID = "a.b", "", "ep.x"
	require.Equal(t, "acme."+contract.KeyToken("ep.x")+"."+contract.KeyToken("a.b")+".msg_1", d.LogKey())

	require.Equal(t, "acme."+contract.KeyToken("a.b")+".msg_1", d.OldLogKey())
}
