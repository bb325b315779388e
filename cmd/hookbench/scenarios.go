package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/embeddednats"
	"github.com/hookstream/hookstream/shared/latency"
)

// options are the flags every scenario shares.
type options struct {
	url         string
	key         string
	rate        int
	conns       int
	duration    time.Duration
	pid         int
	idempotency bool
	jobType     string
	natsURL     string
	backlog     int
	tenant      string
	listen      string
	drain       time.Duration
	sync        string
	publishers  int
	endpoints   int
	async       bool
	quiet       bool
	stderr      io.Writer
}

func (o options) progress(name string) func(sent, ok uint64) {
	if o.quiet {
		return nil
	}
	start := time.Now()
	return func(sent, ok uint64) {
		fmt.Fprintf(o.stderr, "\r%s %4.0fs  sent %d  ok %d  ", name, time.Since(start).Seconds(), sent, ok)
	}
}

// idempotencyKeys returns the headers of each job: with -idempotency, a
// unique Idempotency-Key; else none.
func idempotencyKeys(o options) func() []string {
	if !o.idempotency {
		return func() []string { return nil }
	}
	var seq atomic.Uint64
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	return func() []string {
		return []string{"Idempotency-Key", nonce + "-" + strconv.FormatUint(seq.Add(1), 10)}
	}
}

// intakeScenario posts echo jobs to a running hookstream.
func intakeScenario(ctx context.Context, o options) report {
	client := newHTTPClient(o.conns)
	r := &loadRun{rate: o.rate, conns: o.conns, duration: o.duration, progress: o.progress("intake")}
	keys := idempotencyKeys(o)
	r.do = func(ctx context.Context, i int, _ time.Time) result {
		status, _, err := post(ctx, client, o.url+"/v1/jobs", o.key, jobBody(o.jobType, "", i), keys()...)
		return result{status: status, err: err}
	}
	w := watchProc(o.pid)
	start := time.Now()
	r.execute(ctx)
	name := "intake"
	if o.idempotency {
		name += " (Idempotency-Key)"
	}
	rep := newReport(name, r, time.Since(start))
	rep.Server = w.stop()
	return rep
}

// e2eScenario posts echo jobs with a callback to the tool's own receiver and
// measures 202 → webhook received.
func e2eScenario(ctx context.Context, o options) (report, error) {
	rcv, err := startReceiver(o.listen)
	if err != nil {
		return report{}, fmt.Errorf("start receiver: %w", err)
	}
	defer rcv.close()
	if err := withNoiseEndpoints(ctx, o); err != nil {
		return report{}, err
	}
	client := newHTTPClient(o.conns)
	r := &loadRun{rate: o.rate, conns: o.conns, duration: o.duration, progress: o.progress("e2e")}
	keys := idempotencyKeys(o)
	r.do = func(ctx context.Context, i int, due time.Time) result {
		status, body, err := post(ctx, client, o.url+"/v1/jobs", o.key, jobBody(o.jobType, rcv.url, i), keys()...)
		if err == nil && status == http.StatusAccepted {
			rcv.match(idOf(body), arrival{at: time.Now(), due: due})
		}
		return result{status: status, err: err}
	}
	w := watchProc(o.pid)
	start := time.Now()
	rcv.begin(start)
	r.execute(ctx)
	elapsed := time.Since(start)
	rcv.drain(r.ok.Load(), o.drain)
	name := "end-to-end"
	if o.endpoints > 0 {
		name = fmt.Sprintf("end-to-end, %d endpoints registered", o.endpoints)
	}
	if o.idempotency {
		name += " (Idempotency-Key)"
	}
	rep := newReport(name, r, elapsed)
	rep.Server = w.stop()
	e2e, fromDue := rcv.latency.Summary(), rcv.fromDue.Summary()
	rep.EndToEnd, rep.FromDue, rep.Delivered, rep.Duplicates = &e2e, &fromDue, rcv.delivered.Load(), rcv.dupes.Load()
	rep.WebhookPause = time.Duration(rcv.pause.Load())
	if last := time.Unix(0, rcv.last.Load()); last.After(start) {
		rep.WebhookRate = float64(rep.Delivered) / last.Sub(start).Seconds()
	}
	if rep.OK > rep.Delivered {
		rep.Missing = rep.OK - rep.Delivered
	}
	return rep, nil
}

// jetstreamBaseline measures raw JetStream publishes to a file stream on an
// embedded server with the given sync policy: publishers synchronous
// publishers, or async publishing with a window.
func jetstreamBaseline(ctx context.Context, o options) (report, error) {
	dir, err := os.MkdirTemp("", "hookbench-js-")
	if err != nil {
		return report{}, err
	}
	defer removeLater(dir)
	cfg := embeddednats.Config{StoreDir: dir}
	if o.sync == "always" {
		cfg.SyncAlways = true
	} else if d, err := time.ParseDuration(o.sync); err == nil {
		cfg.SyncInterval = d
	}
	ns, err := embeddednats.Start(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return report{}, err
	}
	defer ns.Shutdown()
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		return report{}, err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"bench.>"}, Storage: jetstream.FileStorage}); err != nil {
		return report{}, err
	}
	payload := []byte(`{"id":"job_0123456789abcdefghijklmnop","payload":{"n":1}}`)
	name := fmt.Sprintf("baseline: JetStream sync publish, %d publishers, sync %s", o.publishers, o.sync)
	if o.async {
		name = fmt.Sprintf("baseline: JetStream async publish, sync %s", o.sync)
		return asyncPublish(ctx, js, payload, name, o)
	}
	r := &loadRun{conns: o.publishers, duration: o.duration, progress: o.progress("jetstream")}
	r.do = func(ctx context.Context, i int, _ time.Time) result {
		_, err := js.Publish(ctx, "bench.jobs", payload)
		if err != nil {
			return result{err: err}
		}
		return result{status: 200}
	}
	start := time.Now()
	r.execute(ctx)
	return newReport(name, r, time.Since(start)), nil
}

