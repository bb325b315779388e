package deliverylog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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
	js, kv := deliveryBucket(t)
	ctx := context.Background()
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

	scan := func(filter deliverylog.Filter, since time.Time) map[string]string {
		got := map[string]string{}
		require.NoError(t, deliverylog.Scan(ctx, js, filter, since, nil, func(r *contract.DeliveryRecord) error {
			require.NotContains(t, got, r.ID, "read twice")
			got[r.ID] = r.Status
			return nil
		}))
		return got
	}
	want := map[string]string{"msg_a": contract.DeliverySucceeded, "msg_c": contract.DeliveryPending}
	require.Equal(t, want, scan(deliverylog.Tenant("acme"), time.Time{}))
	require.Equal(t, want, scan(deliverylog.Tenant("acme"), time.Now().Add(-time.Minute)))
	require.Empty(t, scan(deliverylog.Tenant("acme"), time.Now().Add(deliverylog.ClockMargin+time.Minute)))
	require.Equal(t, want, scan(deliverylog.Tenant("acme"), time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC)), "a time before the log")
	require.Equal(t, map[string]string{"msg_c": contract.DeliveryPending}, scan(deliverylog.Owner("acme", "evt_2"), time.Time{}))
	require.Empty(t, scan(deliverylog.Tenant("nobody"), time.Time{}))

	oldest, err := deliverylog.Oldest(ctx, js)
	require.NoError(t, err)
	require.WithinDuration(t, time.Now(), oldest, time.Minute)
}

// putRecords writes n pending records, msg_0000 on, for tenant acme.
func putRecords(t *testing.T, kv jetstream.KeyValue, n int) {
	t.Helper()
	for i := range n {
		putRecord(t, kv, i, contract.DeliveryPending)
	}
}

func putRecord(t *testing.T, kv jetstream.KeyValue, i int, status string) {
	t.Helper()
	id := fmt.Sprintf("msg_%04d", i)
	data, err := json.Marshal(contract.DeliveryRecord{ID: id, Status: status, CreatedAt: time.Now().UTC()})
	require.NoError(t, err)
	_, err = kv.Put(context.Background(), "acme.evt_1."+id, data)
	require.NoError(t, err)
}

func deliveryBucket(t *testing.T) (jetstream.JetStream, jetstream.KeyValue) {
	t.Helper()
	_, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))
	kv, err := js.KeyValue(ctx, contract.BucketDeliveries)
	require.NoError(t, err)
	return js, kv
}

// Records written again while a read runs, one already read and one not
// yet: Read returns each once, as last written; Scan reads none twice.
func TestReadsOfRecordsWrittenAgainMeanwhile(t *testing.T) {
	t.Parallel()
	js, kv := deliveryBucket(t)
	ctx := context.Background()
	const n = 600
	putRecords(t, kv, n)
	rewrite := sync.OnceFunc(func() {
		putRecord(t, kv, 0, contract.DeliveryFailed)
		putRecord(t, kv, n-1, contract.DeliveryFailed)
	})
	recs, err := deliverylog.Read(ctx, js, deliverylog.Tenant("acme"), time.Time{}, func(*contract.DeliveryRecord) bool {
		rewrite()
		return true
	}, false)
	require.NoError(t, err)
	require.Equal(t, n, len(recs))
	status := map[string]string{}
	for _, r := range recs {
		status[r.ID] = r.Status
	}
	require.Equal(t, n, len(status), "a record read twice")
	require.Equal(t, contract.DeliveryFailed, status["msg_0000"])
	require.Equal(t, contract.DeliveryFailed, status[fmt.Sprintf("msg_%04d", n-1)])

	putRecords(t, kv, n)
	rewrite = sync.OnceFunc(func() {
		putRecord(t, kv, 0, contract.DeliveryFailed)
		putRecord(t, kv, n-1, contract.DeliveryFailed)
	})
	seen := map[string]int{}
	require.NoError(t, deliverylog.Scan(ctx, js, deliverylog.Tenant("acme"), time.Time{}, nil, func(r *contract.DeliveryRecord) error {
		rewrite()
		seen[r.ID]++
		return nil
	}))
	for id, times := range seen {
		require.Equal(t, 1, times, "%s read %d times", id, times)
	}
	require.GreaterOrEqual(t, len(seen), n-1)
}

