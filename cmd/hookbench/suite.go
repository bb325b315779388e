package main

import (
	"context"
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
	binary  string
	out     string
	e2eRate int
}

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
	fmt.Fprintf(&md, "Machine: %d CPUs (%s/%s), %s; load generator on the same machine. Each run lasts %s.\n\n",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, cpuModel(), o.duration)
	fmt.Fprintf(&md, "Command: `hookbench suite -duration %s -e2e-rate %d -conns %d`\n\n", o.duration, s.e2eRate, o.conns)
	for _, m := range modes {
		fmt.Fprintf(stdout, "== %s (sync %s)\n", m.name, m.sync)
		reps, err := suiteMode(ctx, o, s, m)
		if err != nil {
			return fmt.Errorf("%s mode: %w", m.name, err)
		}
		writeTable(&md, m, reps)
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

func suiteMode(ctx context.Context, o options, s suiteOptions, m mode) ([]report, error) {
	var reps []report
	add := func(r report) {
		r.print(os.Stdout)
		reps = append(reps, r)
	}
	gin, err := ginBaseline(ctx, o)
	if err != nil {
		return nil, err
	}
	add(gin)
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
	// an earlier run is measured: intake max throughput without and with
	// Idempotency-Key, end to end at a constant rate, the same with 10 and
	// with 10,000 registered endpoints that no event matches, and one event
	// a second fanned out to 1,000 endpoints.
	for _, sc := range []struct {
		idempotency bool
		rate        int
		endpoints   int
		fanout      bool
	}{{false, 0, 0, false}, {true, 0, 0, false}, {false, s.e2eRate, 0, false},
		{false, s.e2eRate, 10, false}, {false, s.e2eRate, 10000, false}, {false, 1, 1000, true}} {
		srv, err := startHookstream(ctx, s.binary, m.sync)
		if err != nil {
			return nil, err
		}
		ho := o
		ho.url, ho.key, ho.pid, ho.idempotency, ho.rate, ho.endpoints = srv.url, srv.key, srv.cmd.Process.Pid, sc.idempotency, sc.rate, sc.endpoints
		switch {
		case sc.rate == 0:
			add(intakeScenario(ctx, ho))
		case sc.fanout:
			rep, err := fanoutScenario(ctx, ho)
			if err != nil {
				srv.stop()
				return nil, err
			}
			add(rep)
		default:
			rep, err := e2eScenario(ctx, ho)
			if err != nil {
				srv.stop()
				return nil, err
			}
			add(rep)
		}
		srv.stop()
	}
	return reps, nil
}

func writeTable(md *strings.Builder, m mode, reps []report) {
	fmt.Fprintf(md, "## %s mode (JetStream sync `%s`)\n\n", m.name, m.sync)
	fmt.Fprintln(md, "| scenario | rate | conns | ok/s | p50 | p99 | p99.9 | 202→webhook p50 | p99 | errors | server CPU | server peak RSS |")
	fmt.Fprintln(md, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range reps {
		rate := "max"
		if r.Rate > 0 {
			rate = fmt.Sprintf("%d/s", r.Rate)
		}
		e50, e99, cpu, rss := "", "", "", ""
		if e := r.EndToEnd; e != nil {
			e50, e99 = ms(e.P50), ms(e.P99)
		}
		if r.Server != nil {
			cpu, rss = fmt.Sprintf("%.0f %%", r.Server.CPUPercent), fmt.Sprintf("%.0f MiB", r.Server.PeakRSSMiB)
		}
		errs := r.Sent - r.OK
		fmt.Fprintf(md, "| %s | %s | %d | %.0f | %s | %s | %s | %s | %s | %d | %s | %s |\n",
			r.Scenario, rate, r.Conns, r.Throughput, ms(r.Latency.P50), ms(r.Latency.P99), ms(r.Latency.P999), e50, e99, errs, cpu, rss)
	}
	if len(reps) >= 5 && reps[0].Throughput > 0 && reps[1].Throughput > 0 {
		fmt.Fprintf(md, "\nRatios in this run: intake / bare Gin = **%.2f×**; intake / JetStream sync publishes (16 publishers) = **%.2f×**.\n",
			reps[3].Throughput/reps[0].Throughput, reps[3].Throughput/reps[1].Throughput)
	}
	if len(reps) >= 6 {
		e := reps[5]
		fmt.Fprintf(md, "End-to-end at %d jobs/s: %d accepted, %d webhooks, %d missing after the drain.\n", e.Rate, e.OK, e.Delivered, e.Missing)
	}
	if len(reps) >= 8 && reps[6].EndToEnd != nil && reps[7].EndToEnd != nil {
		fmt.Fprintf(md, "10 vs 10,000 registered endpoints at %d jobs/s: %.0f vs %.0f ok/s, 202→webhook p99 %s vs %s.\n",
			reps[6].Rate, reps[6].Throughput, reps[7].Throughput, ms(reps[6].EndToEnd.P99), ms(reps[7].EndToEnd.P99))
	}
	fmt.Fprintln(md)
}

// server is a hookstream process started for the suite.
type server struct {
	cmd *exec.Cmd
	url string
	key string
	dir string
}

func startHookstream(ctx context.Context, binary, sync string) (*server, error) {
	dir, err := os.MkdirTemp("", "hookbench-data-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	const key = "bench-key-0123456789abcdef"
	cmd := exec.CommandContext(ctx, binary, "serve")
	cmd.Env = append(os.Environ(),
		"HOOKSTREAM_DATA_DIR="+dir, fmt.Sprintf("HOOKSTREAM_HTTP_ADDR=127.0.0.1:%d", port),
		"HOOKSTREAM_API_KEYS=bench:"+key, "HOOKSTREAM_ALLOWED_CALLBACK_NETWORKS=127.0.0.0/8",
		"HOOKSTREAM_JETSTREAM_SYNC="+sync, "HOOKSTREAM_LOG_LEVEL=warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	s := &server{cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d", port), key: key, dir: dir}
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
	_ = os.RemoveAll(s.dir)
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
