package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
)

// backlogResult is what the backlog scenario adds to its two end-to-end
// reports.
type backlogResult struct {
	Queued      int           `json:"queued"`
	QueueTime   time.Duration `json:"queue_time_ns"`
	Unloaded    report        `json:"unloaded"`
	Loaded      report        `json:"loaded"`
	PeakRSSMiB  float64       `json:"peak_rss_mib"`
	P99Increase float64       `json:"p99_increase"` // loaded p99 / unloaded p99
}

// backlogScenario measures a healthy endpoint's end-to-end latency before
// and while o.backlog deliveries wait for an endpoint that is down, and the
// server's peak RSS over both. The backlog is published straight to the
// deliveries stream over NATS (-nats), as fan-out would have queued it;
// the dead endpoint refuses connections, so its circuit opens and the
// notifier parks its deliveries (moves them out of the delivery consumer,
// at a bounded rate) while the measurement runs.
func backlogScenario(ctx context.Context, o options) (res backlogResult, err error) {
	w := watchProc(o.pid)
	defer func() {
		if s := w.stop(); s != nil {
			res.PeakRSSMiB = s.PeakRSSMiB
		}
	}()
	var deadID string
	deadID, err = createEndpoint(ctx, o, "http://127.0.0.1:1/down", "bench.down")
	if err != nil {
		return res, err
	}
	if res.Unloaded, err = e2eScenario(ctx, o); err != nil {
		return res, err
	}
	res.Unloaded.Scenario = "backlog: healthy endpoint, no backlog"
	start := time.Now()
	if err := queueDeliveries(ctx, o, deadID); err != nil {
		return res, err
	}
	res.Queued, res.QueueTime = o.backlog, time.Since(start)
	if res.Loaded, err = e2eScenario(ctx, o); err != nil {
		return res, err
	}
	res.Loaded.Scenario = fmt.Sprintf("backlog: healthy endpoint, %d deliveries queued for a dead one", o.backlog)
	if u, l := res.Unloaded.EndToEnd, res.Loaded.EndToEnd; u != nil && l != nil && u.P99 > 0 {
		res.P99Increase = float64(l.P99) / float64(u.P99)
	}
	return res, nil
}

func createEndpoint(ctx context.Context, o options, url, eventType string) (string, error) {
	body := fmt.Appendf(nil, `{"url":%q,"event_types":[%q]}`, url, eventType)
	status, resp, err := post(ctx, newHTTPClient(1), o.url+"/v1/endpoints", o.key, body)
	if err != nil || status != http.StatusCreated {
		return "", fmt.Errorf("create endpoint: status %d: %v", status, err)
	}
	return idOf(resp), nil
}

// queueDeliveries publishes o.backlog deliveries for the endpoint, 512 at a
// time through group commits.
func queueDeliveries(ctx context.Context, o options, endpointID string) error {
	nc, err := nats.Connect(o.natsURL)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", bus.RedactURL(o.natsURL), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	c := bus.NewCommitter(js)
	defer c.Close()
	body, _ := json.Marshal(contract.WebhookBody{Type: "bench.down", Timestamp: time.Now().UTC(), Data: json.RawMessage(`{"n":0}`)})
	tenant := o.tenant
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range 512 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(o.backlog) && ctx.Err() == nil; i = next.Add(1) {
				d := contract.Delivery{
					ID: fmt.Sprintf("msg_backlog%d", i), Tenant: tenant, EventID: fmt.Sprintf("evt_backlog%d", i),
					EventType: "bench.down", EndpointID: endpointID, Body: body, CreatedAt: time.Now().UTC(),
				}
				msg := nats.NewMsg(contract.DeliverySubject(tenant, endpointID))
				msg.Data, _ = json.Marshal(d)
				if _, err := c.Publish(ctx, msg); err != nil {
					failed.Add(1)
				}
				if i%10000 == 0 && !o.quiet {
					fmt.Fprintf(o.stderr, "\rqueued %d of %d  ", i, o.backlog)
				}
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d deliveries could not be queued", f, o.backlog)
	}
	return ctx.Err()
}

func (b backlogResult) print(w interface{ Write([]byte) (int, error) }) {
	b.Unloaded.print(w)
	b.Loaded.print(w)
	fmt.Fprintf(w, "backlog: %d deliveries queued in %s; healthy p99 ×%.2f; server peak RSS %.0f MiB\n",
		b.Queued, b.QueueTime.Round(time.Millisecond), b.P99Increase, b.PeakRSSMiB)
}
