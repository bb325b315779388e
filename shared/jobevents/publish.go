// Package jobevents publishes a job's status changes as events on
// hookstream.events.<tenant>.job.<status>, the path every event takes to the
// notifier. Intake (cancellations) and processors (attempts and results)
// share it. A terminal event goes to the job's callback URL and to the
// endpoints subscribed to it; job.running, once per attempt, only to the
// endpoints.
package jobevents

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
)

// EventID is the id of the event for a job entering status. It is the same
// every time, so republishing it (after a crash) is de-duplicated. A job id
// of hookstream's form (job_…) gives evt_<id without job_>_<status>; any
// other id evt-<id>_<status>, which no job_ id gives: job_x and x are two
// jobs, whose events must not be taken for one and de-duplicated.
func EventID(jobID, status string) string {
	if rest, ok := strings.CutPrefix(jobID, "job_"); ok {
		return "evt_" + rest + "_" + status
	}
	return "evt-" + jobID + "_" + status
}

// JobOf is the id of the job whose event id (EventID, and a running
// event's EventID(…, "running")+"_<attempt>") eventID is, and whether it is
// one at all.
func JobOf(eventID string) (string, bool) {
	var rest, prefix string
	switch {
	case strings.HasPrefix(eventID, "evt_"):
		rest, prefix = eventID[len("evt_"):], "job_"
	case strings.HasPrefix(eventID, "evt-"):
		rest = eventID[len("evt-"):]
	default:
		return "", false
	}
	if i := strings.LastIndexByte(rest, '_'); i > 0 && strings.Trim(rest[i+1:], "0123456789") == "" &&
		strings.HasSuffix(rest[:i], "_"+contract.StatusRunning) {
		rest = rest[:i] // running_<attempt>
	}
	for _, status := range []string{contract.StatusSucceeded, contract.StatusFailed, contract.StatusCanceled, contract.StatusRunning} {
		if job, ok := strings.CutSuffix(rest, "_"+status); ok && job != "" {
			return prefix + job, true
		}
	}
	return "", false
}

// WithoutResult returns the job resource without its result and progress,
// its Omitted saying which it had: the data of an event that would be too
// large with them.
func WithoutResult(job contract.Job) contract.Job {
	if job.Result != nil {
		job.Omitted = append(job.Omitted, "result")
	}
	if job.Progress != nil {
		job.Omitted = append(job.Omitted, "progress")
	}
	job.Result, job.Progress = nil, nil
	return job
}

// Room is what an event's delivery needs of a NATS message beside the job
// resource: the webhook body's wrapper, the delivery's fields and headers
// (the notifier dead-letters an event whose body leaves less than 9 KiB of
// max_payload), and the event's own headers.
const Room = 12 << 10

// Publish publishes the event for the job's current status and waits for
// JetStream's acknowledgement. The event of status running is that of the
// record's attempt: a job run again is running again. A job whose resource
// leaves less than Room of maxPayload (the NATS server's; 0: no limit) goes
// without its result and progress, which its record keeps (GET
// /v1/jobs/{id}): its webhook can be sent, says which it left out (Omitted),
// and its receiver reads the job.
func Publish(ctx context.Context, js bus.Publisher, rec contract.JobRecord, maxPayload int64) error {
	data, err := json.Marshal(rec.Job)
	if err == nil && maxPayload > 0 && int64(len(data)) > maxPayload-Room {
		data, err = json.Marshal(WithoutResult(rec.Job))
	}
	if err != nil {
		return fmt.Errorf("encode job %s: %w", rec.ID, err)
	}
	id := EventID(rec.ID, rec.Status)
	if rec.Status == contract.StatusRunning {
		id += "_" + strconv.Itoa(rec.Attempts)
	}
	msg := bus.EventMsg(rec.Tenant, "job."+rec.Status, id, rec.UpdatedAt, data)
	msg.Header.Set(contract.HeaderJobID, rec.ID)
	if rec.CallbackURL != "" && contract.Terminal(rec.Status) {
		msg.Header.Set(contract.HeaderCallbackURL, rec.CallbackURL)
	}
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish event job.%s of %s: %w", rec.Status, rec.ID, err)
	}
	return nil
}
