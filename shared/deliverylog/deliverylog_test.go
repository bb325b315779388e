package deliverylog_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/deliverylog"
	"github.com/hookstream/hookstream/shared/natstest"
)

// Scan reads each record's last write once, skips deleted keys and other
// tenants' records, and, from a time, reads only what was written since
// then (less the clock margin).
func TestScan(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))
	kv, err := js.KeyValue(ctx, contract.BucketDeliveries)
	require.NoError(t, err)
	put := func(key, id, status string) {
		data, err := json.Marshal(contract.DeliveryRecord{ID: id, Status: status, CreatedAt: time.Now().UTC()})
		require.NoError(t, err)
		_, err = kv.Put(ctx, key, data)
		require.NoError(t, err)
	}
	put("acme.evt_1.msg_a", "msg_a", contract.DeliveryPending)
	put("acme.evt_1.msg_b", "msg_b", contract.DeliveryPending)
	put("acme.evt_2.msg_c", "msg_c", contract.DeliveryPending)
	put("other.evt_3.msg_d", "msg_d", contract.DeliveryPending)
	put("acme.evt_1.msg_a", "msg_a", contract.DeliverySucceeded)
	require.NoError(t, kv.Delete(ctx, "acme.evt_1.msg_b"))

	scan := func(filter string, since time.Time) map[string]string {
		got := map[string]string{}
		require.NoError(t, deliverylog.Scan(ctx, js, filter, since, func(r *contract.DeliveryRecord) error {
			require.NotContains(t, got, r.ID, "read twice")
			got[r.ID] = r.Status
			return nil
		}))
		return got
	}
	want := map[string]string{"msg_a": contract.DeliverySucceeded, "msg_c": contract.DeliveryPending}
	require.Equal(t, want, scan("acme.>", time.Time{}))
	require.Equal(t, want, scan("acme.>", time.Now().Add(-time.Minute)))
	require.Empty(t, scan("acme.>", time.Now().Add(deliverylog.ClockMargin+time.Minute)))
	require.Equal(t, map[string]string{"msg_c": contract.DeliveryPending}, scan("acme.evt_2.*", time.Time{}))
	require.Empty(t, scan("nobody.>", time.Time{}))

	oldest, err := deliverylog.Oldest(ctx, js)
	require.NoError(t, err)
	require.WithinDuration(t, time.Now(), oldest, time.Minute)
}
