package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names of the Standard Webhooks format.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// DefaultTolerance is how far a webhook-timestamp may be from the receiver's
// clock in [Verify].
const DefaultTolerance = 5 * time.Minute

// Verification errors.
var (
	ErrMissingHeaders   = errors.New("webhook-id, webhook-timestamp or webhook-signature missing")
	ErrBadTimestamp     = errors.New("webhook-timestamp is not unix seconds")
	ErrTimestampTooFar  = errors.New("webhook-timestamp outside the tolerance")
	ErrNoMatchingSigner = errors.New("no signature matches")
)

// Sign returns the "v1,<base64>" signature of one delivery attempt.
func Sign(key []byte, id string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, ts.Unix(), 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// SignatureHeader signs with every key (the current one first, then keys in
// their rotation grace period) and joins the signatures with spaces.
func SignatureHeader(keys [][]byte, id string, ts time.Time, body []byte) string {
	sigs := make([]string, len(keys))
	for i, key := range keys {
		sigs[i] = Sign(key, id, ts, body)
	}
	return strings.Join(sigs, " ")
}

// SetHeaders sets the three Standard Webhooks headers on h.
func SetHeaders(h http.Header, keys [][]byte, id string, ts time.Time, body []byte) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, SignatureHeader(keys, id, ts, body))
}

// Verify checks a received webhook against a whsec_ secret: the headers must
// be present, the timestamp within tolerance of now, and one of the v1
// signatures must match. It compares in constant time.
func Verify(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	key, err := ParseSecret(secret)
	if err != nil {
		return err
	}
	id, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return ErrMissingHeaders
	}
	unix, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return ErrBadTimestamp
	}
	ts := time.Unix(unix, 0)
	if ts.Before(now.Add(-tolerance)) || ts.After(now.Add(tolerance)) {
		return ErrTimestampTooFar
	}
	want := []byte(Sign(key, id, ts, body))
	for sig := range strings.FieldsSeq(sigs) {
		if hmac.Equal([]byte(sig), want) {
			return nil
		}
	}
	return ErrNoMatchingSigner
}