// A record removed while a read runs, with no write after it (as the
// bucket's TTL removes them), does not stall or fail the read.
func TestReadsOfRecordsRemovedMeanwhile(t *testing.T) {
	t.Parallel()
	js, kv := deliveryBucket(t)
	ctx := context.Background()
	const n = 600
	putRecords(t, kv, n)
	stream, err := js.Stream(ctx, "KV_"+contract.BucketDeliveries)
	require.NoError(t, err)
	remove := sync.OnceFunc(func() {
		last := bus.KeySubject(contract.BucketDeliveries, fmt.Sprintf("acme.evt_1.msg_%04d", n-1))
		require.NoError(t, stream.Purge(ctx, jetstream.WithPurgeSubject(last)))
	})
	recs, err := deliverylog.Read(ctx, js, deliverylog.Tenant("acme"), time.Time{}, func(*contract.DeliveryRecord) bool {
		remove()
		return true
	}, false)
	require.NoError(t, err)
	require.Equal(t, n-1, len(recs))
}

// ReadNewest keeps only the newest records that pass, and starts over when
// records it kept are written again during the read so that they no longer
// pass, leaving places that records fallen out earlier had a right to.
func TestReadNewest(t *testing.T) {
	t.Parallel()
	js, kv := deliveryBucket(t)
	ctx := context.Background()
	now := time.Now().UTC()
	put := func(id string, created time.Time, status string) {
		data, err := json.Marshal(contract.DeliveryRecord{ID: id, Status: status, CreatedAt: created})
		require.NoError(t, err)
		_, err = kv.Put(ctx, "acme.evt_1."+id, data)
		require.NoError(t, err)
	}
	// Ten records created last but written first (as a record written
	// again is), then 300 older ones.
	for i := range 10 {
		put(fmt.Sprintf("new_%02d", i), now.Add(time.Hour+time.Duration(i)*time.Second), contract.DeliveryPending)
	}
	for i := range 300 {
		put(fmt.Sprintf("old_%03d", i), now.Add(time.Duration(i)*time.Second), contract.DeliveryPending)
	}
	pending := func(r *contract.DeliveryRecord) bool { return r.Status == contract.DeliveryPending }
	ids := func(recs []contract.DeliveryRecord) []string {
		out := make([]string, len(recs))
		for i, r := range recs {
			out[i] = r.ID
		}
		return out
	}

	recs, err := deliverylog.ReadNewest(ctx, js, deliverylog.Tenant("acme"), time.Time{}, pending, 3)
	require.NoError(t, err)
	require.Equal(t, []string{"new_09", "new_08", "new_07"}, ids(recs))

	// The ten newest, all a page of 5 keeps at first, no longer pass once
	// written again during the read: the older ones that fell out for them
	// are read again.
	rewrite := sync.OnceFunc(func() {
		for i := range 10 {
			put(fmt.Sprintf("new_%02d", i), now.Add(time.Hour+time.Duration(i)*time.Second), contract.DeliveryFailed)
		}
	})
	recs, err = deliverylog.ReadNewest(ctx, js, deliverylog.Tenant("acme"), time.Time{}, func(r *contract.DeliveryRecord) bool {
		if r.ID == "old_000" {
			rewrite()
		}
		return pending(r)
	}, 5)
	require.NoError(t, err)
	require.Equal(t, []string{"old_299", "old_298", "old_297", "old_296", "old_295"}, ids(recs))
}

