package intake

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/net/http/httpguts"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/endpoints"
	"github.com/hookstream/hookstream/shared/signing"
	"github.com/hookstream/hookstream/shared/webhook"
)

// Endpoint limits. With the URL's 2,048 bytes, they bound an endpoint to
// about 32 KiB, which every notifier keeps in memory.
const (
	maxEventPatterns = 100
	maxHeaders       = 20
	maxHeaderName    = 256
	maxHeaderValue   = 4096
	maxHeaderBytes   = 16 << 10 // names and values of all its headers
	maxDescription   = 1024
	maxRateLimit     = 10000
	// maxEndpointBody bounds the body of an endpoint's create, change and
	// secret rotation, below HOOKSTREAM_MAX_BODY_BYTES: an endpoint is
	// about 32 KiB at most (64 KiB with its headers' values escaped), and
	// its body is decoded two or three times before the limits above are
	// checked.
	maxEndpointBody = 128 << 10
)

// endpointView is an endpoint as the API shows it; Secret only on create.
type endpointView struct {
	ID             string            `json:"id"`
	URL            string            `json:"url"`
	Description    string            `json:"description,omitempty"`
	EventTypes     []string          `json:"event_types"`
	Enabled        bool              `json:"enabled"`
	RateLimit      int               `json:"rate_limit,omitempty"`
	Headers        map[string]string `json:"headers,omitempty"`
	DisabledReason string            `json:"disabled_reason,omitempty"`
	AttemptTimeout string            `json:"attempt_timeout,omitempty"`
	RetrySchedule  []string          `json:"retry_schedule,omitempty"`
	FailingSince   *time.Time        `json:"failing_since,omitempty"`
	// Parked is how many of its webhooks wait in JetStream, parked while
	// its circuit is open or it is at its limits; nil where not read.
	Parked *uint64 `json:"parked,omitempty"`
	// Recover is set when a PATCH re-enables a disabled endpoint.
	Recover   *recoverOffer `json:"recover,omitempty"`
	CreatedAt time.Time     `json:"created_at"`
	UpdatedAt time.Time     `json:"updated_at"`
	Secret    string        `json:"secret,omitempty"`
}

func viewOf(ep endpoints.Endpoint) endpointView {
	types := ep.EventTypes
	if types == nil {
		types = []string{}
	}
	v := endpointView{
		ID: ep.ID, URL: ep.URL, Description: ep.Description, EventTypes: types, Enabled: ep.Enabled,
		RateLimit: ep.RateLimit, Headers: ep.Headers, DisabledReason: ep.DisabledReason, FailingSince: ep.FailingSince,
		CreatedAt: ep.CreatedAt, UpdatedAt: ep.UpdatedAt,
	}
	if ep.AttemptTimeout > 0 {
		v.AttemptTimeout = ep.AttemptTimeout.String()
	}
	for _, d := range ep.RetrySchedule {
		v.RetrySchedule = append(v.RetrySchedule, d.String())
	}
	return v
}

// endpointPatch is the body of POST (all fields) and PATCH (any of them).
type endpointPatch struct {
	URL         *string            `json:"url"`
	EventTypes  *[]string          `json:"event_types"`
	Description *string            `json:"description"`
	Enabled     *bool              `json:"enabled"`
	RateLimit   *int               `json:"rate_limit"`
	Headers     *map[string]string `json:"headers"`
	// AttemptTimeout ("10s") and RetrySchedule (["1m","10m"]) override the
	// deployment's, within endpoints.MaxAttemptTimeout and endpoints.MaxScheduleWait; "" and []
	// go back to the deployment's.
	AttemptTimeout *string   `json:"attempt_timeout"`
	RetrySchedule  *[]string `json:"retry_schedule"`

	// nulls are the fields the PATCH set to null: back to their defaults.
	nulls map[string]bool
	// mergeHeaders (a JSON merge patch, RFC 7396): Headers are merged
	// into the endpoint's, and those in removeHeaders (null) removed;
	// otherwise Headers replace them all.
	mergeHeaders  bool
	removeHeaders []string
}

