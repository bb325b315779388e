package notifier

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/endpoints"
	"github.com/hookstream/hookstream/shared/ssrf"
	"github.com/hookstream/hookstream/shared/webhook"
)

// newClient returns the HTTP client for webhooks: every dial passes the SSRF
// guard (on the resolved IP), no proxy from the environment, redirects are
// not followed, each attempt is bounded by timeout, and connections are kept
// alive per receiver: up to idlePerHost of them, the most this process can
// have in flight to one host, so that a busy receiver's connections are
// reused instead of closed after each request and dialled again.
func newClient(guard *ssrf.Guard, timeout time.Duration, idlePerHost int) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, Control: guard.Control}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          max(1024, idlePerHost),
			MaxIdleConnsPerHost:   idlePerHost,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: timeout,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// outcome is what one attempt came to.
type outcome struct {
	attempt contract.Attempt
	// retryAfter is the receiver's Retry-After on 429 and 503.
	retryAfter time.Duration
	// gone: the receiver answered 410, never try again.
	gone bool
	// slowDown: the attempt timed out or the receiver answered 429.
	slowDown bool
}

func (o outcome) ok() bool { return o.attempt.StatusCode >= 200 && o.attempt.StatusCode <= 299 }

// outcomeName is the attempt's label in the metrics.
func (o outcome) outcomeName() string {
	switch {
	case o.ok():
		return "success"
	case o.gone:
		return "gone"
	case strings.HasPrefix(o.attempt.Error, "blocked by the SSRF guard"):
		return "blocked"
	}
	return "failure"
}

// destination is where and how a delivery is sent, resolved per round.
type destination struct {
	url     string
	keys    [][]byte
	headers map[string]string
	timeout time.Duration
	// schedule is the endpoint's own retry schedule, when it has one.
	schedule []time.Duration
	// announce, when the delivery cannot be sent, says that its dead
	// letter is logged and announced (delivery.exhausted), as one whose
	// attempts ran out: a refused callback URL or an unreadable secret,
	// which nobody said, unlike an endpoint deleted or disabled.
	announce bool
}

// send makes one signed attempt of d, whose limitKey is key. out is named
// so that the deferred latency lands in what is returned.
func (n *Notifier) send(ctx context.Context, d *contract.Delivery, dest destination, key string) (out outcome) {
	start := n.cfg.Now()
	out = outcome{attempt: contract.Attempt{At: start.UTC()}}
	n.limits.sending(key, start)
	defer func() {
		took := n.cfg.Now().Sub(start)
		out.attempt.LatencyMS = took.Milliseconds()
		n.limits.answered(key, start, took)
	}()

	ctx, cancel := context.WithTimeout(ctx, dest.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dest.url, bytes.NewReader(d.Body))
	if err != nil {
		out.attempt.Error = "invalid callback URL: " + err.Error()
		return out
	}
	for k, v := range dest.headers {
		if !endpoints.ReservedHeader(k) { // one stored before it was reserved
			req.Header.Set(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", n.cfg.UserAgent)
	webhook.SetHeaders(req.Header, dest.keys, d.ID, start, d.Body)
	resp, err := n.client.Do(req)
	if err != nil {
		out.attempt.Error = describe(err)
		out.slowDown = strings.HasPrefix(out.attempt.Error, "timeout")
		return out
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes))
	out.attempt.StatusCode = resp.StatusCode
	out.attempt.Response = firstBytes(body, loggedResponseBytes)
	switch {
	case err != nil && out.ok():
		// The receiver answered 2xx; a broken body after that does not matter.
	case err != nil:
		out.attempt.Error = "read response: " + describe(err)
	case resp.StatusCode >= 300 && resp.StatusCode <= 399:
		out.attempt.Error = "redirect not followed (" + resp.Header.Get("Location") + ")"
	case resp.StatusCode == http.StatusGone:
		out.gone = true
		out.attempt.Error = "receiver answered 410 Gone: not retried"
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		out.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), start)
		out.slowDown = resp.StatusCode == http.StatusTooManyRequests
	}
	return out
}

// describe turns a transport error into a reason an integrator can read,
// without the URL (its query may hold a token that must not be logged).
func describe(err error) string {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	var netErr net.Error
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		// The name and a fixed reason: the error's own text may hold the
		// resolver's address and the socket's (read udp a->b: ...),
		// addresses of the operator's network that tenants need not see.
		switch {
		case dnsErr.IsTimeout:
			return "timeout: dial: lookup " + dnsErr.Name + ": timed out"
		case dnsErr.IsNotFound:
			return "dial: lookup " + dnsErr.Name + ": no such host"
		default:
			return "dial: lookup " + dnsErr.Name + ": the name could not be resolved"
		}
	case errors.Is(err, ssrf.ErrBlocked):
		// Without the address: the host's name is the tenant's, but what
		// the operator's resolvers answer for it (a name of the internal
		// network) is not for tenants to learn.
		return "blocked by the SSRF guard: " + ssrf.ErrBlocked.Error() + ": the host's address is not public (the operator may allow its network with HOOKSTREAM_ALLOWED_CALLBACK_NETWORKS)"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timeout: " + withoutSource(err)
	default:
		return withoutSource(err)
	}
}

// withoutSource is err's text without the local address of its socket
// ("read tcp 10.0.0.7:59640->203.0.113.5:443: …" becomes "read tcp
// 203.0.113.5:443: …"): the notifier's own address is the operator's.
func withoutSource(err error) string {
	var opErr *net.OpError
	if !errors.As(err, &opErr) || opErr.Source == nil {
		return err.Error()
	}
	bare := *opErr
	bare.Source = nil
	return strings.Replace(err.Error(), opErr.Error(), bare.Error(), 1)
}

// maxRetryAfterSecs bounds a Retry-After in seconds before it becomes a
// Duration (a day: more than any wait honoured).
const maxRetryAfterSecs = 24 * 60 * 60

// parseRetryAfter reads seconds or an HTTP date; zero when absent or bad.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	secs, err := strconv.Atoi(strings.TrimSpace(v))
	if errors.Is(err, strconv.ErrRange) && secs > 0 { // more digits than an int holds
		secs, err = maxRetryAfterSecs, nil
	}
	if err == nil && secs >= 0 {
		return time.Duration(min(secs, maxRetryAfterSecs)) * time.Second // no overflow
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func firstBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}