func asyncPublish(ctx context.Context, js jetstream.JetStream, payload []byte, name string, o options) (report, error) {
	var ok, failed atomic.Uint64
	var hist latency.Histogram
	deadline := time.Now().Add(o.duration)
	start := time.Now()
	var wg sync.WaitGroup
	sent := 0
	for time.Now().Before(deadline) && ctx.Err() == nil {
		at := time.Now()
		f, err := js.PublishAsync("bench.jobs", payload, jetstream.WithStallWait(5*time.Second))
		sent++
		if err != nil {
			failed.Add(1)
			continue
		}
		wg.Go(func() {
			select {
			case <-f.Ok():
				ok.Add(1)
				hist.Record(time.Since(at))
			case <-f.Err():
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	return report{
		Scenario: name, Conns: 1, Duration: elapsed, Sent: uint64(sent), OK: ok.Load(),
		Throughput: float64(ok.Load()) / elapsed.Seconds(), Statuses: map[string]uint64{"ack": ok.Load(), "error": failed.Load()},
		Latency: hist.Summary(),
	}, nil
}

// registerEndpoints registers n endpoints for url, subscribed to the event
// types typeOf(i) gives, 16 at a time.
func registerEndpoints(ctx context.Context, o options, n int, url string, typeOf func(int) string) error {
	client := newHTTPClient(16)
	var wg sync.WaitGroup
	var failed atomic.Int64
	var why atomic.Value // the first failure's
	next := atomic.Int64{}
	for range 16 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				body := fmt.Appendf(nil, `{"url":%q,"event_types":[%q]}`, url, typeOf(i))
				status, resp, err := post(ctx, client, o.url+"/v1/endpoints", o.key, body)
				switch {
				case err != nil:
					why.CompareAndSwap(nil, err.Error())
				case status != http.StatusCreated:
					why.CompareAndSwap(nil, fmt.Sprintf("%d %.300s", status, resp))
				default:
					continue
				}
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d endpoints could not be registered (the server may limit a tenant's endpoints: HOOKSTREAM_MAX_ENDPOINTS_PER_TENANT); the first: %v", f, n, why.Load())
	}
	return nil
}

// fanoutScenario registers o.endpoints endpoints subscribed to one event
// type and publishes events of it through POST /v1/events: every event
// becomes o.endpoints webhooks. Latency is from when each publish was due to
// each webhook.
func fanoutScenario(ctx context.Context, o options) (report, error) {
	rcv, err := startReceiver(o.listen)
	if err != nil {
		return report{}, err
	}
	defer rcv.close()
	if err := registerEndpoints(ctx, o, o.endpoints, rcv.url, func(int) string { return "bench.fanout" }); err != nil {
		return report{}, err
	}
	client := newHTTPClient(o.conns)
	r := &loadRun{rate: o.rate, conns: o.conns, duration: o.duration, progress: o.progress("fanout")}
	r.do = func(ctx context.Context, i int, due time.Time) result {
		body := fmt.Appendf(nil, `{"type":"bench.fanout","data":{"n":%d,"sent_at":%d}}`, i, due.UnixNano())
		status, _, err := post(ctx, client, o.url+"/v1/events", o.key, body)
		return result{status: status, err: err}
	}
	w := watchProc(o.pid)
	start := time.Now()
	rcv.begin(start)
	r.execute(ctx)
	elapsed := time.Since(start)
	want := r.ok.Load() * uint64(o.endpoints)
	rcv.drain(want, o.drain)
	rep := newReport(fmt.Sprintf("fan-out to %d endpoints", o.endpoints), r, elapsed)
	rep.Server = w.stop()
	e := rcv.latency.Summary()
	rep.EndToEnd, rep.FromDue, rep.Delivered, rep.Duplicates = &e, &e, rcv.delivered.Load(), rcv.dupes.Load()
	rep.WebhookPause = time.Duration(rcv.pause.Load())
	if last := time.Unix(0, rcv.last.Load()); last.After(start) {
		rep.WebhookRate = float64(rep.Delivered) / last.Sub(start).Seconds()
	}
	if want > rep.Delivered {
		rep.Missing = want - rep.Delivered
	}
	return rep, nil
}

// withNoiseEndpoints registers o.endpoints endpoints that no event of the
// run matches (each on its own type), to measure what registered endpoints
// cost fan-out.
func withNoiseEndpoints(ctx context.Context, o options) error {
	if o.endpoints == 0 {
		return nil
	}
	return registerEndpoints(ctx, o, o.endpoints, "https://example.com/hook", func(i int) string { return fmt.Sprintf("bench.noise.t%d", i) })
}