// refuseNullHeaders answers 422 for a header given as null in a body that is
// not a merge patch, which encoding/json reads as "": null removes a header
// only in a merge patch.
func refuseNullHeaders(body []byte) error {
	var given struct {
		Headers map[string]*string `json:"headers"`
	}
	_ = json.Unmarshal(body, &given) // decoded already: only the headers are looked at
	for name, v := range given.Headers {
		if v == nil {
			return invalid(fmt.Sprintf(`field "headers": %.300q is null; a header's value is a string (null removes a header only in a merge patch)`, name))
		}
	}
	return nil
}

// patchFields are the JSON names of endpointPatch's fields.
var patchFields = []string{"url", "event_types", "description", "enabled", "rate_limit", "headers", "attempt_timeout", "retry_schedule"}

// patchField is the field of endpointPatch that encoding/json reads name
// into, or name itself (an unknown field, which decoding refused).
func patchField(name string) string {
	for _, f := range patchFields {
		if strings.EqualFold(f, name) {
			return f
		}
	}
	return name
}

// readPatch reads the body of a PATCH: JSON, or a JSON merge patch (RFC
// 7396), where null resets a field to its default and headers are merged
// into the endpoint's (a header set to null is removed). In plain JSON too,
// null resets a field; headers then replace the endpoint's.
func (s *Service) readPatch(c *gin.Context) (endpointPatch, error) {
	var p endpointPatch
	if err := checkContentType(c); err != nil {
		return p, err
	}
	body, err := readBody(c, min(s.cfg.MaxBodyBytes, maxEndpointBody))
	if err != nil {
		return p, err
	}
	if err := decodeJSON(body, s.cfg.MaxJSONDepth, &p); err != nil {
		var given struct {
			Secret json.RawMessage `json:"secret"`
		}
		if json.Unmarshal(body, &given) == nil && given.Secret != nil {
			return p, invalid(`field "secret": an endpoint's secret changes by POST /v1/endpoints/{id}/secret/rotate, with the old one signing too for a grace period`)
		}
		return p, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return p, badRequest("the body must be a JSON object")
	}
	// encoding/json matched the fields as it folds case (strings.EqualFold):
	// so here, and one field given twice is refused rather than read as
	// whichever came last.
	byField := make(map[string]json.RawMessage, len(fields))
	for given, raw := range fields {
		name := patchField(given)
		if _, twice := byField[name]; twice {
			return p, badRequest(fmt.Sprintf("field %q is given twice", name))
		}
		byField[name] = raw
		if string(bytes.TrimSpace(raw)) == "null" {
			if p.nulls == nil {
				p.nulls = map[string]bool{}
			}
			p.nulls[name] = true
		}
	}
	mt, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if mt != "application/merge-patch+json" {
		if err := refuseNullHeaders(body); err != nil {
			return p, err
		}
	}
	if raw, ok := byField["headers"]; ok && mt == "application/merge-patch+json" && !p.nulls["headers"] {
		var merge map[string]*string
		if err := json.Unmarshal(raw, &merge); err != nil {
			return p, invalid(`field "headers": an object of header names and values (or null, to remove one)`)
		}
		set := map[string]string{}
		given := map[string]bool{}
		for name, v := range merge {
			canon := textproto.CanonicalMIMEHeaderKey(name)
			if given[canon] {
				return p, invalid(fmt.Sprintf(`field "headers": %s is given twice (header names are case-insensitive)`, canon))
			}
			given[canon] = true
			if v == nil {
				p.removeHeaders = append(p.removeHeaders, name)
			} else {
				set[name] = *v
			}
		}
		p.Headers, p.mergeHeaders = &set, true
	}
	return p, nil
}

