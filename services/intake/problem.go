package intake

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/nats-io/nats.go"

	"github.com/hookstream/hookstream/shared/apikeys"
	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/endpoints"
	"github.com/hookstream/hookstream/shared/jobstore"
	"github.com/hookstream/hookstream/shared/signing"
)

// Problem is an RFC 9457 problem detail.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// apiError is an error that carries its HTTP answer.
type apiError struct {
	status     int
	slug       string
	detail     string
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.detail }

func badRequest(detail string) error {
	return &apiError{status: http.StatusBadRequest, slug: "bad-request", detail: detail}
}
func invalid(detail string) error {
	return &apiError{status: http.StatusUnprocessableEntity, slug: "invalid-request", detail: detail}
}
func notFound(what string) error {
	return &apiError{status: http.StatusNotFound, slug: "not-found", detail: what + " not found"}
}
func conflict(detail string) error {
	return &apiError{status: http.StatusConflict, slug: "conflict", detail: detail}
}
func tooLarge(limit int64) error {
	return &apiError{status: http.StatusRequestEntityTooLarge, slug: "too-large", detail: "request body is larger than " + strconv.FormatInt(limit, 10) + " bytes"}
}
func unsupportedType() error {
	return &apiError{status: http.StatusUnsupportedMediaType, slug: "unsupported-media-type", detail: "send Content-Type: application/json"}
}
func unauthorized() error {
	return &apiError{status: http.StatusUnauthorized, slug: "unauthorized", detail: "send Authorization: Bearer <api key>"}
}

// unavailable is the answer when JetStream could not store or read: the
// client must retry, nothing was accepted.
func unavailable(retryAfter time.Duration) error {
	return retryLater("the job store is unavailable and the request was not accepted; retry later (with the same Idempotency-Key, so that a write that did land is not repeated)", retryAfter)
}

// retryLater is a 503 that tells the client why, and when to retry.
func retryLater(detail string, retryAfter time.Duration) error {
	return &apiError{status: http.StatusServiceUnavailable, slug: "unavailable", detail: detail, retryAfter: retryAfter}
}

// respondError maps any error to its problem+json answer; unexpected errors
// are logged and answered 500 (or 503 when JetStream is unavailable).
func (s *Service) respondError(c *gin.Context, err error) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
	case errors.Is(err, jobstore.ErrNotFound):
		ae = notFound("job").(*apiError)
	case errors.Is(err, signing.ErrTenantDeleted):
		ae = conflict("the tenant was deleted").(*apiError)
	case errors.Is(err, signing.ErrUnreadable):
		ae = conflict(signing.ErrUnreadable.Error()).(*apiError)
	case errors.Is(err, endpoints.ErrNotFound):
		ae = notFound("endpoint").(*apiError)
	case errors.Is(err, apikeys.ErrNotFound):
		ae = notFound("api key").(*apiError)
	case errors.Is(err, nats.ErrMaxPayload):
		// Retrying would fail the same way: the body fits
		// HOOKSTREAM_MAX_BODY_BYTES, its message not the NATS server's limit.
		ae = &apiError{status: http.StatusRequestEntityTooLarge, slug: "too-large", detail: "the request is larger than the NATS server takes in a message"}
	case bus.IsUnavailable(err):
		s.logger.Warn("jetstream unavailable", "path", c.FullPath(), "error", err)
		ae = unavailable(s.cfg.RetryAfter).(*apiError)
	default:
		s.logger.Error("request failed", "path", c.FullPath(), "error", err)
		ae = retryLater("the request could not be completed; retry later", s.cfg.RetryAfter).(*apiError)
	}
	if ae.retryAfter > 0 {
		c.Header("Retry-After", retryAfterValue(ae.retryAfter))
	}
	if ae.status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer realm="hookstream"`)
	}
	writeProblem(c, ae.status, ae.slug, ae.detail)
}

func writeProblem(c *gin.Context, status int, slug, detail string) {
	c.Header("Content-Type", "application/problem+json")
	c.AbortWithStatusJSON(status, Problem{
		Type:   "urn:hookstream:problem:" + slug,
		Title:  http.StatusText(status),
		Status: status,
		Detail: detail,
	})
}

func retryAfterValue(d time.Duration) string {
	return strconv.Itoa(int(math.Ceil(d.Seconds())))
}
