package processor

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/secretbox"
)

// Config configures the processor.
type Config struct {
	// GroupCommit writes jobs, events, deliveries and records in group
	// commits (bus.GroupCommit): faster when the NATS server syncs every
	// write to disk, slower otherwise. Default false.
	GroupCommit bool
	// RecordReader, when set, is the JetStream that job records are read
	// through; everything else uses the one given to New. Give it a
	// connection of its own: nats-server serves a key's read in the read
	// loop of the connection that asked, and while it saves the records'
	// index (a second or two with 700,000 kept) such a read waits, and so
	// does everything sent after it on that connection (docs/performance.md,
	// finding 21). Default: the one given to New.
	RecordReader jetstream.JetStream
	// Handlers maps job types to their handlers. At least one is required.
	Handlers map[string]Handler
	// Box holds the deployment's secret key, which masks the stream
	// sequence in the ids of jobs that intake submits without a record
	// (secretbox.Box.JobIDMask); it must be intake's. Required.
	Box *secretbox.Box
	// Concurrency is how many jobs of each type run at once in this process.
	// Default 64: with every write synced, the records and events of that
	// many jobs at once make group commits (16 held about 1,000 jobs/s end
	// to end, 64 about 1,500; docs/performance.md, finding 12).
	Concurrency int
	// MaxAttempts is how often a job runs before it fails. Default 5.
	MaxAttempts int
	// AckWait is how long JetStream waits for a sign of life before it
	// redelivers a job to another processor; running jobs report progress
	// every AckWait/3. Default 30 s.
	AckWait time.Duration
	// ShutdownGrace is how long running jobs may finish at shutdown before
	// they are interrupted (and run again later). Default 10 s.
	ShutdownGrace time.Duration
	// JobRetention sets expires_at of jobs that arrive over NATS without a
	// record. Default 7 days.
	JobRetention time.Duration
	// RetryDelay is the wait before attempt n+1 after attempt n failed.
	// Default: [DefaultRetryDelay].
	RetryDelay func(attempt int) time.Duration
	// RunningAfter is how long a job's first delivery runs before its
	// record says "running". A job done sooner is stored once, with its
	// result, instead of twice. Redeliveries are marked running before they
	// start, so an attempt that crashed the processor is always counted.
	// Default 100 ms; negative: always before the job starts.
	RunningAfter time.Duration

	// progressEvery is the most often progress is written (progressEvery);
	// lengthened by tests.
	progressEvery time.Duration
}

// Defaults.
const (
	DefaultConcurrency   = 64
	DefaultMaxAttempts   = 5
	DefaultAckWait       = 30 * time.Second
	DefaultShutdownGrace = 10 * time.Second
	DefaultRunningAfter  = 100 * time.Millisecond
)

// DefaultRetryDelay is 1 s doubled per failed attempt, at most 5 minutes,
// with ±20 % jitter.
func DefaultRetryDelay(attempt int) time.Duration {
	d := time.Second << min(max(attempt-1, 0), 20)
	d = min(d, 5*time.Minute)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// WithDefaults fills in every zero field with its default.
func (c Config) WithDefaults() Config {
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	if c.JobRetention == 0 {
		c.JobRetention = 7 * 24 * time.Hour
	}
	if c.RetryDelay == nil {
		c.RetryDelay = DefaultRetryDelay
	}
	if c.RunningAfter == 0 {
		c.RunningAfter = DefaultRunningAfter
	}
	if c.progressEvery == 0 {
		c.progressEvery = progressEvery
	}
	return c
}

// Validate reports the first bad field.
func (c Config) Validate() error {
	if len(c.Handlers) == 0 {
		return errors.New("Handlers: at least one job type is required")
	}
	for t, h := range c.Handlers {
		if !contract.ValidType(t) || h == nil {
			return fmt.Errorf("Handlers: job type %q is invalid or has no handler", t)
		}
	}
	switch {
	case c.Box == nil:
		return errors.New("Box: required")
	case c.Concurrency < 1:
		return errors.New("Concurrency: must be at least 1")
	case c.MaxAttempts < 1:
		return errors.New("MaxAttempts: must be at least 1")
	case c.AckWait < time.Second:
		return errors.New("AckWait: must be at least 1s")
	}
	return nil
}