// apply validates the patch and applies it to ep.
func (s *Service) applyPatch(ep *endpoints.Endpoint, p endpointPatch) error {
	if err := resetNulls(ep, p.nulls); err != nil {
		return err
	}
	if p.URL != nil {
		if err := s.cfg.Guard.CheckURL(*p.URL); err != nil {
			return invalid(fmt.Sprintf(`field "url": %v`, err))
		}
		if *p.URL != ep.URL {
			ep.FailingSince = nil // the old URL's failures are not the new one's
		}
		ep.URL = *p.URL
	}
	if p.EventTypes != nil {
		if len(*p.EventTypes) > maxEventPatterns {
			return invalid(fmt.Sprintf(`field "event_types": at most %d`, maxEventPatterns))
		}
		for _, t := range *p.EventTypes {
			if !endpoints.ValidPattern(t) {
				return invalid(fmt.Sprintf(`field "event_types": %q is not an event type or pattern (job.succeeded, job.*, invoice.>)`, t))
			}
		}
		ep.EventTypes = *p.EventTypes
	}
	if p.Description != nil {
		if len(*p.Description) > maxDescription {
			return invalid(fmt.Sprintf(`field "description": at most %d bytes`, maxDescription))
		}
		ep.Description = *p.Description
	}
	if p.RateLimit != nil {
		if *p.RateLimit < 0 || *p.RateLimit > maxRateLimit {
			return invalid(fmt.Sprintf(`field "rate_limit": requests per second from 0 (no limit) to %d`, maxRateLimit))
		}
		ep.RateLimit = *p.RateLimit
	}
	if p.Headers != nil {
		headers := *p.Headers
		if p.mergeHeaders {
			headers = mergeHeaders(ep.Headers, headers, p.removeHeaders)
		}
		if err := checkHeaders(headers); err != nil {
			return err
		}
		ep.Headers = headers
	}
	if p.Enabled != nil {
		if *p.Enabled && !ep.Enabled {
			ep.DisabledReason, ep.FailingSince = "", nil
		}
		ep.Enabled = *p.Enabled
	}
	return s.applyOverrides(ep, p)
}

// resetNulls sets the fields that a PATCH set to null back to their
// defaults; url and enabled have none.
func resetNulls(ep *endpoints.Endpoint, nulls map[string]bool) error {
	for name := range nulls {
		switch name {
		case "url", "enabled":
			return invalid(fmt.Sprintf(`field %q: must not be null`, name))
		case "event_types":
			ep.EventTypes = nil
		case "description":
			ep.Description = ""
		case "rate_limit":
			ep.RateLimit = 0
		case "headers":
			ep.Headers = nil
		case "attempt_timeout":
			ep.AttemptTimeout = 0
		case "retry_schedule":
			ep.RetrySchedule = nil
		}
	}
	return nil
}

// mergeHeaders is old with set merged in and remove taken out, names
// compared as HTTP compares them.
func mergeHeaders(old, set map[string]string, remove []string) map[string]string {
	out := map[string]string{}
	drop := func(name string) {
		for k := range out {
			if textproto.CanonicalMIMEHeaderKey(k) == textproto.CanonicalMIMEHeaderKey(name) {
				delete(out, k)
			}
		}
	}
	for name, v := range old {
		if !endpoints.ReservedHeader(name) { // stored before it was reserved; no longer sent
			out[name] = v
		}
	}
	for _, name := range remove {
		drop(name)
	}
	for name, v := range set {
		drop(name)
		out[name] = v
	}
	return out
}

func (s *Service) applyOverrides(ep *endpoints.Endpoint, p endpointPatch) error {
	if p.AttemptTimeout != nil {
		ep.AttemptTimeout = 0
		if *p.AttemptTimeout != "" {
			d, err := time.ParseDuration(*p.AttemptTimeout)
			if err != nil || d < time.Second || d > endpoints.MaxAttemptTimeout {
				return invalid(fmt.Sprintf(`field "attempt_timeout": a duration from 1s to %s`, endpoints.MaxAttemptTimeout))
			}
			ep.AttemptTimeout = d
		}
	}
	if p.RetrySchedule != nil {
		switch n := len(*p.RetrySchedule); {
		case n > endpoints.MaxScheduleWaits:
			return invalid(fmt.Sprintf(`field "retry_schedule": at most %d waits`, endpoints.MaxScheduleWaits))
		case n == 0:
			// It read as the deployment's schedule, which [] does not say.
			return invalid(`field "retry_schedule": at least one wait (null: the deployment's schedule)`)
		}
		ep.RetrySchedule = nil
		// A pending retry is a message of the deliveries stream: it must
		// fire, jitter included, before the stream ages it out.
		most, why := endpoints.MaxScheduleWait, ""
		if s.deliveryRetention > 0 && s.deliveryRetention*5/6 <= most {
			most = (s.deliveryRetention*5/6 - time.Second).Truncate(time.Second)
			why = fmt.Sprintf(": the deliveries stream keeps a pending retry %s, and a wait may be 20 %% longer", s.deliveryRetention)
		}
		for _, w := range *p.RetrySchedule {
			d, err := time.ParseDuration(w)
			if err != nil || d < time.Second || d > most {
				return invalid(fmt.Sprintf(`field "retry_schedule": %q is not a wait from 1s to %s%s`, w, most, why))
			}
			ep.RetrySchedule = append(ep.RetrySchedule, d)
		}
	}
	return nil
}

