// Command hookbench is hookstream's load tool. It drives a running
// hookstream over HTTP at a constant rate (open model, -rate) or as fast as
// -conns clients go (closed model, -rate 0), receives the webhooks itself to
// measure 202 → webhook latency, samples the server's CPU and peak RSS from
// /proc (-pid), and runs the baselines every figure is quoted against: a
// bare Gin 202 handler with the same body parsing, and raw JetStream
// publishes.
//
//	hookbench intake    -url http://127.0.0.1:8080 -key KEY -conns 64 -duration 10s
//	hookbench e2e       -url … -key … -rate 1000 -duration 60s
//	hookbench fanout    -url … -key … -endpoints 1000 -rate 5 -duration 20s
//	hookbench gin       -conns 64 -duration 10s [-in-process]
//	hookbench gin-serve -listen 127.0.0.1:0   (the handler alone, as gin starts it)
//	hookbench jetstream -publishers 16 -sync always [-async]
//	hookbench suite     -hookstream ./bin/hookstream -out docs/benchmarks.md
//	hookbench backlog   -url … -key … -tenant T -nats nats://… -backlog 1000000 -rate 200
//	hookbench ledger    -url … -key … -rate 50 -duration 60s -drain 150s
//	hookbench keys      -nats nats://… -keys 700000 -bucket logs   (keys kept, as after days of load)
//
// Latency percentiles come from an HDR-style histogram; in the open model
// each request's latency counts from when it was due, so a stalled
// generator cannot hide queueing. -json prints the report as JSON.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

func main() {
	code := run(os.Args[1:], os.Stdout, os.Stderr)
	removeDataDirs()
	os.Exit(code)
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: hookbench intake|e2e|fanout|backlog|gin|gin-serve|jetstream|ledger|keys|suite [flags]   (hookbench <cmd> -h for flags)")
		return 2
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("hookbench "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := options{stderr: stderr}
	fs.StringVar(&o.url, "url", "http://127.0.0.1:8080", "hookstream base URL")
	fs.StringVar(&o.key, "key", os.Getenv("HOOKSTREAM_KEY"), "API key (default $HOOKSTREAM_KEY)")
	fs.IntVar(&o.rate, "rate", 0, "requests per second (open model); 0: closed model, as fast as -conns go")
	fs.IntVar(&o.conns, "conns", 64, "concurrent clients (connections); in the open model, requests due while all are busy wait for one")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to load")
	fs.IntVar(&o.pid, "pid", 0, "process id of the server, to report its CPU and peak RSS")
	fs.StringVar(&o.natsURL, "nats", "nats://127.0.0.1:4222", "backlog, keys: NATS URL of hookstream's JetStream (HOOKSTREAM_NATS_LISTEN), with its token: nats://<token>@host:port")
	fs.IntVar(&o.backlog, "backlog", 1_000_000, "backlog, suite: deliveries to queue for the dead endpoint (suite: 0 skips the scenario)")
	fs.StringVar(&o.tenant, "tenant", "bench", "backlog, keys: the tenant of -key")
	keys := fs.Int("keys", 700_000, "keys: how many keys to write to each bucket")
	bucket := fs.String("bucket", "both", "keys: the buckets to write to: jobs (job records), logs (attempt logs) or both")
	fs.StringVar(&o.jobType, "job-type", "echo", "intake, e2e: the type of the jobs submitted")
	fs.BoolVar(&o.idempotency, "idempotency", false, "intake, e2e: send a unique Idempotency-Key with every job")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "e2e: the webhook receiver's address; gin-serve: the handler's")
	fs.DurationVar(&o.drain, "drain", 30*time.Second, "e2e: how long to wait for the next outstanding webhook; the rest count as missing")
	fs.StringVar(&o.sync, "sync", "always", "jetstream: 'always' or a sync interval such as 2m")
	fs.IntVar(&o.publishers, "publishers", 16, "jetstream: synchronous publishers")
	fs.BoolVar(&o.async, "async", false, "jetstream: publish asynchronously instead")
	fs.IntVar(&o.endpoints, "endpoints", 0, "fanout: endpoints every event goes to; e2e: endpoints registered that no event matches")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress line")
	inProcess := fs.Bool("in-process", false, "gin: serve the handler inside hookbench rather than in a process of its own")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of hookbench itself (the load generator) to this file")
	suite := suiteOptions{}
	fs.StringVar(&suite.binary, "hookstream", "./bin/hookstream", "suite: the hookstream binary to start")
	fs.StringVar(&suite.out, "out", "docs/benchmarks.md", "suite: the Markdown file to write")
	e2eRates := fs.String("e2e-rates", "1000,3000", "suite: the constant end-to-end rates, comma-separated")
	fs.DurationVar(&suite.e2eDuration, "e2e-duration", time.Minute, "suite: how long the constant-rate end-to-end rows and each run of the sustained-rate search load (the other rows: -duration)")
	fs.IntVar(&suite.searchSteps, "search-steps", 6, "suite: most rates of the sustained-rate search per mode (each run twice at most: up ×1.5 while they hold, then one rate halfway back; down ×2/3 from a start that fails)")
	suite.searchFrom = map[string]int{"durable": 300, "buffered": 1500}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	for r := range strings.SplitSeq(*e2eRates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n <= 0 {
			fmt.Fprintf(stderr, "hookbench: -e2e-rates: %q is not a positive rate\n", r)
			return 2
		}
		suite.e2eRates = append(suite.e2eRates, n)
	}
	suite.backlog = o.backlog
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "hookbench: %v\n", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "hookbench: %v\n", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}

	var rep report
	var err error
	switch cmd {
	case "intake":
		rep = intakeScenario(ctx, o)
	case "e2e":
		rep, err = e2eScenario(ctx, o)
	case "fanout":
		if o.endpoints == 0 {
			o.endpoints = 100
		}
		rep, err = fanoutScenario(ctx, o)
	case "gin":
		rep, err = ginBaseline(ctx, o, *inProcess)
	case "gin-serve":
		if err := serveGin(ctx, o.listen, stdout); err != nil {
			fmt.Fprintf(stderr, "hookbench: %v\n", err)
			return 1
		}
		return 0
	case "jetstream":
		rep, err = jetstreamBaseline(ctx, o)
	case "keys":
		if err := fillKeys(ctx, o, *keys, *bucket, stdout); err != nil {
			fmt.Fprintf(stderr, "hookbench: %v\n", err)
			return 1
		}
		return 0
	case "ledger":
		if err := ledgerCheck(ctx, o, stdout); err != nil {
			fmt.Fprintf(stderr, "hookbench: %v\n", err)
			return 1
		}
		return 0
	case "backlog":
		res, err := backlogScenario(ctx, o)
		if err != nil {
			fmt.Fprintf(stderr, "hookbench: %v\n", err)
			return 1
		}
		if *asJSON {
			writeJSON(stdout, res)
		} else {
			res.print(stdout)
		}
		return 0
	case "suite":
		err = runSuite(ctx, o, suite, stdout)
		if err != nil {
			fmt.Fprintf(stderr, "hookbench: %v\n", err)
			return 1
		}
		return 0
	default:
		fmt.Fprintf(stderr, "hookbench: unknown command %q\n", cmd)
		return 2
	}
	if !o.quiet {
		fmt.Fprintln(stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "hookbench: %v\n", err)
		return 1
	}
	if *asJSON {
		rep.writeJSON(stdout)
	} else {
		rep.print(stdout)
	}
	return 0
}
