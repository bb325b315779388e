package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/hookstream/hookstream/shared/latency"
)

// report is the outcome of one scenario run.
type report struct {
	Scenario   string            `json:"scenario"`
	Rate       int               `json:"rate,omitempty"` // open model target, requests/s
	Conns      int               `json:"conns"`
	Duration   time.Duration     `json:"duration_ns"`
	Sent       uint64            `json:"sent"`
	OK         uint64            `json:"ok"`
	Overflow   uint64            `json:"overflow,omitempty"`
	Throughput float64           `json:"throughput_per_s"` // successful requests per second
	Statuses   map[string]uint64 `json:"statuses"`
	Latency    latency.Summary   `json:"latency"`
	// EndToEnd is 202 → webhook received, for e2e runs (zero for a
	// webhook that came before its 202 was read); for fan-out runs, from
	// when the event's request was due.
	EndToEnd *latency.Summary `json:"end_to_end,omitempty"`
	// FromDue is from when a job's request was due to its webhook: the
	// request's own time, and any wait for a connection, as well.
	FromDue   *latency.Summary `json:"due_to_webhook,omitempty"`
	Delivered uint64           `json:"delivered,omitempty"`
	Missing   uint64           `json:"missing,omitempty"` // accepted, no webhook by the end of the drain
	// Duplicates are webhooks received again with a webhook-id already seen.
	Duplicates uint64 `json:"duplicates,omitempty"`
	// WebhookRate is webhooks received per second, from the first request
	// to the last webhook: what the whole pipeline sustained.
	WebhookRate float64 `json:"webhooks_per_s,omitempty"`
	// WebhookPause is the longest time without a webhook, from the start
	// of the load to the last webhook: a few milliseconds unless the
	// pipeline stalled.
	WebhookPause time.Duration `json:"longest_webhook_pause_ns,omitempty"`
	PerSecond    []uint64      `json:"per_second"`
	Server       *serverStats  `json:"server,omitempty"`
}

func newReport(name string, r *loadRun, elapsed time.Duration) report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return report{
		Scenario: name, Rate: r.rate, Conns: r.conns, Duration: elapsed,
		Sent: r.sent.Load(), OK: r.ok.Load(), Overflow: r.overflow.Load(),
		Throughput: float64(r.ok.Load()) / elapsed.Seconds(),
		Statuses:   r.statuses, Latency: r.latency.Summary(), PerSecond: r.perSec,
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func (rep report) print(w io.Writer) {
	fmt.Fprintf(w, "%s: %d sent, %d ok, %.0f/s", rep.Scenario, rep.Sent, rep.OK, rep.Throughput)
	if rep.Overflow > 0 {
		fmt.Fprintf(w, ", %d not sent (%d s of requests queued)", rep.Overflow, maxQueued)
	}
	keys := make([]string, 0, len(rep.Statuses))
	for k := range rep.Statuses {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprint(w, "; statuses:")
	for _, k := range keys {
		fmt.Fprintf(w, " %s×%d", k, rep.Statuses[k])
	}
	fmt.Fprintln(w)
	l := rep.Latency
	fmt.Fprintf(w, "  request latency: p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n", ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max))
	if e := rep.EndToEnd; e != nil {
		fmt.Fprintf(w, "  202 → webhook:   p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (%d delivered, %d missing, %d duplicates, %.0f webhooks/s, longest pause %s)\n",
			ms(e.P50), ms(e.P90), ms(e.P99), ms(e.P999), ms(e.Max), rep.Delivered, rep.Missing, rep.Duplicates, rep.WebhookRate, ms(rep.WebhookPause))
	}
	if e := rep.FromDue; e != nil && e != rep.EndToEnd {
		fmt.Fprintf(w, "  due → webhook:   p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n", ms(e.P50), ms(e.P90), ms(e.P99), ms(e.P999), ms(e.Max))
	}
	if s := rep.Server; s != nil {
		fmt.Fprintf(w, "  server: %.0f %% CPU, peak RSS %.0f MiB\n", s.CPUPercent, s.PeakRSSMiB)
	}
}

func (rep report) writeJSON(w io.Writer) { writeJSON(w, rep) }

// writeJSON prints v as indented JSON, for -json.
func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
