// Package notifier delivers events as signed webhooks (Standard Webhooks).
//
// Fan-out consumes events from the HOOKSTREAM_EVENTS stream and turns each
// into one delivery message per target, with a delivery id derived from the
// event id and the target, so that a crash mid-way neither loses nor
// multiplies deliveries; an event with one target gets its first attempt
// from fan-out itself, with no delivery message unless it is retried. The delivery loop sends each delivery, retries the
// first short delays in process (cenkalti/backoff) and schedules the longer
// ones durably as NATS message schedules in the deliveries stream, so that a
// pending retry holds no consumer slot and survives restarts. After the
// last attempt the delivery is dead-lettered: its log record is kept with
// status "failed" and its body, to be sent again.
package notifier
