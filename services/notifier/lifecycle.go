package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/endpoints"
)

// Operational event types: published on the tenant's events subject like
// any event, so that operators can subscribe to them on NATS and tenants
// with an endpoint.
const (
	EventEndpointDisabled  = "endpoint.disabled"
	EventDeliveryExhausted = "delivery.exhausted"
	EventEndpointRecovered = "endpoint.recovered"
)

// trackHealth keeps an endpoint's failing_since: set on the first failed
// round after a success, cleared on the first success after failures;
// after DisableAfter of failing the endpoint is disabled. It writes only on
// those transitions, and only while the endpoint's URL is still url, the
// one the round was sent to: a round to a URL the tenant has since replaced
// says nothing of the new one. A recovery is announced (endpoint.recovered)
// only after a failing period of RecoveryAfter or more: a flaky endpoint,
// failing now and then, announced one at every flip.
func (n *Notifier) trackHealth(ctx context.Context, logger *slog.Logger, d *contract.Delivery, url string, ok bool) {
	ep := n.index.Get(d.Tenant, d.EndpointID)
	if ep == nil || ep.URL != url {
		return
	}
	now := n.cfg.Now().UTC()
	switch {
	case ok && ep.FailingSince != nil:
		var since time.Time
		updated, err := n.endpoints.Update(ctx, d.Tenant, d.EndpointID, func(e *endpoints.Endpoint) error {
			if e.FailingSince == nil || e.URL != url { // recovered already, by another round or process
				return errNoLongerDue
			}
			since, e.FailingSince = *e.FailingSince, nil
			return nil
		})
		if errors.Is(err, errNoLongerDue) {
			return
		}
		if err != nil {
			logger.Warn("record endpoint recovery", "endpoint_id", d.EndpointID, "error", err)
			return
		}
		n.index.Put(updated)
		if now.Sub(since) < n.cfg.RecoveryAfter {
			return // a flip of a flaky endpoint, not an outage
		}
		// One id per failing period: a second announcement of it is a duplicate.
		n.announce(ctx, logger, d.Tenant, EventEndpointRecovered, "evt_recovered_"+d.EndpointID+"_"+strconv.FormatInt(since.UnixMilli(), 10), map[string]any{
			"endpoint_id": d.EndpointID, "url": updated.URL, "failing_since": since, "recovered_at": now,
		})
	case !ok && ep.FailingSince == nil:
		updated, err := n.endpoints.Update(ctx, d.Tenant, d.EndpointID, func(e *endpoints.Endpoint) error {
			if e.FailingSince != nil || e.URL != url {
				return errNoLongerDue
			}
			e.FailingSince = &now
			return nil
		})
		if err == nil {
			n.index.Put(updated)
		}
	case !ok && now.Sub(*ep.FailingSince) >= n.cfg.DisableAfter:
		// Decided again on the stored endpoint: this process's copy may be
		// older than a success another one recorded meanwhile.
		n.disableEndpoint(ctx, logger, d.Tenant, d.EndpointID, "failing continuously since "+ep.FailingSince.Format(time.RFC3339), func(e *endpoints.Endpoint) bool {
			return e.Enabled && e.URL == url && e.FailingSince != nil && now.Sub(*e.FailingSince) >= n.cfg.DisableAfter
		})
	}
}

// errNoLongerDue leaves an endpoint enabled (disableEndpoint).
var errNoLongerDue = errors.New("no longer to be disabled")

// disableEndpoint turns an endpoint off with the reason and announces it;
// when due is set, only if due says so of the stored endpoint.
func (n *Notifier) disableEndpoint(ctx context.Context, logger *slog.Logger, tenant, id, reason string, due func(*endpoints.Endpoint) bool) {
	now := n.cfg.Now().UTC()
	ep, err := n.endpoints.Update(ctx, tenant, id, func(ep *endpoints.Endpoint) error {
		if due != nil && !due(ep) {
			return errNoLongerDue
		}
		ep.Enabled, ep.DisabledReason, ep.UpdatedAt = false, reason, now
		return nil
	})
	if errors.Is(err, errNoLongerDue) {
		logger.Debug("endpoint not disabled: no longer due (disabled already, or no longer failing)", "endpoint_id", id)
		return
	}
	if err != nil {
		logger.Warn("disable endpoint", "endpoint_id", id, "error", err)
		return
	}
	n.index.Put(ep) // no more deliveries from this process, from now on
	logger.Warn("endpoint disabled", "endpoint_id", id, "reason", reason)
	n.announce(ctx, logger, tenant, EventEndpointDisabled, "evt_disabled_"+id+"_"+strconv.FormatInt(now.UnixMilli(), 10), map[string]any{
		"endpoint_id": id, "url": ep.URL, "reason": reason, "disabled_at": now,
	})
}

// announceExhausted tells that a delivery was dead-lettered, unless the
// delivery was itself of an operational event (no chains of them).
func (n *Notifier) announceExhausted(ctx context.Context, logger *slog.Logger, d *contract.Delivery, lastError string) {
	if strings.HasPrefix(d.EventType, "endpoint.") || strings.HasPrefix(d.EventType, "delivery.") {
		return
	}
	data := map[string]any{
		"delivery_id": d.ID, "event_id": d.EventID, "event_type": d.EventType,
		"attempts": len(d.Attempts), "last_error": lastError,
	}
	// A job's callback has no endpoint, an event of a tenant's no job: the
	// field is left out, not "".
	if d.EndpointID != "" {
		data["endpoint_id"] = d.EndpointID
	}
	if d.JobID != "" {
		data["job_id"] = d.JobID
	}
	n.announce(ctx, logger, d.Tenant, EventDeliveryExhausted, "evt_exhausted_"+d.ID, data)
}

// attemptError says why an attempt failed: its error, or the status the
// receiver answered.
func attemptError(a contract.Attempt) string {
	if a.Error == "" && a.StatusCode != 0 {
		return "receiver answered " + strconv.Itoa(a.StatusCode)
	}
	return a.Error
}

// announce publishes an operational event, best effort: the state change it
// reports is already stored.
func (n *Notifier) announce(ctx context.Context, logger *slog.Logger, tenant, eventType, id string, data map[string]any) {
	body, err := json.Marshal(data)
	if err == nil {
		_, err = n.js.PublishMsg(ctx, bus.EventMsg(tenant, eventType, id, n.cfg.Now(), body))
	}
	if err != nil {
		logger.Warn("publish operational event", "type", eventType, "error", err)
	}
}
