package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
)

// keysChecked is how many keys' writes are in flight before their acks are
// checked.
const keysChecked = 16384

// fillKeys writes n keys to the job-record bucket, the delivery-log bucket
// or both (which: "jobs", "logs", "both"), with values the size of a short
// job's record, as hookstream keeps them for days: nats-server indexes
// every key in memory and saves that index every two minutes, holding the
// bucket's writes meanwhile (docs/performance.md, findings 20 and 21). A
// day of steady load is reproduced in seconds.
func fillKeys(ctx context.Context, o options, n int, which string, out io.Writer) error {
	var buckets []string
	switch which {
	case "jobs":
		buckets = []string{contract.BucketJobs}
	case "logs":
		buckets = []string{contract.BucketDeliveries}
	case "both":
		buckets = []string{contract.BucketJobs, contract.BucketDeliveries}
	default:
		return fmt.Errorf("-bucket: %q is not jobs, logs or both", which)
	}
	nc, err := nats.Connect(o.natsURL)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", bus.RedactURL(o.natsURL), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(keysChecked))
	if err != nil {
		return err
	}
	value := []byte(`{"id":"job_x","type":"echo","status":"succeeded","payload":{"n":1},"callback_url":"http://127.0.0.1:1/hook",` +
		`"result":{"n":1},"attempts":1,"created_at":"2026-12-01T00:00:00Z","updated_at":"2026-12-01T00:00:00Z",` +
		`"completed_at":"2026-12-01T00:00:00Z","expires_at":"2026-12-08T00:00:00Z"}` + strings.Repeat(" ", 60))
	start := time.Now()
	var pending []jetstream.PubAckFuture
	check := func() error {
		for _, f := range pending {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return fmt.Errorf("write %s: %w", f.Msg().Subject, err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		pending = pending[:0]
		return nil
	}
	for i := range n {
		job := "job_" + randomHex(8) + "_" + randomHex(4)
		for _, b := range buckets {
			key := job
			if b == contract.BucketDeliveries {
				key = o.tenant + "." + contract.CallbackTarget + "." + job + ".msg_" + randomHex(12)
			}
			f, err := js.PublishAsync(bus.KeySubject(b, key), value, jetstream.WithStallWait(time.Minute))
			if err != nil {
				return fmt.Errorf("write %s: %w", key, err)
			}
			pending = append(pending, f)
		}
		if len(pending) >= keysChecked || i == n-1 {
			if err := check(); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(out, "wrote %d keys to each of %s in %s\n", n, strings.Join(buckets, ", "), time.Since(start).Round(time.Millisecond))
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
