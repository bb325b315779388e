package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cenkalti/backoff/v4"
)

// Job is what a handler gets.
type Job struct {
	ID       string
	Tenant   string
	Type     string
	Attempt  int // 1 on the first run
	Payload  json.RawMessage
	Metadata map[string]string

	progress *progress
}

// Progress reports how far the job has come: any value that encodes as JSON
// (a fraction, {"done":3,"total":10}, a message). GET /v1/jobs/{id} shows the
// latest as "progress", while the job runs and after it ends. It never
// blocks: reports are written to the job's record at most once a second
// while the record says running, and the last one with the job's outcome.
// It fails for a value that does not encode, or encodes to more than
// MaxProgressBytes.
func (j Job) Progress(v any) error {
	data, err := json.Marshal(v)
	switch {
	case err != nil:
		return fmt.Errorf("job progress: %w", err)
	case len(data) > MaxProgressBytes:
		return fmt.Errorf("job progress: %d bytes of JSON, more than %d", len(data), MaxProgressBytes)
	}
	if j.progress != nil {
		j.progress.report(data)
	}
	return nil
}

// Handler does the work of one job type. It returns the job's result (any
// JSON value, or nil) or an error. Wrap errors that retrying cannot fix with
// [Permanent]. It must return soon after ctx ends; a job interrupted by a
// shutdown is run again later and does not count as an attempt.
type Handler interface {
	Handle(ctx context.Context, job Job) (json.RawMessage, error)
}

// HandlerFunc adapts a function to [Handler].
type HandlerFunc func(ctx context.Context, job Job) (json.RawMessage, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, job Job) (json.RawMessage, error) {
	return f(ctx, job)
}

var _ Handler = HandlerFunc(nil)

// Permanent marks an error that retrying cannot fix: the job fails at once.
func Permanent(err error) error { return backoff.Permanent(err) }

func isPermanent(err error) bool {
	var p *backoff.PermanentError
	return errors.As(err, &p)
}

// Echo is the "echo" job type: its result is its payload. It exists for
// integration tests and for trying hookstream out.
var Echo = HandlerFunc(func(_ context.Context, job Job) (json.RawMessage, error) {
	return job.Payload, nil
})
