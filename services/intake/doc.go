// Package intake is hookstream's HTTP API (Gin): it takes jobs, stores them
// in JetStream and answers 202 Accepted only after JetStream acknowledged the
// write; it serves job state, long-polls, cancellations and the tenant's
// signing secret. Errors are RFC 9457 problem+json; the status mapping lives
// in problem.go.
package intake
