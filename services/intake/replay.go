package intake

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
)

// Delivery log paging.
const (
	defaultPageSize = 50
	maxPageSize     = 250
)

// listTenantDeliveries answers GET /v1/deliveries?endpoint=&status=&since=
// &before=&limit=: the tenant's deliveries, newest first, a page at a time;
// "next" is the before= of the next page. It reads the tenant's whole log
// (kept DeliveryRetention), so it costs the number of deliveries kept.
func (s *Service) listTenantDeliveries(c *gin.Context) {
	endpoint, status := c.Query("endpoint"), c.Query("status")
	since, err := optionalTime(c.Query("since"), "since")
	if err != nil {
		s.respondError(c, err)
		return
	}
	before, err := optionalTime(c.Query("before"), "before")
	if err != nil {
		s.respondError(c, err)
		return
	}
	limit := defaultPageSize
	if v := c.Query("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxPageSize {
			s.respondError(c, badRequest(fmt.Sprintf("limit must be 1 to %d", maxPageSize)))
			return
		}
	}
	switch status {
	case "", contract.DeliveryPending, contract.DeliverySucceeded, contract.DeliveryFailed:
	default:
		s.respondError(c, badRequest("status must be pending, succeeded or failed"))
		return
	}
	recs, err := s.readRecords(c.Request.Context(), tenantOf(c)+".>", func(r *contract.DeliveryRecord) bool {
		return (endpoint == "" || r.EndpointID == endpoint) && (status == "" || r.Status == status) &&
			(since.IsZero() || !r.CreatedAt.Before(since)) && (before.IsZero() || r.CreatedAt.Before(before))
	}, false)
	if err != nil {
		s.respondError(c, err)
		return
	}
	slices.Reverse(recs)
	page := make([]deliveryView, 0, min(limit, len(recs)))
	for _, r := range recs[:min(limit, len(recs))] {
		page = append(page, deliveryView{DeliveryRecord: r})
	}
	resp := gin.H{"data": page}
	if len(recs) > limit {
		resp["next"] = page[len(page)-1].CreatedAt.Format(time.RFC3339Nano)
	}
	c.JSON(http.StatusOK, resp)
}

func optionalTime(v, name string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, badRequest(name + " must be an RFC 3339 time")
	}
	return t, nil
}

// retryDelivery answers POST /v1/deliveries/{id}/retry: one attempt now,
// with the same webhook-id and body.
func (s *Service) retryDelivery(c *gin.Context) {
	tenant, id := tenantOf(c), c.Param("id")
	if !contract.ValidTenant(id) {
		s.respondError(c, notFound("delivery"))
		return
	}
	recs, err := s.readRecords(c.Request.Context(), tenant+".*."+id, nil, true)
	if err != nil {
		s.respondError(c, err)
		return
	}
	if len(recs) == 0 {
		s.respondError(c, notFound("delivery"))
		return
	}
	ctx, cancel := s.publishContext(c)
	defer cancel()
	if err := s.replay(ctx, tenant, recs[0]); err != nil {
		s.respondError(c, err)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"delivery_id": id})
}

// recoverRequest is the body of POST /v1/endpoints/{id}/recover.
type recoverRequest struct {
	Since time.Time  `json:"since"`
	Until *time.Time `json:"until"`
}

// recoverEndpoint answers POST /v1/endpoints/{id}/recover: every failed
// delivery to the endpoint created in [since, until) is sent once more, with
// its own webhook-id.
func (s *Service) recoverEndpoint(c *gin.Context) {
	var req recoverRequest
	if err := readJSON(c, s.cfg.MaxBodyBytes, s.cfg.MaxJSONDepth, &req); err != nil {
		s.respondError(c, err)
		return
	}
	if req.Since.IsZero() {
		s.respondError(c, invalid(`field "since" is required (RFC 3339)`))
		return
	}
	tenant, id := tenantOf(c), c.Param("id")
	ep, _, err := s.endpoints.Get(c.Request.Context(), tenant, id)
	if err != nil {
		s.respondError(c, err)
		return
	}
	if !ep.Enabled {
		s.respondError(c, conflict("the endpoint is disabled: enable it (PATCH {\"enabled\":true}) before recovering"))
		return
	}
	recs, err := s.readRecords(c.Request.Context(), tenant+".>", func(r *contract.DeliveryRecord) bool {
		return r.EndpointID == id && r.Status == contract.DeliveryFailed && !r.CreatedAt.Before(req.Since) &&
			(req.Until == nil || r.CreatedAt.Before(*req.Until))
	}, true)
	if err != nil {
		s.respondError(c, err)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.PublishTimeout+time.Duration(len(recs))*10*time.Millisecond)
	defer cancel()
	for i, rec := range recs {
		if err := s.replay(ctx, tenant, rec); err != nil {
			s.logger.Warn("recover endpoint", "endpoint_id", id, "resent", i, "of", len(recs), "error", err)
			s.respondError(c, err)
			return
		}
	}
	c.JSON(http.StatusAccepted, gin.H{"endpoint_id": id, "recovered": len(recs)})
}

// replay publishes a logged delivery again for one attempt, same id.
func (s *Service) replay(ctx context.Context, tenant string, rec contract.DeliveryRecord) error {
	d := contract.Delivery{
		ID: rec.ID, Tenant: tenant, EventID: rec.EventID, EventType: rec.EventType, JobID: rec.JobID,
		EndpointID: rec.EndpointID, Body: rec.Body, CreatedAt: rec.CreatedAt, Attempts: rec.Attempts, Replay: true,
	}
	target := rec.EndpointID
	if target == "" {
		d.URL, target = rec.URL, "cb"
	}
	msgID := rec.ID + ".replay." + strconv.FormatInt(s.now().UnixNano(), 10)
	return bus.PublishJSON(ctx, s.js, contract.DeliverySubject(tenant, target), msgID, d)
}