func checkHeaders(h map[string]string) error {
	if len(h) > maxHeaders {
		return invalid(fmt.Sprintf(`field "headers": at most %d`, maxHeaders))
	}
	seen := make(map[string]bool, len(h))
	size := 0
	for name, value := range h {
		canon := textproto.CanonicalMIMEHeaderKey(name)
		size += len(name) + len(value)
		switch {
		case len(name) > maxHeaderName || !httpguts.ValidHeaderFieldName(name):
			return invalid(fmt.Sprintf(`field "headers": %.300q is not a header name (at most %d bytes)`, name, maxHeaderName))
		case endpoints.ReservedHeader(canon):
			return invalid(fmt.Sprintf(`field "headers": %s is set by hookstream`, canon))
		case seen[canon]:
			return invalid(fmt.Sprintf(`field "headers": %s is given twice (header names are case-insensitive)`, canon))
		case !httpguts.ValidHeaderFieldValue(value) || len(value) > maxHeaderValue:
			return invalid(fmt.Sprintf(`field "headers": the value of %s is not allowed (at most %d bytes, no control characters)`, canon, maxHeaderValue))
		}
		seen[canon] = true
	}
	if size > maxHeaderBytes {
		return invalid(fmt.Sprintf(`field "headers": at most %d bytes of names and values in all`, maxHeaderBytes))
	}
	return nil
}

func newID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + idEncoding.EncodeToString(b[:])
}

// endpointCreate is the body of POST /v1/endpoints: the fields of a PATCH
// and the endpoint's first secret, if the caller brings its own (a
// receiver moved from another provider).
type endpointCreate struct {
	endpointPatch
	Secret *string `json:"secret,omitempty"`
}

func (s *Service) createEndpoint(c *gin.Context) {
	var req endpointCreate
	if err := checkContentType(c); err != nil {
		s.respondError(c, err)
		return
	}
	body, err := readBody(c, min(s.cfg.MaxBodyBytes, maxEndpointBody))
	if err == nil {
		err = decodeJSON(body, s.cfg.MaxJSONDepth, &req)
	}
	if err == nil {
		err = refuseNullHeaders(body)
	}
	if err != nil {
		s.respondError(c, err)
		return
	}
	p := req.endpointPatch
	if p.URL == nil {
		s.respondError(c, invalid(`field "url" is required`))
		return
	}
	idemKey, err := idempotencyKey(c)
	if err != nil {
		s.respondError(c, err)
		return
	}
	now := s.now().UTC()
	var ring signing.Keyring
	if req.Secret != nil {
		ring, err = signing.KeyringOf(*req.Secret, now)
		err = secretError(err)
	} else {
		ring, err = signing.NewKeyring(now)
	}
	if err != nil {
		s.respondError(c, err)
		return
	}
	ep := endpoints.Endpoint{ID: newID("ep_"), Tenant: tenantOf(c), Enabled: true, Keyring: ring, CreatedAt: now, UpdatedAt: now}
	if err := s.applyPatch(&ep, p); err != nil {
		s.respondError(c, err)
		return
	}
	ctx := c.Request.Context()
	var keyed func(created bool) // settles the key's record once the endpoint is made or not
	if idemKey != "" {
		hashed := req
		if req.Secret != nil {
			// The record keeps a hash of the request: of the secret's keyed
			// digest, not of the secret (the bucket's readers could test
			// guesses of it against a plain hash).
			digest := "digest:" + hex.EncodeToString(s.cfg.Box.Digest([]byte(*req.Secret)))
			hashed.Secret = &digest
		}
		canonical, _ := json.Marshal(hashed) // decoded and encoded again: members in order, one way of escaping
		sum := sha256.Sum256(canonical)
		var replayed bool
		if keyed, replayed = s.takeEndpointKey(c, ep, idemKey, hex.EncodeToString(sum[:])); replayed {
			return
		}
		defer func() { keyed(false) }() // a no-op once it was called with true
	}
	n, err := s.endpoints.Count(ctx, ep.Tenant)
	if err != nil {
		s.respondError(c, err)
		return
	}
	if n >= s.cfg.MaxEndpointsPerTenant {
		s.respondError(c, conflict(fmt.Sprintf("this tenant has %d endpoints, the most allowed (HOOKSTREAM_MAX_ENDPOINTS_PER_TENANT): delete one first", n)))
		return
	}
	err = s.endpoints.Create(ctx, ep)
	if err == nil {
		err = s.unlessDeleted(ctx, ep.Tenant, func(ctx context.Context) error { return s.endpoints.Delete(ctx, ep.Tenant, ep.ID) })
	}
	if err != nil {
		s.respondError(c, err)
		return
	}
	if keyed != nil {
		keyed(true)
	}
	respondCreatedEndpoint(c, ep)
}

