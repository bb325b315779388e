// Package endpoints keeps the callback URLs that tenants register: their
// event-type subscriptions, custom headers and signing keyrings (sealed at
// rest) in the contract.BucketEndpoints bucket. Index is a live in-memory
// view of the bucket, kept current by a KV watch, that fan-out matches
// events against.
package endpoints

import (
	"net/textproto"
	"strings"
	"time"

	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/signing"
)

// Bounds of per-endpoint overrides of the deployment's delivery settings.
const (
	MaxAttemptTimeout = 60 * time.Second
	MaxScheduleWaits  = 20
	MaxScheduleWait   = 24 * time.Hour
)

// Endpoint is a registered callback URL.
type Endpoint struct {
	ID          string `json:"id"`
	Tenant      string `json:"tenant"`
	URL         string `json:"url"`
	Description string `json:"description,omitempty"`
	// EventTypes are exact types or patterns: "job.*" matches one more
	// token, "invoice.>" one or more. Empty: every event.
	EventTypes []string `json:"event_types"`
	Enabled    bool     `json:"enabled"`
	// RateLimit is the most requests per second to send; 0: no limit.
	RateLimit int `json:"rate_limit,omitempty"`
	// Headers are sent with every webhook.
	Headers        map[string]string `json:"headers,omitempty"`
	DisabledReason string            `json:"disabled_reason,omitempty"`
	// AttemptTimeout overrides the deployment's attempt timeout; zero: the
	// deployment's.
	AttemptTimeout time.Duration `json:"attempt_timeout,omitempty"`
	// RetrySchedule overrides the deployment's retry schedule; nil: the
	// deployment's.
	RetrySchedule []time.Duration `json:"retry_schedule,omitempty"`
	// FailingSince is when the endpoint started failing every delivery;
	// nil while it succeeds.
	FailingSince *time.Time `json:"failing_since,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	// Keyring signs the webhooks. It is stored sealed, never in clear.
	Keyring signing.Keyring `json:"-"`
	// Revision is the KV revision this state was read or written at.
	Revision uint64 `json:"-"`
	// unreadable is the sealed keyring this process could not open
	// (Keyring is then empty), kept when the endpoint is written again.
	unreadable string
}

// Matches reports whether the endpoint subscribes to eventType.
func (e *Endpoint) Matches(eventType string) bool {
	if len(e.EventTypes) == 0 {
		return true
	}
	for _, p := range e.EventTypes {
		if MatchType(p, eventType) {
			return true
		}
	}
	return false
}

// MatchType matches an event type against a pattern with NATS-style
// wildcards: "*" is one dot-separated token, a final ">" one or more.
func MatchType(pattern, eventType string) bool {
	if !strings.ContainsAny(pattern, "*>") {
		return pattern == eventType
	}
	for {
		pTok, pRest, pMore := strings.Cut(pattern, ".")
		tTok, tRest, tMore := strings.Cut(eventType, ".")
		switch {
		case pTok == ">":
			return tTok != ""
		case pTok != "*" && pTok != tTok:
			return false
		case !pMore || !tMore:
			return pMore == tMore
		}
		pattern, eventType = pRest, tRest
	}
}

// ValidPattern reports whether p is an event type or pattern: dot-separated
// tokens of an event type's characters (contract.ValidType), "*", or a
// final ">"; at most 128 bytes. Anything else could never match an event.
func ValidPattern(p string) bool {
	if p == "" || len(p) > 128 {
		return false
	}
	tokens := strings.Split(p, ".")
	for i, tok := range tokens {
		switch {
		case tok == ">":
			if i != len(tokens)-1 {
				return false
			}
		case tok == "*":
		case !contract.ValidType(tok):
			return false
		}
	}
	return true
}

// reservedHeaders are set by hookstream on every webhook, or describe the
// request's transport (its encoding, the connection), which the HTTP
// client alone decides: a webhook sent "Content-Encoding: gzip" over a
// plain body could not be read.
var reservedHeaders = map[string]bool{
	"Content-Type": true, "Content-Length": true, "Host": true, "User-Agent": true,
	"Webhook-Id": true, "Webhook-Timestamp": true, "Webhook-Signature": true,
	"Transfer-Encoding": true, "Connection": true, "Content-Encoding": true, "Te": true,
	"Trailer": true, "Upgrade": true, "Keep-Alive": true, "Proxy-Connection": true, "Expect": true,
}

// ReservedHeader tells whether an endpoint may not set the header name
// (any spelling): intake refuses it, and the notifier does not send one an
// endpoint stored before it was reserved.
func ReservedHeader(name string) bool {
	return reservedHeaders[textproto.CanonicalMIMEHeaderKey(name)]
}
