package intake

import (
	"encoding/json"
	"time"

	"github.com/hookstream/hookstream/shared/contract"
)

// The two documents written for every job on intake's fast path, the 202
// body and the job's message, are appended by hand: through encoding/json
// they cost about 7 % of the server's CPU in buffered intake (reflection,
// a Marshaler's output checked again, the payload compacted a second time).
// Both decode to what encoding/json would have written.

// jsonContentType is the Content-Type of intake's JSON answers, as Gin's
// c.JSON writes it.
const jsonContentType = "application/json; charset=utf-8"

// appendJSONString appends s as a JSON string. A string of printable ASCII
// without '"', '\\' or the characters encoding/json escapes for HTML is
// copied; any other goes through encoding/json, so the bytes are the same.
func appendJSONString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < 0x20 || b > 0x7e || b == '"' || b == '\\' || b == '<' || b == '>' || b == '&' {
			quoted, _ := json.Marshal(s) // a string always encodes
			return append(buf, quoted...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}

// appendJSONTime appends t as encoding/json writes a time.Time.
func appendJSONTime(buf []byte, t time.Time) []byte {
	buf = append(buf, '"')
	buf = t.AppendFormat(buf, time.RFC3339Nano)
	return append(buf, '"')
}

// appendAccepted appends the 202 body of POST /v1/jobs for a job: id, status,
// type, created_at, expires_at and links.self.
func appendAccepted(buf []byte, job contract.JobRecord, self string) []byte {
	buf = append(buf, `{"id":`...)
	buf = appendJSONString(buf, job.ID)
	buf = append(buf, `,"status":`...)
	buf = appendJSONString(buf, job.Status)
	buf = append(buf, `,"type":`...)
	buf = appendJSONString(buf, job.Type)
	buf = append(buf, `,"created_at":`...)
	buf = appendJSONTime(buf, job.CreatedAt)
	buf = append(buf, `,"expires_at":`...)
	buf = appendJSONTime(buf, job.ExpiresAt)
	buf = append(buf, `,"links":{"self":`...)
	buf = appendJSONString(buf, self)
	return append(buf, `}}`...)
}

// appendJobRequest appends the contract.JobRequest of a job that submitJob
// writes: its nonce, creation time, payload, callback URL and metadata.
// The payload is copied as it is: readJSON checked that it is valid JSON,
// and validateJob compacted it.
func appendJobRequest(buf []byte, nonce string, rec contract.JobRecord) []byte {
	buf = append(buf, `{"nonce":`...)
	buf = appendJSONString(buf, nonce)
	buf = append(buf, `,"created_at":`...)
	buf = appendJSONTime(buf, rec.CreatedAt)
	if len(rec.Payload) > 0 {
		buf = append(buf, `,"payload":`...)
		buf = append(buf, rec.Payload...)
	}
	if rec.CallbackURL != "" {
		buf = append(buf, `,"callback_url":`...)
		buf = appendJSONString(buf, rec.CallbackURL)
	}
	if len(rec.Metadata) > 0 {
		metadata, _ := json.Marshal(rec.Metadata) // a map of strings always encodes
		buf = append(buf, `,"metadata":`...)
		buf = append(buf, metadata...)
	}
	return append(buf, '}')
}