// respondCreatedEndpoint answers 201 with the endpoint and its secret.
func respondCreatedEndpoint(c *gin.Context, ep endpoints.Endpoint) {
	view := viewOf(ep)
	view.Secret = ep.Keyring.Current().Secret
	c.Header("Location", "/v1/endpoints/"+ep.ID)
	c.Header("Cache-Control", "no-store") // it carries the secret
	c.JSON(http.StatusCreated, view)
}

// An endpointKey is what an Idempotency-Key of POST /v1/endpoints made,
// kept endpointKeyTTL in the tenants bucket (contract.EndpointKeyKey): the
// endpoint's id, which stays random, so that an endpoint created again with
// the key after a delete does not take the deleted one's deliveries.
type endpointKey struct {
	EndpointID  string    `json:"endpoint_id"`
	RequestHash string    `json:"request_hash"`
	CreatedAt   time.Time `json:"created_at"`
	// Created is set once the endpoint was created: one missing then was
	// deleted, not still being created.
	Created bool `json:"created,omitempty"`
}

const (
	// endpointKeyTTL is how long an Idempotency-Key of POST /v1/endpoints
	// names its endpoint; older records are pruned at the next create with
	// a key.
	endpointKeyTTL = 24 * time.Hour
	// endpointKeyPending is how long a key's endpoint may take to be
	// created before a record without one is taken for a failed create.
	endpointKeyPending = 30 * time.Second
)

// takeEndpointKey records that idemKey makes ep, and returns settle, to be
// called once ep is created (true) or not (false: the record is removed).
// If the key made an endpoint already, it answers instead (replayed): with
// that endpoint as it is now and Idempotent-Replayed if the same request
// (hash) made it, 422 for another request, 409 while that create is under
// way or once its endpoint was deleted.
func (s *Service) takeEndpointKey(c *gin.Context, ep endpoints.Endpoint, idemKey, hash string) (settle func(bool), replayed bool) {
	ctx := c.Request.Context()
	now := s.now().UTC()
	s.pruneEndpointKeys(ctx, ep.Tenant, now)
	key := contract.EndpointKeyKey(ep.Tenant, contract.KeyToken(idempotentID("", ep.Tenant, idemKey)))
	data, _ := json.Marshal(endpointKey{EndpointID: ep.ID, RequestHash: hash, CreatedAt: now})
	rev, err := s.tenants.Create(ctx, key, data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		var entry jetstream.KeyValueEntry
		if entry, err = s.tenants.Get(ctx, key); err == nil {
			var made endpointKey
			live := json.Unmarshal(entry.Value(), &made) == nil && now.Sub(made.CreatedAt) < endpointKeyTTL
			if live && !made.Created && now.Sub(made.CreatedAt) >= endpointKeyPending {
				// Its create failed without removing it, unless the process
				// stopped, or its last write failed, after the endpoint was made.
				_, _, gerr := s.endpoints.Get(ctx, ep.Tenant, made.EndpointID)
				made.Created = gerr == nil
				live = !errors.Is(gerr, endpoints.ErrNotFound)
			}
			if live {
				s.replayEndpointKey(c, ep.Tenant, made, hash)
				return nil, true
			}
			// Expired, or its create failed without removing it: taken over.
			rev, err = s.tenants.Update(ctx, key, data, entry.Revision())
		}
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound) {
			err = conflict("a request with this Idempotency-Key is under way; send it again")
		}
		s.respondError(c, err)
		return nil, true
	}
	done := false
	return func(created bool) {
		if done {
			return
		}
		done = true
		ctx := context.WithoutCancel(ctx)
		if !created {
			s.purgeTenantKey(ctx, key, rev) // a delete would leave a marker for good
			return
		}
		made, _ := json.Marshal(endpointKey{EndpointID: ep.ID, RequestHash: hash, CreatedAt: now, Created: true})
		if _, err := s.tenants.Update(ctx, key, made, rev); err != nil {
			s.logger.Warn("record an endpoint's Idempotency-Key as done", "tenant_id", ep.Tenant, "endpoint_id", ep.ID, "error", err)
		}
	}, false
}

