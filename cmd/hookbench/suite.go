package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// suiteOptions configure `hookbench suite`.
type suiteOptions struct {
	binary   string
	out      string
	e2eRates []int
	// e2eDuration is how long the constant-rate end-to-end rows and each
	// run of the sustained-rate search load: a rate is sustained when it
	// holds for longer than a burst.
	e2eDuration time.Duration
	backlog     int
	// searchFrom is the first rate of the sustained-rate search per mode;
	// searchSteps bounds it.
	searchFrom  map[string]int
	searchSteps int
}

// endpointConcurrency is HOOKSTREAM_ENDPOINT_CONCURRENCY for the suite's
// servers: every callback of the suite goes to one receiver host, which
// the default of 8 requests in flight per host would make the bottleneck.
const endpointConcurrency = 64

// maxEndpoints is HOOKSTREAM_MAX_ENDPOINTS_PER_TENANT for the suite's
// servers: the scale scenario registers 10,000 endpoints for its one tenant.
const maxEndpoints = 10000

// mode is a JetStream sync policy the suite runs hookstream with.
type mode struct {
	name, sync string
}

var modes = []mode{{"durable", "always"}, {"buffered", "2m"}}

// runSuite runs the standard scenarios in both sync modes against a freshly
// started hookstream process each, with the baselines in the same run, and
// writes the Markdown report.
func runSuite(ctx context.Context, o options, s suiteOptions, stdout io.Writer) error {
	var md strings.Builder
	fmt.Fprintf(&md, "# hookstream benchmarks\n\nWritten by `task bench` (`hookbench suite`) on %s.\n\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&md, "Machine: %d CPUs (%s/%s), %s; load generator on the same machine. The constant-rate end-to-end rows and each run of the sustained-rate search last %s, the other runs %s.\n\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, cpuModel(), s.e2eDuration, o.duration)
	fmt.Fprintf(&md, "Command: `hookbench suite -duration %s -e2e-duration %s -conns %d -backlog %d` (`task bench`). ", o.duration, s.e2eDuration, o.conns, s.backlog)
	fmt.Fprintf(&md, "Every hookstream scenario runs against a fresh `hookstream serve` with `HOOKSTREAM_ENDPOINT_CONCURRENCY=%d` "+
		"(all callbacks go to one receiver host), `HOOKSTREAM_MAX_ENDPOINTS_PER_TENANT=%d` (the 10,000 endpoints are one tenant's) and its defaults otherwise. The intake rows: "+
		"echo jobs against a server without a processor (`HOOKSTREAM_PROCESSOR_CONCURRENCY=0`, the jobs waiting in JetStream, and `HOOKSTREAM_GROUP_COMMIT=on` for job batches), which intake writes as their "+
		"message alone (jobs that wait for the same subject at once share one message, a job batch); jobs of a type that no processor in the "+
		"server runs (`HOOKSTREAM_EXTERNAL_JOB_TYPES`), without and with an `Idempotency-Key`, which are written as a record and a message; "+
		"and echo jobs while the server's processor runs them and writes their records, on the same machine. The end-to-end rows submit echo jobs with a callback "+
		"to hookbench's own receiver at a constant rate: a job due while all connections are busy waits for one, and its request latency counts from when it was due. "+
		"202→webhook is from the 202 read by hookbench to the webhook received (zero when the webhook came first); due→webhook from when the job's request was due, "+
		"so it adds the request's own latency and any wait for a connection. Errors count the requests not answered 2xx and those never sent "+
		"(more than 10 s of them waiting for a connection). "+
		"The bare Gin baseline runs in a process of its own (`hookbench gin-serve`), as hookstream does; "+
		"the same handler inside hookbench's process, sharing the load generator's Go runtime, is the row after it (its CPU and RSS would be hookbench's own, so they are left out). How to read these figures, JetStream writes per job and profile findings: "+
		"[performance.md](performance.md).\n\n", endpointConcurrency, maxEndpoints)
	for _, m := range modes {
		fmt.Fprintf(stdout, "== %s (sync %s)\n", m.name, m.sync)
		res, err := suiteMode(ctx, o, s, m)
		if err != nil {
			return fmt.Errorf("%s mode: %w", m.name, err)
		}
		writeTable(&md, res)
	}
	if err := os.MkdirAll(dirOf(s.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(s.out, []byte(md.String()), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", s.out)
	return nil
}

// modeResult is one sync mode's share of the suite.
type modeResult struct {
	mode mode
	// rows are every report, in the order of the table.
	rows                            []report
	gin, ginInProcess, jsSync       *report
	scale10, scale10k               *report
	intake, intakeRecord, intakeOwn *report
	e2e                             []*report
	sustained                       *report // the highest rate that held
	backlog                         *backlogResult
}

// intakeJobType is accepted by the suite's servers but run by no processor
// in them (an external type, written as record and message), so that two
// intake scenarios measure intake alone for jobs that keep a record.
const intakeJobType = "bench.external"

// runFunc runs f against a fresh hookstream process started with the
// suite's settings and env.
type runFunc func(f func(o options) error, env ...string) error

func suiteMode(ctx context.Context, o options, s suiteOptions, m mode) (*modeResult, error) {
	res := &modeResult{mode: m}
	add := func(r report) *report {
		r.print(os.Stdout)
		res.rows = append(res.rows, r)
		return &res.rows[len(res.rows)-1]
	}
	for _, inProcess := range []bool{false, true} {
		gin, err := ginBaseline(ctx, o, inProcess)
		if err != nil {
			return nil, err
		}
		add(gin)
	}
	jo := o
	jo.sync = m.sync
	js, err := jetstreamBaseline(ctx, jo)
	if err != nil {
		return nil, err
	}
	add(js)
	jo.async = true
	jsa, err := jetstreamBaseline(ctx, jo)
	if err != nil {
		return nil, err
	}
	add(jsa)

	// Each hookstream scenario gets a fresh process, so that no backlog of
	// an earlier run is measured.
	var run runFunc = func(f func(o options) error, env ...string) error {
		srv, err := startHookstream(ctx, s.binary, m.sync, env...)
		if err != nil {
			return err
		}
		defer srv.stop()
		ho := o
		ho.url, ho.key, ho.pid, ho.natsURL, ho.tenant = srv.url, srv.key, srv.cmd.Process.Pid, srv.natsURL, "bench"
		return f(ho)
	}
	// A server without a processor, its jobs left for processor processes
	// that share its key; job batches on, as with processors of this version.
	noProcessor := []string{"HOOKSTREAM_PROCESSOR_CONCURRENCY=0", "HOOKSTREAM_GROUP_COMMIT=on",
		"HOOKSTREAM_SECRET_KEY=" + base64.StdEncoding.EncodeToString(make([]byte, 32))}
	intakeRows := []struct {
		jobType, name string
		idem          bool
		env           []string // the server's settings beyond the suite's
		keep          **report // the summary's row, if any
	}{
		{"echo", "intake alone: echo jobs, no processor in the server", false, noProcessor, &res.intake},
		{intakeJobType, "intake alone: external type (record and message)", false, nil, &res.intakeRecord},
		{intakeJobType, "intake alone: external type, Idempotency-Key", true, nil, nil},
		{"echo", "intake, echo jobs run by the server meanwhile", false, nil, &res.intakeOwn},
	}
	for _, row := range intakeRows {
		err := run(func(o options) error {
			o.idempotency, o.jobType = row.idem, row.jobType
			rep := intakeScenario(ctx, o)
			rep.Scenario = row.name
			r := add(rep)
			if row.keep != nil {
				*row.keep = r
			}
			return nil
		}, row.env...)
		if err != nil {
			return nil, err
		}
	}
	for _, rate := range s.e2eRates {
		err := run(func(o options) error {
			o.rate, o.duration = rate, s.e2eDuration
			rep, err := e2eScenario(ctx, o)
			res.e2e = append(res.e2e, add(rep))
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	// Scale: the whole pipeline as fast as 64 clients go, with 10 and with
	// 10,000 registered endpoints that no event matches.
	for _, n := range []int{10, 10000} {
		err := run(func(o options) error {
			o.endpoints, o.rate = n, 0
			rep, err := e2eScenario(ctx, o)
			rep.Scenario = fmt.Sprintf("end-to-end, max rate, %d endpoints registered", n)
			if n == 10 {
				res.scale10 = add(rep)
			} else {
				res.scale10k = add(rep)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	err = run(func(o options) error {
		o.endpoints, o.rate = 1000, 1
		rep, err := fanoutScenario(ctx, o)
		add(rep)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := findSustained(ctx, o, s, m, res, run, add); err != nil {
		return nil, err
	}
	if s.backlog > 0 {
		err = run(func(o options) error {
			o.backlog, o.rate = s.backlog, 200
			b, err := backlogScenario(ctx, o)
			if err != nil {
				return err
			}
			add(b.Unloaded)
			add(b.Loaded)
			res.backlog = &b
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	res.gin, res.ginInProcess, res.jsSync = &res.rows[0], &res.rows[1], &res.rows[2]
	return res, nil
}

// findSustained searches the highest end-to-end rate that holds
// (searchRates), from the mode's start: in two runs in a row (the second
// only if the first held), every request sent, answered 202 at 95 % of the
// offered rate or more and its webhook received, with due → webhook p99 ≤
// 100 ms. Both runs must hold so that one lucky run does not set the
// figure; one stall of the shared disk or CPU then sets it lower instead.
func findSustained(ctx context.Context, o options, s suiteOptions, m mode, res *modeResult, run runFunc, add func(report) *report) error {
	return searchRates(s.searchFrom[m.name], s.searchSteps, func(rate int) (bool, error) {
		held, err := sustainedRun(ctx, rate, s.e2eDuration, run, add)
		if err == nil && held {
			if held, err = sustainedRun(ctx, rate, s.e2eDuration, run, add); held {
				res.sustained = &res.rows[len(res.rows)-1] // its second run
			}
		}
		return held, err
	})
}

// searchRates tries at most steps rates with holds: from from, it raises
// the rate by half at a time while it holds, and once one has failed
// tries the rate halfway back to the last that held, for a closer figure.
// If the first rates fail, it lowers the rate by a third at a time until
// one holds: a search that only went up reported nothing when its start
// was too high for the machine.
func searchRates(from, steps int, holds func(rate int) (bool, error)) error {
	rate, last, lowering := from, 0, false
	for range steps {
		held, err := holds(rate)
		switch {
		case err != nil:
			return err
		case held && lowering:
			return nil
		case held:
			last, rate = rate, rate*3/2
		case last > 0:
			if mid := (last + rate) / 2; mid > last {
				_, err = holds(mid)
			}
			return err
		default:
			lowering, rate = true, rate*2/3
			if rate < 1 {
				return nil
			}
		}
	}
	return nil
}

// sustainedRun is one run of the search at rate; it tells whether it held.
func sustainedRun(ctx context.Context, rate int, d time.Duration, run runFunc, add func(report) *report) (bool, error) {
	var held bool
	err := run(func(o options) error {
		o.rate, o.duration = rate, d
		rep, err := e2eScenario(ctx, o)
		if err != nil {
			return err
		}
		rep.Scenario = "sustained-rate search"
		held = rep.Missing == 0 && rep.Overflow == 0 && rep.Sent == rep.OK && rep.Throughput >= 0.95*float64(rate) &&
			rep.FromDue != nil && rep.FromDue.P99 <= 100*time.Millisecond
		add(rep)
		return nil
	})
	return held, err
}

// rateLabel is a row's offered rate, or "max" for the closed model.
func rateLabel(r report) string {
	if r.Rate > 0 {
		return fmt.Sprintf("%d/s", r.Rate)
	}
	return "max"
}

func writeTable(md *strings.Builder, res *modeResult) {
	m := res.mode
	fmt.Fprintf(md, "## %s mode (JetStream sync `%s`)\n\n", m.name, m.sync)
	fmt.Fprintln(md, "| scenario | rate | conns | ok/s | p50 | p99 | p99.9 | 202→webhook p50 | p99 | due→webhook p99 | webhooks/s | errors | missing | server CPU | server peak RSS |")
	fmt.Fprintln(md, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	var dupes uint64
	for _, r := range res.rows {
		e50, e99, d99, cpu, rss, missing, hooks := "", "", "", "", "", "", ""
		if e := r.EndToEnd; e != nil {
			e50, e99, missing, hooks = ms(e.P50), ms(e.P99), fmt.Sprint(r.Missing), fmt.Sprintf("%.0f", r.WebhookRate)
		}
		if e := r.FromDue; e != nil {
			d99 = ms(e.P99)
		}
		if r.Server != nil {
			cpu, rss = fmt.Sprintf("%.0f %%", r.Server.CPUPercent), fmt.Sprintf("%.0f MiB", r.Server.PeakRSSMiB)
		}
		p999 := ms(r.Latency.P999)
		if r.Latency.Count < 1000 {
			p999 = "" // the slowest request, not a percentile
		}
		dupes += r.Duplicates
		fmt.Fprintf(md, "| %s | %s | %d | %.0f | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s | %s |\n",
			r.Scenario, rateLabel(r), r.Conns, r.Throughput, ms(r.Latency.P50), ms(r.Latency.P99), p999, e50, e99, d99, hooks, r.Sent-r.OK+r.Overflow, missing, cpu, rss)
	}
	fmt.Fprintln(md)
	for _, row := range []struct {
		r    *report
		what string
	}{
		{res.intake, "Intake alone, echo jobs (their message alone, in job batches)"},
		{res.intakeRecord, "Intake alone, external type (record and message)"},
		{res.intakeOwn, "Intake of echo jobs while the server runs them"},
	} {
		if row.r != nil && res.gin.Throughput > 0 && res.ginInProcess.Throughput > 0 && res.jsSync.Throughput > 0 {
			fmt.Fprintf(md, "- %s: **%.2f×** the bare Gin handler (%.2f× the handler inside hookbench's process), **%.2f×** JetStream's synchronous publishes from 16 publishers.\n",
				row.what, row.r.Throughput/res.gin.Throughput, row.r.Throughput/res.ginInProcess.Throughput, row.r.Throughput/res.jsSync.Throughput)
		}
	}
	const rule = "in two runs in a row: every request sent and answered 202 at 95 % of the offered rate or more, every webhook received, due→webhook p99 ≤ 100 ms; " +
		"rates ×1.5 apart, then the rate halfway back to the last that held; from a start that failed, rates ×2/3 apart down to the first that held"
	if r := res.sustained; r != nil {
		fmt.Fprintf(md, "- Highest end-to-end rate that held (%s): **%d jobs/s** offered, %.0f/s delivered (due→webhook p99 %s, 202→webhook p99 %s in its second run).\n",
			rule, r.Rate, r.WebhookRate, ms(r.FromDue.P99), ms(r.EndToEnd.P99))
	} else {
		fmt.Fprintf(md, "- No end-to-end rate of the search held (%s).\n", rule)
	}
	if dupes > 0 {
		fmt.Fprintf(md, "- Webhooks received twice (a webhook-id seen before), in all rows: %d.\n", dupes)
	}
	if a, b := res.scale10, res.scale10k; a != nil && b != nil && a.WebhookRate > 0 {
		fmt.Fprintf(md, "- 10,000 vs 10 registered endpoints, whole pipeline as fast as 64 clients go: %.0f vs %.0f webhooks/s (**%+.1f %%**; jobs accepted %.0f vs %.0f/s), %d and %d webhooks missing.\n",
			b.WebhookRate, a.WebhookRate, 100*(b.WebhookRate-a.WebhookRate)/a.WebhookRate, b.Throughput, a.Throughput, b.Missing, a.Missing)
	}
	// The rows whose webhooks come at least 100 a second: in the others
	// (fan-out, one event a second) a pause of a second is the schedule.
	var paused *report
	for i := range res.rows {
		r := &res.rows[i]
		if r.EndToEnd != nil && (r.Rate == 0 || r.Rate >= 100) && (paused == nil || r.WebhookPause > paused.WebhookPause) {
			paused = r
		}
	}
	if paused != nil {
		fmt.Fprintf(md, "- Longest time without a webhook in a row of 100 or more jobs a second, from the start of its load: %s (%s, %s); more than a second means the pipeline stalled.\n",
			ms(paused.WebhookPause), paused.Scenario, rateLabel(*paused))
	}
	if b := res.backlog; b != nil {
		fmt.Fprintf(md, "- Backlog: %d deliveries queued for a dead endpoint in %s; the healthy endpoint's p99 went from %s to %s (**×%.2f**); server peak RSS **%.0f MiB**.\n",
			b.Queued, b.QueueTime.Round(time.Second), ms(b.Unloaded.EndToEnd.P99), ms(b.Loaded.EndToEnd.P99), b.P99Increase, b.PeakRSSMiB)
	}
	fmt.Fprintln(md)
}

// server is a hookstream process started for the suite.
type server struct {
	cmd     *exec.Cmd
	url     string
	natsURL string
	key     string
	dir     string
}

func startHookstream(ctx context.Context, binary, sync string, env ...string) (*server, error) {
	dir, err := os.MkdirTemp("", "hookbench-data-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	natsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	const key, natsToken = "bench-key-0123456789abcdef", "bench-nats-token-0123456789"
	cmd := exec.CommandContext(ctx, binary, "serve")
	cmd.Env = append(os.Environ(),
		"HOOKSTREAM_DATA_DIR="+dir, fmt.Sprintf("HOOKSTREAM_HTTP_ADDR=127.0.0.1:%d", port),
		"HOOKSTREAM_API_KEYS=bench:"+key, "HOOKSTREAM_ALLOWED_CALLBACK_NETWORKS=127.0.0.0/8",
		"HOOKSTREAM_JETSTREAM_SYNC="+sync, "HOOKSTREAM_LOG_LEVEL=warn", // a stalled consumer, for one, is a warning
		fmt.Sprintf("HOOKSTREAM_NATS_LISTEN=127.0.0.1:%d", natsPort), "HOOKSTREAM_NATS_TOKEN="+natsToken,
		fmt.Sprintf("HOOKSTREAM_ENDPOINT_CONCURRENCY=%d", endpointConcurrency),
		fmt.Sprintf("HOOKSTREAM_MAX_ENDPOINTS_PER_TENANT=%d", maxEndpoints),
		"HOOKSTREAM_EXTERNAL_JOB_TYPES="+intakeJobType)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	s := &server{cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d", port), natsURL: fmt.Sprintf("nats://%s@127.0.0.1:%d", natsToken, natsPort), key: key, dir: dir}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(s.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.stop()
	return nil, fmt.Errorf("hookstream not ready after 30s")
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	removeLater(s.dir)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

func dirOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i > 0 {
		return path[:i]
	}
	return "."
}
