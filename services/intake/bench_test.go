package intake_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hookstream/hookstream/services/intake"
	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/natstest"
	"github.com/hookstream/hookstream/shared/secretbox"
	"github.com/hookstream/hookstream/shared/ssrf"
)

// BenchmarkSubmitJob measures POST /v1/jobs through the handler, with the
// job (an echo job without an Idempotency-Key) written as its message alone
// to an in-process JetStream (interval sync), 64 requests at once, in job
// batches (as `hookstream serve` does) and a message per job: its
// allocations per request are the request path's, the embedded
// nats-server's included.
func BenchmarkSubmitJob(b *testing.B) {
	benchmarkJobBatches(b, natstest.Start, false)
}

// BenchmarkSubmitJobSynced measures the same with every write synced to
// disk, with group commits and job batches and without: the jobs a second
// that a disk sync per message allows, and what sharing it gives.
func BenchmarkSubmitJobSynced(b *testing.B) {
	benchmarkJobBatches(b, natstest.StartSynced, true)
}

func benchmarkJobBatches(b *testing.B, start func(testing.TB) *natstest.Server, groupCommit bool) {
	for _, batches := range []bool{true, false} {
		name := "job batches"
		if !batches {
			name = "a message per job"
		}
		b.Run(name, func(b *testing.B) {
			b.SetParallelism(64 / runtime.GOMAXPROCS(0))
			benchmarkSubmitJob(b, start(b), groupCommit && batches, batches)
		})
	}
}

func benchmarkSubmitJob(b *testing.B, ns *natstest.Server, groupCommit, batches bool) {
	nc, js := ns.Connect(b)
	ctx := context.Background()
	if err := bus.Ensure(ctx, js, bus.Topology{}); err != nil {
		b.Fatal(err)
	}
	box, err := secretbox.New(make([]byte, secretbox.KeySize))
	if err != nil {
		b.Fatal(err)
	}
	svc, err := intake.New(ctx, intake.Config{
		APIKeys:        []intake.APIKey{{Tenant: "acme", Key: keyAcme}},
		JobTypes:       []string{"echo"},
		Guard:          ssrf.NewGuard(nil),
		Box:            box,
		PublishTimeout: 5 * time.Second,
		GroupCommit:    groupCommit,
		JobBatches:     batches,
	}, nc, js, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	h := svc.Handler()
	const body = `{"type":"echo","payload":{"order":"ord_1234","amount":4200},"callback_url":"https://example.com/hooks"}`
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/v1/jobs", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+keyAcme)
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusAccepted {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
	})
}
