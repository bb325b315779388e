package deliverylog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/deliverylog"
	"github.com/hookstream/hookstream/shared/natstest"
)

// A whole read of a tenant's log costs the records kept (GET
// /v1/deliveries reads back from the newest only as far as a page needs).
func BenchmarkReadTenantLog(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			_, js := natstest.Start(b).Connect(b)
			ctx := context.Background()
			require.NoError(b, bus.Ensure(ctx, js, bus.Topology{}))
			body := json.RawMessage(`{"type":"invoice.paid","timestamp":"2026-12-01T12:00:00Z","data":{"id":"inv_1","amount":1200,"currency":"eur","customer":"cus_123456"}}`)
			for i := range n {
				at := time.Now().UTC()
				rec := contract.DeliveryRecord{ID: fmt.Sprintf("msg_%d", i), EventID: fmt.Sprintf("evt_%d", i), EventType: "invoice.paid", EndpointID: "ep_1",
					URL: "https://example.com/hook", Status: contract.DeliverySucceeded, Body: body, CreatedAt: at, UpdatedAt: at,
					Attempts: []contract.Attempt{{At: at, StatusCode: 200, LatencyMS: 3, Response: "ok"}}}
				data, _ := json.Marshal(rec)
				_, err := js.PublishAsync(bus.KeySubject(contract.BucketDeliveries, fmt.Sprintf("acme.evt_%d.%s", i, rec.ID)), data)
				require.NoError(b, err)
				if i%1000 == 999 {
					<-js.PublishAsyncComplete()
				}
			}
			<-js.PublishAsyncComplete()
			b.ResetTimer()
			for b.Loop() {
				recs, err := deliverylog.Read(ctx, js, "acme.>", time.Time{}, nil, false)
				require.NoError(b, err)
				require.Len(b, recs, n)
			}
		})
	}
}
