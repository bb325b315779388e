package intake

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/secretbox"
	"github.com/hookstream/hookstream/shared/ssrf"
)

// Config configures the intake service.
type Config struct {
	// GroupCommit writes jobs, events, deliveries and records in group
	// commits (bus.GroupCommit): faster when the NATS server syncs every
	// write to disk, slower otherwise. Default false.
	GroupCommit bool
	// JobBatches writes the jobs stored as their message alone that wait at
	// the same moment for the same subject as one message (a job batch, read
	// only by processors that know batches): one write, and one message for
	// the server, for all of them, which pays with or without a disk sync per
	// write. Default false.
	JobBatches bool
	// Addr is the HTTP listen address. Default ":8080". Ignored when
	// Listener is set.
	Addr string
	// Listener, when set, is served instead of listening on Addr (tests pass
	// one bound to a random port).
	Listener net.Listener
	// RecordReader, when set, is the JetStream that job records are read
	// through; everything else uses the one given to New. Give it a
	// connection of its own: nats-server serves a key's read in the read
	// loop of the connection that asked, and while it saves the records'
	// index (a second or two with 700,000 kept) such a read waits, and so
	// does everything sent after it on that connection: intake's job writes
	// (docs/performance.md, finding 21). Default: the one given to New.
	RecordReader jetstream.JetStream
	// APIKeys maps API keys to tenants. At least one is required.
	APIKeys []APIKey
	// JobTypes are the job types accepted; others get 422. Required.
	JobTypes []string
	// ExternalJobTypes are those of JobTypes that processors outside
	// hookstream run. Their record is written at submit, next to their
	// message, as the NATS contract promises such processors. For the other
	// types, a job without an Idempotency-Key is stored as its message
	// alone, and the processor writes its record (one disk sync fewer per
	// job); until then it is read from that message.
	ExternalJobTypes []string
	// Guard validates callback URLs. Required.
	Guard *ssrf.Guard
	// AdminToken guards /v1/admin. Empty: the admin API is off.
	AdminToken string
	// Box encrypts signing secrets at rest, and masks the stream sequence in
	// the ids of jobs stored as their message alone: the processors' Box
	// must hold the same key. Required.
	Box *secretbox.Box
	// RetrySchedule is the deployment's webhook retry waits (the notifier's
	// Schedule): how far back before an endpoint began to fail the
	// recovery offered when it is enabled again reaches.
	RetrySchedule []time.Duration
	// MaxBodyBytes limits request bodies. Default 1 MiB.
	MaxBodyBytes int64
	// MaxJSONDepth limits nesting of request JSON. Default 32.
	MaxJSONDepth int
	// PublishTimeout bounds the wait for JetStream's acknowledgement; past it
	// the request answers 503. With group commits, a write already sent when
	// it passes is waited for (up to the JetStream's own timeout), so that a
	// stored job is not answered 503. Default 5 s.
	PublishTimeout time.Duration
	// MaxWait is the longest ?wait= long-poll. Default 60 s.
	MaxWait time.Duration
	// MaxWaitsPerTenant bounds a tenant's long-polls and event streams open
	// at once in this process (each holds a watch on the server); more get
	// 429. Default 256.
	MaxWaitsPerTenant int
	// MaxEndpointsPerTenant bounds a tenant's endpoints: every notifier
	// keeps every endpoint in memory. Checked at create, so creates at the
	// same moment may pass it by the number in flight. Default 1,000.
	MaxEndpointsPerTenant int
	// RetryAfter is the Retry-After of 202 and 503 answers. Default 1 s.
	RetryAfter time.Duration
	// JobRetention is how long a job is kept; it sets expires_at. Default 7
	// days (bus.DefaultJobRetention).
	JobRetention time.Duration
	// MaxInflight is how many write requests (POST /v1/jobs, /v1/events)
	// are served at once; more get 503 with Retry-After. Default 1024.
	MaxInflight int
	// TenantRate is the most write requests per second per tenant per
	// intake process (burst: one second's worth); more get 429 with
	// Retry-After. Zero: no limit (the default).
	TenantRate int
	// SecretGrace is how long a rotated-out signing secret keeps signing.
	// Default 24 h, at most 7 days.
	SecretGrace time.Duration
}

// APIKey gives a tenant access.
type APIKey struct {
	Tenant string
	Key    string
}

// Defaults.
const (
	DefaultAddr           = ":8080"
	DefaultMaxBodyBytes   = 1 << 20
	DefaultMaxJSONDepth   = 32
	DefaultPublishTimeout = 5 * time.Second
	DefaultMaxWait        = 60 * time.Second
	DefaultMaxWaits       = 256
	DefaultMaxEndpoints   = 1000
	DefaultRetryAfter     = time.Second
	DefaultSecretGrace    = 24 * time.Hour
	DefaultMaxInflight    = 1024
	MaxSecretGrace        = 7 * 24 * time.Hour
	// MinAPIKeyLength is the shortest API key or admin token accepted.
	MinAPIKeyLength = 16
)

