package processor

import (
	"context"
	"encoding/json"
	"errors"

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
