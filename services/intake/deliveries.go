package intake

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
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
	if _, _, err := s.jobs.GetForTenant(ctx, tenant, id); err != nil {
		s.respondError(c, err)
		return
	}
	records, err := s.readDeliveries(ctx, tenant+"."+id+".*")
	if err != nil {
		s.respondError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"data": records})
}

// readDeliveries reads every delivery record whose key matches filter,
// oldest first, without their bodies.
func (s *Service) readDeliveries(ctx context.Context, filter string) ([]deliveryView, error) {
	recs, err := s.readRecords(ctx, filter, nil, false)
	if err != nil {
		return nil, err
	}
	out := make([]deliveryView, len(recs))
	for i, rec := range recs {
		out[i] = deliveryView{DeliveryRecord: rec}
	}
	return out, nil
}

// readRecords reads the delivery records whose key matches filter and that
// keep passes (all when nil), oldest first.
//
// Bodies (up to the size of an event each) are kept only withBodies.
func (s *Service) readRecords(ctx context.Context, filter string, keep func(*contract.DeliveryRecord) bool, withBodies bool) ([]contract.DeliveryRecord, error) {
	out := []contract.DeliveryRecord{}
	err := bus.ReadAll(ctx, s.deliveryLog, filter, func(entry jetstream.KeyValueEntry) error {
		var rec contract.DeliveryRecord
		if err := json.Unmarshal(entry.Value(), &rec); err != nil {
			return fmt.Errorf("decode delivery %s: %w", entry.Key(), err)
		}
		if keep == nil || keep(&rec) {
			if !withBodies {
				rec.Body = nil
			}
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b contract.DeliveryRecord) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}