// WithDefaults fills in every zero field with its default.
func (c Config) WithDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxJSONDepth == 0 {
		c.MaxJSONDepth = DefaultMaxJSONDepth
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.MaxWait == 0 {
		c.MaxWait = DefaultMaxWait
	}
	if c.MaxWaitsPerTenant == 0 {
		c.MaxWaitsPerTenant = DefaultMaxWaits
	}
	if c.MaxEndpointsPerTenant == 0 {
		c.MaxEndpointsPerTenant = DefaultMaxEndpoints
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = DefaultRetryAfter
	}
	if c.JobRetention == 0 {
		c.JobRetention = 7 * 24 * time.Hour
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.SecretGrace == 0 {
		c.SecretGrace = DefaultSecretGrace
	}
	return c
}

// keyTaken tells why k's key cannot be k's tenant's: it is another tenant's
// (one would sign in as the other) or the admin token. owner records it.
func keyTaken(owner map[string]string, k APIKey, adminToken string) error {
	if other, ok := owner[k.Key]; ok && other != k.Tenant {
		return fmt.Errorf("tenants %q and %q have the same key; a key names one tenant", other, k.Tenant)
	}
	if adminToken != "" && k.Key == adminToken {
		return fmt.Errorf("the key of tenant %q is the admin token; use another", k.Tenant)
	}
	owner[k.Key] = k.Tenant
	return nil
}

// Validate reports the first bad field.
func (c Config) Validate() error {
	if len(c.APIKeys) == 0 && c.AdminToken == "" {
		return errors.New("APIKeys: at least one tenant key is required when there is no AdminToken to issue keys")
	}
	if c.AdminToken != "" && len(c.AdminToken) < MinAPIKeyLength {
		return fmt.Errorf("AdminToken: shorter than %d characters", MinAPIKeyLength)
	}
	owner := map[string]string{} // key → tenant
	for _, k := range c.APIKeys {
		if !contract.ValidTenant(k.Tenant) {
			return fmt.Errorf("APIKeys: tenant %q: use 1-64 of a-z A-Z 0-9 - _", k.Tenant)
		}
		if len(k.Key) < MinAPIKeyLength {
			return fmt.Errorf("APIKeys: key of tenant %q is shorter than %d characters", k.Tenant, MinAPIKeyLength)
		}
		if err := keyTaken(owner, k, c.AdminToken); err != nil {
			return fmt.Errorf("APIKeys: %w", err)
		}
	}
	if len(c.JobTypes) == 0 {
		return errors.New("JobTypes: at least one job type is required")
	}
	for _, t := range c.JobTypes {
		if !contract.ValidType(t) {
			return fmt.Errorf("JobTypes: %q is not a valid type", t)
		}
	}
	for _, t := range c.ExternalJobTypes {
		if !slices.Contains(c.JobTypes, t) {
			return fmt.Errorf("ExternalJobTypes: %q is not one of JobTypes", t)
		}
	}
	if c.Guard == nil {
		return errors.New("Guard: required")
	}
	if c.Box == nil {
		return errors.New("Box: required")
	}
	switch {
	case c.MaxBodyBytes < 1024:
		return errors.New("MaxBodyBytes: must be at least 1024")
	case c.MaxJSONDepth < 2:
		return errors.New("MaxJSONDepth: must be at least 2")
	case c.PublishTimeout < 0, c.MaxWait < 0, c.RetryAfter < 0, c.JobRetention < 0:
		return errors.New("PublishTimeout, MaxWait, RetryAfter, JobRetention: must not be negative")
	case c.MaxWaitsPerTenant < 0:
		return errors.New("MaxWaitsPerTenant: must not be negative")
	case c.MaxEndpointsPerTenant < 0:
		return errors.New("MaxEndpointsPerTenant: must not be negative")
	case c.MaxInflight < 1 || c.TenantRate < 0:
		return errors.New("MaxInflight, TenantRate: MaxInflight at least 1, TenantRate not negative")
	case c.SecretGrace < 0 || c.SecretGrace > MaxSecretGrace:
		return errors.New("SecretGrace: must be between 0 and 7 days")
	}
	return nil
}

// keyIndex maps the SHA-256 of each key to its tenant, so that keys are not
// compared byte by byte and lookups take the same time for every key.
func (c Config) keyIndex() map[[sha256.Size]byte]string {
	idx := make(map[[sha256.Size]byte]string, len(c.APIKeys))
	for _, k := range c.APIKeys {
		idx[sha256.Sum256([]byte(k.Key))] = k.Tenant
	}
	return idx
}