// The filters find records by owner, target and id in both key layouts (a
// record written before keys named their target has three tokens); an
// endpoint's filter leaves out other endpoints' records of the new layout,
// in nats-server; a record written again under its new key stands for its
// old one; a record read under its old key is replayed there.
func TestFilters(t *testing.T) {
	t.Parallel()
	js, kv := deliveryBucket(t)
	ctx := context.Background()
	put := func(key string, rec contract.DeliveryRecord) {
		rec.CreatedAt, rec.Body = time.Now().UTC(), json.RawMessage(`{}`)
		data, err := json.Marshal(rec)
		require.NoError(t, err)
		_, err = kv.Put(ctx, key, data)
		require.NoError(t, err)
	}
	put("acme.evt_1.msg_a", contract.DeliveryRecord{ID: "msg_a", EventID: "evt_1", EndpointID: "ep_1", Status: contract.DeliveryFailed})
	put("acme.evt_1.msg_e", contract.DeliveryRecord{ID: "msg_e", EventID: "evt_1", EndpointID: "ep_1", Status: contract.DeliveryPending})
	put("acme.ep_1.evt_2.msg_b", contract.DeliveryRecord{ID: "msg_b", EventID: "evt_2", EndpointID: "ep_1", Status: contract.DeliveryFailed})
	put("acme.ep_2.evt_3.msg_c", contract.DeliveryRecord{ID: "msg_c", EventID: "evt_3", EndpointID: "ep_2", Status: contract.DeliveryFailed})
	put("acme.cb.job_x.msg_d", contract.DeliveryRecord{ID: "msg_d", EventID: "evt_x_succeeded", JobID: "job_x", Status: contract.DeliveryFailed})
	put("acme.ep_1.evt_1.msg_e", contract.DeliveryRecord{ID: "msg_e", EventID: "evt_1", EndpointID: "ep_1", Status: contract.DeliverySucceeded})
	put("other.ep_1.evt_2.msg_f", contract.DeliveryRecord{ID: "msg_f", EventID: "evt_2", EndpointID: "ep_1", Status: contract.DeliveryFailed})

	read := func(f deliverylog.Filter, keep ...func(*contract.DeliveryRecord) bool) map[string]string {
		recs, err := deliverylog.Read(ctx, js, f, time.Time{}, append(keep, nil)[0], false)
		require.NoError(t, err)
		got := map[string]string{}
		for _, r := range recs {
			require.NotContains(t, got, r.ID, "read twice")
			got[r.ID] = r.Status + " " + r.Key
		}
		return got
	}
	require.Equal(t, map[string]string{"msg_a": "failed acme.evt_1.msg_a", "msg_b": "failed acme.ep_1.evt_2.msg_b",
		"msg_e": "succeeded acme.ep_1.evt_1.msg_e"}, read(deliverylog.Endpoint("acme", "ep_1")))
	callbacks := func(r *contract.DeliveryRecord) bool { return r.EndpointID == "" }
	require.Equal(t, map[string]string{"msg_d": "failed acme.cb.job_x.msg_d"}, read(deliverylog.Endpoint("acme", ""), callbacks))
	require.Equal(t, map[string]string{"msg_e": "succeeded acme.ep_1.evt_1.msg_e"}, read(deliverylog.Delivery("acme", "msg_e")))
	require.Equal(t, map[string]string{"msg_a": "failed acme.evt_1.msg_a"}, read(deliverylog.Delivery("acme", "msg_a")))
	require.Empty(t, read(deliverylog.Delivery("acme", "msg_f")))
	require.Equal(t, map[string]string{"msg_d": "failed acme.cb.job_x.msg_d"}, read(deliverylog.Owner("acme", "job_x")))
	require.Equal(t, map[string]string{"msg_d": "failed acme.cb.job_x.msg_d"}, read(deliverylog.Event("acme", "evt_x_succeeded")))
	require.Equal(t, map[string]string{"msg_a": "failed acme.evt_1.msg_a", "msg_e": "succeeded acme.ep_1.evt_1.msg_e"},
		read(deliverylog.Event("acme", "evt_1")))
	require.Len(t, read(deliverylog.Tenant("acme")), 5)
	// A job whose id does not start with job_: older processors named its
	// events evt_<id>_<status> (found by review).
	put("acme.cb.x.msg_g", contract.DeliveryRecord{ID: "msg_g", EventID: "evt_x_succeeded", JobID: "x", Status: contract.DeliverySucceeded})
	put("acme.x.msg_h", contract.DeliveryRecord{ID: "msg_h", EventID: "evt_x_succeeded", JobID: "x", Status: contract.DeliverySucceeded})
	require.Equal(t, map[string]string{"msg_d": "failed acme.cb.job_x.msg_d", "msg_g": "succeeded acme.cb.x.msg_g", "msg_h": "succeeded acme.x.msg_h"},
		read(deliverylog.Event("acme", "evt_x_succeeded")))

	// Replayed, a record read under its old key is written under its new
	// one, as the other, and stands for the old one from then on.
	recs, err := deliverylog.Read(ctx, js, deliverylog.Owner("acme", "evt_1"), time.Time{}, nil, true)
	require.NoError(t, err)
	require.Len(t, recs, 2)
	sub, err := js.Conn().SubscribeSync(contract.DeliverySubject("acme", ">"))
	require.NoError(t, err)
	for i, rec := range recs {
		require.NoError(t, deliverylog.Replay(ctx, js, "acme", rec, fmt.Sprint("replay-", i)))
		msg, err := sub.NextMsg(5 * time.Second)
		require.NoError(t, err)
		var d contract.Delivery
		require.NoError(t, json.Unmarshal(msg.Data, &d))
		require.Equal(t, "acme.ep_1.evt_1."+rec.ID, d.LogKey())
	}
}

