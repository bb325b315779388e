package intake

import (
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// admission protects the write path: at most MaxInflight writes are served
// at once (more get 503 at once, so that overload never grows memory), and
// each tenant gets at most TenantRate writes per second (more get 429).
type admission struct {
	inflight chan struct{}
	rate     float64
	now      func() time.Time

	mu      sync.Mutex
	buckets map[string]*tokenBucket
}

type tokenBucket struct {
	tokens float64
	at     time.Time
}

func newAdmission(maxInflight, tenantRate int, now func() time.Time) *admission {
	return &admission{inflight: make(chan struct{}, maxInflight), rate: float64(tenantRate), now: now, buckets: map[string]*tokenBucket{}}
}

// allow takes a token of the tenant's bucket (burst: one second's worth),
// or says how long until one is free.
func (a *admission) allow(tenant string) (bool, time.Duration) {
	if a.rate <= 0 {
		return true, 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	b := a.buckets[tenant]
	if b == nil {
		b = &tokenBucket{tokens: a.rate, at: now}
		a.buckets[tenant] = b
	}
	b.tokens = math.Min(a.rate, b.tokens+now.Sub(b.at).Seconds()*a.rate)
	b.at = now
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / a.rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

// admit is the middleware of the write routes.
func (s *Service) admit(c *gin.Context) {
	if ok, wait := s.admission.allow(tenantOf(c)); !ok {
		s.respondError(c, &apiError{status: http.StatusTooManyRequests, slug: "rate-limited",
			detail: "this tenant is over its request rate; retry after Retry-After", retryAfter: max(wait, time.Second)})
		return
	}
	select {
	case s.admission.inflight <- struct{}{}:
		defer func() { <-s.admission.inflight }()
		c.Next()
	default:
		s.respondError(c, &apiError{status: http.StatusServiceUnavailable, slug: "overloaded",
			detail: "too many requests in flight; nothing was accepted, retry later", retryAfter: s.cfg.RetryAfter})
	}
}

// waits counts each tenant's long-polls and event streams open at once:
// each holds a goroutine here and a watch (an ordered consumer) on the
// server for up to a minute, or five for a stream.
type waits struct {
	most int
	mu   sync.Mutex
	open map[string]int
}

// start takes one of the tenant's waits; false when it has most open.
// done gives it back.
func (w *waits) start(tenant string) (done func(), ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.open[tenant] >= w.most {
		return nil, false
	}
	w.open[tenant]++
	return sync.OnceFunc(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.open[tenant]--; w.open[tenant] <= 0 {
			delete(w.open, tenant)
		}
	}), true
}

// tooManyWaits is the answer to a wait over the tenant's limit.
func (s *Service) tooManyWaits(c *gin.Context) {
	s.respondError(c, &apiError{status: http.StatusTooManyRequests, slug: "too-many-waits",
		detail:     fmt.Sprintf("this tenant has %d long-polls and event streams open here already; retry after Retry-After, or poll without ?wait=", s.cfg.MaxWaitsPerTenant),
		retryAfter: s.cfg.RetryAfter})
}
