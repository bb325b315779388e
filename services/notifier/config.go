package notifier

import (
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/secretbox"
	"github.com/hookstream/hookstream/shared/ssrf"
)

// Config configures the notifier.
type Config struct {
	// GroupCommit writes jobs, events, deliveries and records in group
	// commits (bus.GroupCommit): faster when the NATS server syncs every
	// write to disk, slower otherwise. Default false.
	GroupCommit bool
	// Guard refuses callbacks to non-public addresses at dial time. Required.
	Guard *ssrf.Guard
	// Box decrypts signing secrets. Required.
	Box *secretbox.Box
	// Schedule is the wait before each retry after the first attempt.
	// Default [DefaultSchedule]: 10 attempts over about three days.
	Schedule []time.Duration
	// Jitter spreads each scheduled wait by ± this fraction. Default 0.2.
	Jitter float64
	// InProcessMax: retries due within this wait run in process (sleeping);
	// later ones are scheduled in JetStream, where waiting holds no worker.
	// Default 1 s, so that with the default schedule (first wait 5 s) every
	// retry is durable and a dead endpoint never parks workers.
	InProcessMax time.Duration
	// AttemptTimeout bounds one HTTP attempt, connect to last byte. Default
	// 15 s.
	AttemptTimeout time.Duration
	// SlowDownWait is the least wait after an attempt that timed out or got
	// a 429, whatever the schedule says. Default 60 s.
	SlowDownWait time.Duration
	// MaxRetryAfter caps how far a receiver's Retry-After may push the next
	// attempt. Default 1 h.
	MaxRetryAfter time.Duration
	// Concurrency is how many deliveries are in flight at once in this
	// process. Default 64.
	Concurrency int
	// EndpointConcurrency is how many requests one process sends to one
	// endpoint (or callback host) at once. Default 8.
	EndpointConcurrency int
	// DirectAttempts is how many first attempts fan-out may make itself, at
	// once, for events with a single target (a job's callback, or one
	// subscribed endpoint) whose endpoint is within its limits. Such a
	// delivery skips the delivery queue: two JetStream writes fewer. What
	// does not succeed is scheduled for retry as on the queued path. When
	// all are busy, deliveries are queued as usual. An attempt that has
	// taken 2 s to a slow endpoint gives its slot back (slow.go). Default
	// 32; negative: every delivery is queued.
	DirectAttempts int
	// BreakerFailures opens an endpoint's circuit after this many failed
	// attempts in a row: for BreakerCooldown it gets nothing from this
	// process, then one probe. Its deliveries are parked meanwhile. Default
	// 10.
	BreakerFailures int
	// RecoveryAfter is the shortest failing period whose end is announced
	// (endpoint.recovered): a flaky endpoint's flips are not. Default 1
	// minute.
	RecoveryAfter time.Duration
	// ParkRate bounds how many deliveries per second the delivery consumer
	// parks (park.go). Moving a large backlog costs the server a read and a
	// write per delivery, and the parked copy's removal when it is drained;
	// spread out, it leaves the CPU and the disk to the endpoints that work.
	// Fan-out parks without this bound. Default 2,000.
	ParkRate int
	// MaxEventTypes bounds the event types recorded per tenant (each a
	// record kept until the tenant is deleted, which GET /v1/event-types
	// lists whole): events of later new types are delivered, not
	// recorded. Per process: with k notifiers a tenant may have up to k×
	// it. Default 1,000.
	MaxEventTypes int
	// TrimInterval is about how often the notifier removes what consumers
	// have acknowledged from the jobs, events and deliveries streams
	// (bus.Trim). Default bus.DefaultTrimInterval, 10 s.
	TrimInterval time.Duration
	// MaxAckPending bounds the deliveries out of the delivery stream at
	// once: in flight, or put back for a short wait. Default 100,000.
	MaxAckPending int
	// BreakerCooldown is how long an open circuit stays open before its
	// probe. Default 30 s.
	BreakerCooldown time.Duration
	// DisableAfter disables an endpoint that has failed every delivery for
	// this long. Default 5 days.
	DisableAfter time.Duration
	// ShutdownGrace is how long in-flight deliveries may finish at shutdown.
	// Default 10 s.
	ShutdownGrace time.Duration
	// UserAgent is sent on every webhook. Default "hookstream/<version>".
	UserAgent string
	// Now is the clock. Default time.Now.
	Now func() time.Time

	// parkedCheck and parkedRescan are how often a drain looks whether it
	// is empty and how often the parked stream is scanned (park.go);
	// shortened by tests.
	parkedCheck, parkedRescan time.Duration
	// maxDrains bounds the drains a process runs at once (park.go);
	// lowered by tests.
	maxDrains int
	// parkAfter replaces the const parkAfter (raised by tests).
	parkAfter uint64
	// slowAfter replaces the const slowAfter (slow.go; tests shorten it,
	// or turn it off with a negative value).
	slowAfter time.Duration
	// logGate, when set (tests), holds attempt logs' writes until closed.
	logGate <-chan struct{}
	// parkedGiveUp, when set (tests), replaces the age at which a parked
	// delivery is dead-lettered instead of held (giveUpAge).
	parkedGiveUp time.Duration
}

// DefaultSchedule is the wait before each retry, as DESIGN.md sets it.
var DefaultSchedule = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour,
	10 * time.Hour, 14 * time.Hour, 20 * time.Hour, 24 * time.Hour,
}

