package intake

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/deliverylog"
)

// deliveryView is a delivery record as the API shows it: without the body
// (the outer field shadows the record's own and is always left empty).
type deliveryView struct {
	contract.DeliveryRecord
	Body json.RawMessage `json:"body,omitempty"`
}

// listDeliveries answers GET /v1/jobs/{id}/deliveries: every webhook sent
// for the job, with its attempts, oldest first.
func (s *Service) listDeliveries(c *gin.Context) {
	ctx := c.Request.Context()
	tenant, id := tenantOf(c), c.Param("id")
	if _, _, err := s.findJob(ctx, tenant, id); err != nil {
		s.respondError(c, err)
		return
	}
	records, err := s.readDeliveries(ctx, deliverylog.Owner(tenant, id))
	if err != nil {
		s.respondError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"data": records})
}

// readDeliveries reads every delivery record whose key matches filter,
// oldest first, without their bodies.
func (s *Service) readDeliveries(ctx context.Context, filter deliverylog.Filter) ([]deliveryView, error) {
	recs, err := s.readRecords(ctx, filter, time.Time{}, nil, false)
	if err != nil {
		return nil, err
	}
	out := make([]deliveryView, len(recs))
	for i, rec := range recs {
		out[i] = deliveryView{DeliveryRecord: rec}
	}
	return out, nil
}

// readRecords reads the delivery records whose key matches filter, and
// that keep passes, from the log written since (zero: all of it).
func (s *Service) readRecords(ctx context.Context, filter deliverylog.Filter, since time.Time, keep func(*contract.DeliveryRecord) bool, withBodies bool) ([]contract.DeliveryRecord, error) {
	return deliverylog.Read(ctx, s.js, filter, since, keep, withBodies)
}
