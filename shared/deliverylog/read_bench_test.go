package deliverylog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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
			js := filledLog(b, n, "keys", func(_ int, d *contract.Delivery) { d.EndpointID = "ep_1" })
			for b.Loop() {
				recs, err := deliverylog.Read(context.Background(), js, deliverylog.Tenant("acme"), time.Time{}, nil, false)
				require.NoError(b, err)
				require.Len(b, recs, n)
			}
		})
	}
}

// Reading one endpoint's deliveries among a tenant's 100,000 (100
// endpoints, 1,000 each): by the endpoint in their keys, which nats-server
// matches itself ("keys": the log keeps no record from before keys named
// their target; "upgrading": it may, as for HOOKSTREAM_DELIVERY_RETENTION
// after the upgrade, so the read looks for them too), against the records
// written before keys named their endpoint, read whole and matched here
// ("scan": what every read by endpoint did then). "page" is the page of 50 that GET /v1/deliveries?endpoint= gives,
// looked for in the whole log (a page of an endpoint that had few
// deliveries lately); "none" that page for an endpoint without any.
func BenchmarkReadEndpointLog(b *testing.B) {
	const n, endpoints = 100_000, 100
	for _, layout := range []string{"keys", "upgrading", "scan"} {
		b.Run(layout, func(b *testing.B) {
			js := filledLog(b, n, layout, func(i int, d *contract.Delivery) { d.EndpointID = fmt.Sprintf("ep_%d", i%endpoints) })
			ctx := context.Background()
			require.Equal(b, layout == "keys", deliverylog.OldKeysGone(ctx, js))
			b.Run("all", func(b *testing.B) {
				for b.Loop() {
					recs, err := deliverylog.Read(ctx, js, deliverylog.Endpoint("acme", "ep_7"), time.Time{}, func(r *contract.DeliveryRecord) bool {
						return r.EndpointID == "ep_7"
					}, false)
					require.NoError(b, err)
					require.Len(b, recs, n/endpoints)
				}
			})
			for name, endpoint := range map[string]string{"page": "ep_7", "none": "ep_none"} {
				b.Run(name, func(b *testing.B) {
					for b.Loop() {
						recs, err := deliverylog.ReadNewest(ctx, js, deliverylog.Endpoint("acme", endpoint), time.Time{}, func(r *contract.DeliveryRecord) bool {
							return r.EndpointID == endpoint
						}, 51)
						require.NoError(b, err)
						require.Len(b, recs, map[string]int{"page": 51, "none": 0}[name])
					}
				})
			}
		})
	}
}

// filledLog is a log of n succeeded deliveries of tenant acme, msg_<i> of
// event evt_<i>, each as set makes it. layout is "keys" (a deployment that
// began with keys that name their target: MarkKeys on the empty log),
// "upgrading" (such keys, not marked) or "scan" (the keys from before).
func filledLog(b *testing.B, n int, layout string, set func(int, *contract.Delivery)) jetstream.JetStream {
	_, js := natstest.Start(b).Connect(b)
	require.NoError(b, bus.Ensure(context.Background(), js, bus.Topology{}))
	if layout == "keys" {
		require.NoError(b, deliverylog.MarkKeys(context.Background(), js))
	}
	body := json.RawMessage(`{"type":"invoice.paid","timestamp":"2026-12-01T12:00:00Z","data":{"id":"inv_1","amount":1200,"currency":"eur","customer":"cus_123456"}}`)
	for i := range n {
		at := time.Now().UTC()
		d := contract.Delivery{ID: fmt.Sprintf("msg_%d", i), Tenant: "acme", EventID: fmt.Sprintf("evt_%d", i)}
		set(i, &d)
		rec := contract.DeliveryRecord{ID: d.ID, EventID: d.EventID, EventType: "invoice.paid", EndpointID: d.EndpointID,
			URL: "https://example.com/hook", Status: contract.DeliverySucceeded, Body: body, CreatedAt: at, UpdatedAt: at,
			Attempts: []contract.Attempt{{At: at, StatusCode: 200, LatencyMS: 3, Response: "ok"}}}
		data, _ := json.Marshal(rec)
		key := d.LogKey()
		if layout == "scan" {
			key = d.OldLogKey()
		}
		_, err := js.PublishAsync(bus.KeySubject(contract.BucketDeliveries, key), data)
		require.NoError(b, err)
		if i%1000 == 999 {
			<-js.PublishAsyncComplete()
		}
	}
	<-js.PublishAsyncComplete()
	return js
}