// Defaults.
const (
	DefaultJitter          = 0.2
	DefaultInProcessMax    = time.Second
	DefaultAttemptTimeout  = 15 * time.Second
	DefaultMaxRetryAfter   = time.Hour
	DefaultSlowDownWait    = 60 * time.Second
	DefaultConcurrency     = 64
	DefaultDirectAttempts  = 32
	DefaultShutdownGrace   = 10 * time.Second
	DefaultDisableAfter    = 5 * 24 * time.Hour
	DefaultBreakerFailures = 10
	// DefaultRecoveryAfter is the shortest failing period announced
	// recovered.
	DefaultRecoveryAfter = time.Minute
	DefaultMaxAckPending = 100_000
	DefaultParkRate      = 2000
	DefaultMaxEventTypes = 1000
	// DefaultBreakerCooldown is how long an open circuit waits for its probe.
	DefaultBreakerCooldown = 30 * time.Second
	// DefaultEndpointConcurrency bounds requests in flight per endpoint.
	DefaultEndpointConcurrency = 8
	// MaxResponseBytes is the most of a receiver's response that is read.
	MaxResponseBytes = 64 << 10
	// loggedResponseBytes is the most of it kept in the attempt log.
	loggedResponseBytes = 4 << 10
)

// Version is hookstream's version, sent in the User-Agent: what the Go
// toolchain stamped into the binary (BuildVersion), "dev" when nothing was.
var Version = BuildVersion(debug.ReadBuildInfo())

// BuildVersion is the version of a build: its module version (a release
// tag, or since Go 1.24 a pseudo-version of the commit it was built from,
// "+dirty" with uncommitted changes), else its commit, else "dev".
func BuildVersion(info *debug.BuildInfo, ok bool) string {
	if !ok {
		return "dev"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	rev = rev[:min(len(rev), 12)]
	if dirty {
		rev += "+dirty"
	}
	return rev
}

// WithDefaults fills in every zero field with its default.
func (c Config) WithDefaults() Config {
	if c.Schedule == nil {
		c.Schedule = DefaultSchedule
	}
	if c.Jitter == 0 {
		c.Jitter = DefaultJitter
	}
	if c.InProcessMax == 0 {
		c.InProcessMax = DefaultInProcessMax
	}
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = DefaultAttemptTimeout
	}
	if c.SlowDownWait == 0 {
		c.SlowDownWait = DefaultSlowDownWait
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.DirectAttempts == 0 {
		c.DirectAttempts = DefaultDirectAttempts
	}
	if c.EndpointConcurrency == 0 {
		c.EndpointConcurrency = DefaultEndpointConcurrency
	}
	if c.parkedCheck == 0 {
		c.parkedCheck = parkedCheck
	}
	if c.parkedRescan == 0 {
		c.parkedRescan = parkedRescan
	}
	if c.maxDrains == 0 {
		c.maxDrains = maxDrains
	}
	if c.parkAfter == 0 {
		c.parkAfter = parkAfter
	}
	if c.slowAfter == 0 {
		c.slowAfter = slowAfter
	}
	if c.MaxEventTypes == 0 {
		c.MaxEventTypes = DefaultMaxEventTypes
	}
	if c.ParkRate == 0 {
		c.ParkRate = DefaultParkRate
	}
	if c.TrimInterval == 0 {
		c.TrimInterval = bus.DefaultTrimInterval
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = DefaultMaxAckPending
	}
	if c.BreakerCooldown == 0 {
		c.BreakerCooldown = DefaultBreakerCooldown
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = DefaultBreakerFailures
	}
	if c.RecoveryAfter == 0 {
		c.RecoveryAfter = DefaultRecoveryAfter
	}
	if c.DisableAfter == 0 {
		c.DisableAfter = DefaultDisableAfter
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	if c.UserAgent == "" {
		c.UserAgent = "hookstream/" + Version
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first bad field.
func (c Config) Validate() error {
	if c.Guard == nil {
		return errors.New("Guard: required")
	}
	if c.Box == nil {
		return errors.New("Box: required")
	}
	for i, d := range c.Schedule {
		if d <= 0 {
			return fmt.Errorf("Schedule: wait %d is not positive", i+1)
		}
	}
	switch {
	case c.Jitter < 0 || c.Jitter >= 1:
		return errors.New("Jitter: must be in [0, 1)")
	case c.AttemptTimeout < time.Second:
		return errors.New("AttemptTimeout: must be at least 1s")
	case c.Concurrency < 1:
		return errors.New("Concurrency: must be at least 1")
	case c.ParkRate < 1:
		return errors.New("ParkRate: must be at least 1")
	case c.MaxEventTypes < 1:
		return errors.New("MaxEventTypes: must be at least 1")
	case c.TrimInterval < 0:
		return errors.New("TrimInterval: must not be negative")
	case c.MaxAckPending < 1:
		return errors.New("MaxAckPending: must be at least 1")
	case c.EndpointConcurrency < 1:
		return errors.New("EndpointConcurrency: must be at least 1")
	case c.BreakerCooldown < 0:
		return errors.New("BreakerCooldown: must not be negative")
	case c.InProcessMax < 0 || c.MaxRetryAfter < 0:
		return errors.New("InProcessMax, MaxRetryAfter: must not be negative")
	}
	return nil
}