// replayEndpointKey answers a create whose Idempotency-Key made an endpoint
// already (made): see takeEndpointKey.
func (s *Service) replayEndpointKey(c *gin.Context, tenant string, made endpointKey, hash string) {
	if made.RequestHash != hash {
		s.respondError(c, invalid("Idempotency-Key was already used with a different request"))
		return
	}
	existing, _, err := s.endpoints.Get(c.Request.Context(), tenant, made.EndpointID)
	switch {
	case errors.Is(err, endpoints.ErrNotFound) && !made.Created:
		s.respondError(c, conflict("a request with this Idempotency-Key is under way; send it again"))
	case errors.Is(err, endpoints.ErrNotFound):
		s.respondError(c, conflict("the endpoint this Idempotency-Key created ("+made.EndpointID+") was deleted; create another with another key"))
	case err != nil:
		s.respondError(c, err)
	default:
		c.Header("Idempotent-Replayed", "true")
		respondCreatedEndpoint(c, existing)
	}
}

// pruneEndpointKeys removes the tenant's endpoint keys older than
// endpointKeyTTL, at most once every endpointKeyPrune per tenant and
// process. A failure is logged: they are tried again at a later create
// with a key.
func (s *Service) pruneEndpointKeys(ctx context.Context, tenant string, now time.Time) {
	s.keyPrunes.Lock()
	if last, ok := s.keyPrunes.last[tenant]; ok && now.Sub(last) < endpointKeyPrune {
		s.keyPrunes.Unlock()
		return
	}
	if s.keyPrunes.last == nil {
		s.keyPrunes.last = map[string]time.Time{}
	}
	s.keyPrunes.last[tenant] = now
	s.keyPrunes.Unlock()
	err := bus.ReadAll(ctx, s.tenants, contract.EndpointKeyKey(tenant, "*"), func(e jetstream.KeyValueEntry) error {
		var made endpointKey
		if json.Unmarshal(e.Value(), &made) == nil && now.Sub(made.CreatedAt) >= endpointKeyTTL {
			s.purgeTenantKey(ctx, e.Key(), e.Revision())
		}
		return nil
	})
	if err != nil {
		s.logger.Warn("remove old endpoint Idempotency-Keys", "tenant_id", tenant, "error", err)
	}
}

// endpointKeyPrune is how often a process prunes a tenant's endpoint keys.
const endpointKeyPrune = 10 * time.Minute

// purgeTenantKey removes the tenants bucket's key as written at rev, and
// not a later write, leaving no delete marker (the bucket has no TTL, and a
// KV delete leaves one for good). A failure is logged.
func (s *Service) purgeTenantKey(ctx context.Context, key string, rev uint64) {
	stream, err := s.js.Stream(ctx, "KV_"+contract.BucketTenants)
	if err == nil {
		err = stream.Purge(ctx, jetstream.WithPurgeSubject("$KV."+contract.BucketTenants+"."+key), jetstream.WithPurgeSequence(rev+1))
	}
	if err != nil {
		s.logger.Warn("remove a tenant record", "key", key, "error", err)
	}
}

