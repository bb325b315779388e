package contract_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/hookstream/hookstream/shared/contract"
)

// BenchmarkWebhookEnvelope encodes the webhook body fan-out builds per event.
func BenchmarkWebhookEnvelope(b *testing.B) {
	data := json.RawMessage(`{"id":"job_0123456789abcdefghijklmnop","type":"echo","status":"succeeded","attempts":1,"result":{"n":1},"created_at":"2026-11-23T12:00:00Z"}`)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(contract.WebhookBody{Type: "job.succeeded", Timestamp: now, Data: data}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDeliveryID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = contract.DeliveryID("evt_0123456789abcdefghijklmnop_succeeded", "ep_0123456789abcdefghijklmnop")
	}
}
