// Package metrics counts what hookstream does, in the Prometheus text
// format: a few counters with bounded label sets, registered once at package
// level and written by intake's /metrics and by the ops address
// (HOOKSTREAM_OPS_ADDR) of any process. In split mode each process counts
// its own work; a processor or notifier serves it only at its ops address.
package metrics

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Counter is a monotonically increasing count per label value.
type Counter struct {
	name, help, label string
	values            sync.Map // label value → *atomic.Uint64
}

var (
	mu       sync.Mutex
	counters []*Counter
)

// NewCounter registers a counter with one label (or none, with label "").
func NewCounter(name, help, label string) *Counter {
	c := &Counter{name: name, help: help, label: label}
	mu.Lock()
	counters = append(counters, c)
	mu.Unlock()
	return c
}

// Inc adds one for the label value.
func (c *Counter) Inc(value string) { c.Add(value, 1) }

// Add adds n for the label value.
func (c *Counter) Add(value string, n uint64) {
	v, ok := c.values.Load(value)
	if !ok {
		v, _ = c.values.LoadOrStore(value, new(atomic.Uint64))
	}
	v.(*atomic.Uint64).Add(n)
}

// WriteTo writes every counter in the Prometheus text format.
func WriteTo(w io.Writer) {
	mu.Lock()
	all := slices.Clone(counters)
	mu.Unlock()
	for _, c := range all {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", c.name, c.help, c.name)
		var lines []string
		c.values.Range(func(k, v any) bool {
			if c.label == "" {
				lines = append(lines, fmt.Sprintf("%s %d", c.name, v.(*atomic.Uint64).Load()))
			} else {
				lines = append(lines, fmt.Sprintf("%s{%s=%q} %d", c.name, c.label, k.(string), v.(*atomic.Uint64).Load()))
			}
			return true
		})
		slices.Sort(lines)
		io.WriteString(w, strings.Join(lines, "\n"))
		if len(lines) > 0 {
			io.WriteString(w, "\n")
		}
	}
}

// The counters hookstream keeps.
var (
	HTTPResponses  = NewCounter("hookstream_http_responses_total", "HTTP responses of the API by status code.", "code")
	JobsAccepted   = NewCounter("hookstream_jobs_accepted_total", "Jobs answered 202.", "")
	JobsFinished   = NewCounter("hookstream_jobs_finished_total", "Jobs that reached a terminal status.", "status")
	EventsFanned   = NewCounter("hookstream_events_fanned_out_total", "Events turned into deliveries.", "")
	DeadLetters    = NewCounter("hookstream_dead_letters_total", "Messages dead-lettered, by kind.", "kind")
	WebhookResults = NewCounter("hookstream_webhook_attempts_total", "Webhook attempts by outcome: success, failure, gone, blocked.", "outcome")
	Writes         = NewCounter("hookstream_jetstream_writes_total", "Messages published to JetStream through group commits, by how: batched (in an atomic batch) or single.", "how")
	GroupCommits   = NewCounter("hookstream_group_commits_total", "Atomic batches written by group commits.", "")
	JobBatches     = NewCounter("hookstream_job_batches_total", "Job batches intake wrote: messages holding several jobs.", "")
	JobsBatched    = NewCounter("hookstream_jobs_batched_total", "Jobs intake wrote in job batches.", "")
	Parked         = NewCounter("hookstream_deliveries_parked_total", "Deliveries parked because their endpoint's circuit was open, or it stayed at its limits.", "")
	Deliveries     = NewCounter("hookstream_deliveries_finished_total", "Deliveries settled by status: succeeded, failed, pending (retry scheduled).", "status")
)