// listEndpoints answers GET /v1/endpoints?after=&limit=: the tenant's
// endpoints, oldest first, a page at a time; "next" is the after= of the
// next page.
func (s *Service) listEndpoints(c *gin.Context) {
	after, limit, err := pageQuery(c, "after")
	if err != nil {
		s.respondError(c, err)
		return
	}
	eps, more, err := s.endpoints.Page(c.Request.Context(), tenantOf(c), endpoints.Endpoint{ID: after.id, CreatedAt: after.at}, limit)
	if err != nil {
		s.respondError(c, err)
		return
	}
	views := make([]endpointView, len(eps))
	parked := s.parked(c.Request.Context(), tenantOf(c), contract.ParkedSubject(tenantOf(c), ">"))
	for i, ep := range eps {
		views[i] = viewOf(ep)
		views[i].Parked = parked(ep.ID)
	}
	resp := gin.H{"data": views}
	if more {
		last := eps[len(eps)-1]
		resp["next"] = pageCursor{at: last.CreatedAt, id: last.ID}.String()
	}
	c.JSON(http.StatusOK, resp)
}

func (s *Service) getEndpoint(c *gin.Context) {
	ep, _, err := s.endpoints.Get(c.Request.Context(), tenantOf(c), c.Param("id"))
	if err = endpoints.Readable(err); err != nil { // shown without its secret
		s.respondError(c, err)
		return
	}
	view := viewOf(ep)
	view.Parked = s.parked(c.Request.Context(), ep.Tenant, contract.ParkedSubject(ep.Tenant, ep.ID))(ep.ID)
	c.JSON(http.StatusOK, view)
}

// parked reads how many deliveries are parked on the subjects that filter
// matches (one endpoint's, or a tenant's), and returns the count of an
// endpoint's: nil if the stream could not be read within a second (the
// answer leaves the count out rather than fail).
func (s *Service) parked(ctx context.Context, tenant, filter string) func(endpointID string) *uint64 {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	info, err := s.parkedStream.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		s.logger.Debug("count parked deliveries", "tenant_id", tenant, "error", err)
		return func(string) *uint64 { return nil }
	}
	return func(endpointID string) *uint64 {
		n := info.State.Subjects[contract.ParkedSubject(tenant, endpointID)]
		return &n
	}
}

func (s *Service) patchEndpoint(c *gin.Context) {
	p, err := s.readPatch(c)
	if err != nil {
		s.respondError(c, err)
		return
	}
	var reenabled *time.Time // when a disabled endpoint is enabled: since when it was off
	ep, err := s.endpoints.Update(c.Request.Context(), tenantOf(c), c.Param("id"), func(ep *endpoints.Endpoint) error {
		reenabled = nil                               // as of this try's read
		wasOff, offSince := !ep.Enabled, ep.CreatedAt // disabled by a 410 or by hand: everything still failed
		if ep.FailingSince != nil {
			offSince = *ep.FailingSince
		}
		if err := s.applyPatch(ep, p); err != nil {
			return err
		}
		if wasOff && ep.Enabled {
			reenabled = &offSince
		}
		ep.UpdatedAt = s.now().UTC()
		return nil
	})
	if err != nil {
		s.respondError(c, err)
		return
	}
	view := viewOf(ep)
	if reenabled != nil {
		// Offer what was missed meanwhile: POST this to re-send it. A
		// delivery that failed then may have been created before the
		// endpoint began to fail: up to its retries' span, its round of
		// attempts and its wait in the queue before.
		since := reenabled.Add(-s.retrySpan(ep) - recoverSlack)
		view.Recover = &recoverOffer{Method: http.MethodPost, Href: "/v1/endpoints/" + ep.ID + "/recover", Body: recoverRequest{Since: since}}
	}
	c.JSON(http.StatusOK, view)
}

// recoverSlack is how far before failing_since, beyond the retries' span,
// the recovery offered on re-enable reaches: for the round of attempts that
// recorded failing_since and a delivery's wait in the queue.
const recoverSlack = 15 * time.Minute

