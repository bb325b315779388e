// Package jobevents publishes a job's status changes as events on
// hookstream.events.<tenant>.job.<status>, the path every event takes to the
// notifier. Intake (cancellations) and processors (results) share it.
package jobevents

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
)

// EventID is the id of the event for a job entering status. It is the same
// every time, so republishing it (after a crash) is de-duplicated.
func EventID(jobID, status string) string {
	return "evt_" + strings.TrimPrefix(jobID, "job_") + "_" + status
}

// Publish publishes the event for the job's current status and waits for
// JetStream's acknowledgement.
func Publish(ctx context.Context, js bus.Publisher, rec contract.JobRecord) error {
	data, err := json.Marshal(rec.Job)
	if err != nil {
		return fmt.Errorf("encode job %s: %w", rec.ID, err)
	}
	msg := bus.EventMsg(rec.Tenant, "job."+rec.Status, EventID(rec.ID, rec.Status), rec.UpdatedAt, data)
	msg.Header.Set(contract.HeaderJobID, rec.ID)
	if rec.CallbackURL != "" {
		msg.Header.Set(contract.HeaderCallbackURL, rec.CallbackURL)
	}
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish event job.%s of %s: %w", rec.Status, rec.ID, err)
	}
	return nil
}
