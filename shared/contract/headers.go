package contract

// Headers hookstream reads or writes on NATS messages.
const (
	// HeaderMsgID is JetStream's de-duplication header. Publishers set it to
	// the job or event id; a second publish with the same id inside the
	// stream's duplicate window is acknowledged but not stored again.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderContractVersion carries [Version] on messages hookstream writes.
	HeaderContractVersion = "Hookstream-Contract"
	// HeaderJobID names the job an event is about (job.* events).
	HeaderJobID = "Hookstream-Job-Id"
	// HeaderCallbackURL carries a job's own callback URL on its job events so
	// that fan-out delivers to it as well as to registered endpoints.
	HeaderCallbackURL = "Hookstream-Callback-Url"
	// HeaderEventTime is the RFC 3339 time an event happened. When absent the
	// time the event was stored is used.
	HeaderEventTime = "Hookstream-Event-Time"
	// HeaderDeadReason says why a message was dead-lettered.
	HeaderDeadReason = "Hookstream-Dead-Reason"
	// HeaderOriginalSubject is the subject a dead-lettered message came on.
	HeaderOriginalSubject = "Hookstream-Original-Subject"
	// HeaderJobBatch is the number of jobs in a [JobBatch] message.
	HeaderJobBatch = "Hookstream-Job-Batch"
	// HeaderDeadLetter marks a queued [Delivery] that was given up on but
	// whose record (its attempt log, status failed) could not be stored:
	// its attempts are final, and the notifier that takes it only stores
	// that record; it sends no webhook.
	HeaderDeadLetter = "Hookstream-Dead-Letter"
)
