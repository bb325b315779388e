// Package processor runs jobs: a durable JetStream consumer hands each job
// message to the [Handler] registered for its type, keeps the lease with
// in-progress acks while it runs, records the result in the job store and
// publishes the job's terminal event for the notifier.
//
// Handlers return nil, an error (retried with backoff up to MaxAttempts) or
// a [Permanent] error (the job fails at once). One function, settle, acks,
// naks or terminates each message.
package processor