// retrySpan is how long a webhook to ep may be retried: the sum of its
// retry schedule (the deployment's, Config.RetrySchedule, unless it has its
// own), with the notifier's +20 % jitter.
func (s *Service) retrySpan(ep endpoints.Endpoint) time.Duration {
	schedule := s.cfg.RetrySchedule
	if ep.RetrySchedule != nil {
		schedule = ep.RetrySchedule
	}
	var span time.Duration
	for _, w := range schedule {
		span += w
	}
	return span + span/5
}

// recoverOffer is how a re-enabled endpoint's failed deliveries can be sent
// again.
type recoverOffer struct {
	Method string         `json:"method"`
	Href   string         `json:"href"`
	Body   recoverRequest `json:"body"`
}

func (s *Service) deleteEndpoint(c *gin.Context) {
	if err := s.endpoints.Delete(c.Request.Context(), tenantOf(c), c.Param("id")); err != nil {
		s.respondError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Service) getEndpointSecret(c *gin.Context) {
	ep, _, err := s.endpoints.Get(c.Request.Context(), tenantOf(c), c.Param("id"))
	if err != nil {
		s.respondError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, newSecretResponse(ep.Keyring, s.now()))
}

// rotateRequest is the optional body of a secret rotation.
type rotateRequest struct {
	// GracePeriod is how long the old secret keeps signing ("24h"); at
	// most 7 days.
	GracePeriod string `json:"grace_period"`
	// Secret is the new secret, if the caller brings its own.
	Secret string `json:"secret"`
}

// secretError is the answer for a secret of the caller's own that
// signing refused: 422, without the secret.
func secretError(err error) error {
	switch {
	case errors.Is(err, webhook.ErrBadSecret):
		return invalid(`field "secret": "whsec_" followed by the standard base64 (with padding) of 24 to 64 random bytes`)
	case errors.Is(err, signing.ErrCurrentSecret):
		return invalid(`field "secret": it is the current secret already`)
	}
	return err
}

func (s *Service) rotateEndpointSecret(c *gin.Context) {
	rot, err := s.readRotate(c)
	if err != nil {
		s.respondError(c, err)
		return
	}
	ep, err := s.endpoints.Update(c.Request.Context(), tenantOf(c), c.Param("id"), func(ep *endpoints.Endpoint) error {
		ring, err := ep.Keyring.Rotate(s.now(), rot.grace, rot.secret) // an unreadable one has no secrets: the new one alone
		ep.Keyring, ep.UpdatedAt = ring, s.now().UTC()
		return secretError(err)
	})
	if err != nil {
		s.respondError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, newSecretResponse(ep.Keyring, s.now()))
}

// A rotation is what the body of a secret rotation asks for: the old
// secrets' grace period and the new secret ("": a new random one).
type rotation struct {
	grace  time.Duration
	secret string
}

// readRotate reads the optional rotation body; an empty body, or no
// grace_period, means the configured grace period.
func (s *Service) readRotate(c *gin.Context) (rotation, error) {
	rot := rotation{grace: s.cfg.SecretGrace}
	body, err := readBody(c, min(s.cfg.MaxBodyBytes, maxEndpointBody))
	if err != nil {
		return rot, err
	}
	if len(bytes.TrimSpace(body)) == 0 { // also sent chunked, or without a type
		return rot, nil
	}
	if err := checkContentType(c); err != nil {
		return rot, err
	}
	var req rotateRequest
	if err := decodeJSON(body, s.cfg.MaxJSONDepth, &req); err != nil {
		return rot, err
	}
	if req.Secret != "" {
		if _, err := webhook.ParseSecret(req.Secret); err != nil {
			return rot, secretError(err)
		}
		rot.secret = req.Secret
	}
	if req.GracePeriod == "" {
		return rot, nil
	}
	d, err := time.ParseDuration(req.GracePeriod)
	if err != nil || d < 0 || d > signing.MaxGrace {
		return rot, invalid(`field "grace_period": a duration from 0s to 168h`)
	}
	rot.grace = d
	return rot, nil
}