// A recover task's scan leaves out a record kept under its key from before
// keys named their target when the delivery was written since under its
// new key (found by review: a delivery failed before the upgrade and
// delivered after it was re-sent), and passes one that was not.
func TestScanLeavesOutARecordWrittenSinceUnderItsNewKey(t *testing.T) {
	t.Parallel()
	js, kv := deliveryBucket(t)
	ctx := context.Background()
	put := func(key, id, status string) {
		data, err := json.Marshal(contract.DeliveryRecord{ID: id, EventID: "evt_1", EndpointID: "ep_1", Status: status, CreatedAt: time.Now().UTC()})
		require.NoError(t, err)
		_, err = kv.Put(ctx, key, data)
		require.NoError(t, err)
	}
	put("acme.evt_1.msg_a", "msg_a", contract.DeliveryFailed)
	put("acme.ep_1.evt_1.msg_a", "msg_a", contract.DeliverySucceeded)
	put("acme.evt_1.msg_b", "msg_b", contract.DeliveryFailed)
	got := map[string]string{}
	require.NoError(t, deliverylog.Scan(ctx, js, deliverylog.Endpoint("acme", "ep_1"), time.Now().Add(-time.Minute), nil, func(r *contract.DeliveryRecord) error {
		require.NotContains(t, got, r.ID, "passed twice")
		got[r.ID] = r.Status
		return nil
	}))
	require.Equal(t, map[string]string{"msg_a": contract.DeliverySucceeded, "msg_b": contract.DeliveryFailed}, got)
}

// Reads leave out the filters of the keys from before keys named their
// target once the log keeps none: it was empty when MarkKeys recorded (a
// new deployment), or its oldest write is more than its retention later
// (found by review: an empty log, or one whose oldest write
// was later than the record, left them out at once, while an older
// notifier may still write them). MarkKeys records the first time only.
func TestOldKeysGone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	put := func(kv jetstream.KeyValue, key string) {
		data, err := json.Marshal(contract.DeliveryRecord{ID: "msg_a", EventID: "evt_1", EndpointID: "ep_1", CreatedAt: time.Now().UTC()})
		require.NoError(t, err)
		_, err = kv.Put(ctx, key, data)
		require.NoError(t, err)
	}
	read := func(js jetstream.JetStream) int {
		recs, err := deliverylog.Read(ctx, js, deliverylog.Endpoint("acme", "ep_1"), time.Time{}, nil, false)
		require.NoError(t, err)
		return len(recs)
	}

	// An upgrade: the log keeps records under old keys.
	js, kv := deliveryBucket(t)
	put(kv, "acme.evt_1.msg_a")
	require.False(t, deliverylog.OldKeysGone(ctx, js), "nothing recorded")
	require.NoError(t, deliverylog.MarkKeys(ctx, js))
	tenants, err := js.KeyValue(ctx, contract.BucketTenants)
	require.NoError(t, err)
	first, err := tenants.Get(ctx, contract.KeyDeliveryLogKeys)
	require.NoError(t, err)
	require.NoError(t, deliverylog.MarkKeys(ctx, js))
	again, err := tenants.Get(ctx, contract.KeyDeliveryLogKeys)
	require.NoError(t, err)
	require.Equal(t, first.Revision(), again.Revision(), "recorded once")
	require.False(t, deliverylog.OldKeysGone(ctx, js), "within the retention")
	require.Equal(t, 1, read(js))
	put(kv, "acme.evt_1.msg_a") // the oldest write now later than the record
	require.False(t, deliverylog.OldKeysGone(ctx, js), "within the retention")
	require.Equal(t, 1, read(js))

	// A new deployment: nothing to look for.
	js, kv = deliveryBucket(t)
	require.NoError(t, deliverylog.MarkKeys(ctx, js))
	require.True(t, deliverylog.OldKeysGone(ctx, js))
	put(kv, "acme.evt_1.msg_a") // as no service of this version writes it
	require.Equal(t, 0, read(js))
	put(kv, "acme.ep_1.evt_1.msg_a")
	require.Equal(t, 1, read(js))

	// Recorded as a time alone by a build that still wrote old keys after
	// it (found by review: it left reads looking for old keys for good):
	// recorded again, from now, as a log that was not empty.
	js, _ = deliveryBucket(t)
	tenants, err = js.KeyValue(ctx, contract.BucketTenants)
	require.NoError(t, err)
	_, err = tenants.Create(ctx, contract.KeyDeliveryLogKeys, []byte(time.Now().UTC().Format(time.RFC3339Nano)))
	require.NoError(t, err)
	require.NoError(t, deliverylog.MarkKeys(ctx, js))
	require.False(t, deliverylog.OldKeysGone(ctx, js))
	entry, err := tenants.Get(ctx, contract.KeyDeliveryLogKeys)
	require.NoError(t, err)
	require.JSONEq(t, `{"log_was_empty":false}`, string(entry.Value()))
}
