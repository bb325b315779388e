package notifier

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/ssrf"
)

// An attempt's error names neither the URL (its query may hold a token) nor
// the resolver that failed to look its host up (an address of the
// operator's network).
func TestDescribeLeavesOutURLAndResolver(t *testing.T) {
	t.Parallel()
	lookup := func(dns net.DNSError) error {
		dns.Name, dns.Server = "example.com", "10.255.255.53:53"
		return &url.Error{Op: "Post", URL: "https://example.com/hook?token=s3cret", Err: &net.OpError{Op: "dial", Net: "tcp", Err: &dns}}
	}
	tests := []struct {
		name  string
		given error
		want  string
	}{
		{name: "no such host", given: lookup(net.DNSError{Err: "no such host", IsNotFound: true}), want: "dial: lookup example.com: no such host"},
		{name: "lookup timed out", given: lookup(net.DNSError{Err: "read udp 10.0.0.7:35976->10.255.255.53:53: i/o timeout", IsTimeout: true}), want: "timeout: dial: lookup example.com: timed out"},
		{name: "resolver refused", given: lookup(net.DNSError{Err: "read udp 10.0.0.7:35976->10.255.255.53:53: read: connection refused"}), want: "dial: lookup example.com: the name could not be resolved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := describe(tt.given)
			require.Equal(t, tt.want, got)
			require.NotContains(t, got, "10.255")
			require.NotContains(t, got, "10.0.0.7")
			require.NotContains(t, got, "s3cret")
		})
	}
}

// Nor does it name the notifier's own address (the source of a socket's
// error) or the address a blocked host resolved to (a name of the
// operator's network): from the security review.
func TestDescribeLeavesOutTheOperatorsAddresses(t *testing.T) {
	t.Parallel()
	src := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 59640}
	dst := &net.TCPAddr{IP: net.IPv4(203, 0, 113, 5), Port: 443}
	reset := &net.OpError{Op: "read", Net: "tcp", Source: src, Addr: dst, Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}
	got := describe(&url.Error{Op: "Post", URL: "https://example.com/hook", Err: reset})
	require.Equal(t, "read tcp 203.0.113.5:443: read: connection reset by peer", got)
	got = describe(fmt.Errorf("read response: %w", reset))
	require.NotContains(t, got, "10.0.0.7")
	blocked := &url.Error{Op: "Post", URL: "http://internal.example/hook", Err: &net.OpError{Op: "dial", Net: "tcp",
		Err: fmt.Errorf("%w: 10.1.2.3 is in the non-public range 10.0.0.0/8 (allow it with HOOKSTREAM_ALLOWED_CALLBACK_NETWORKS)", ssrf.ErrBlocked)}}
	got = describe(blocked)
	require.Contains(t, got, "blocked by the SSRF guard")
	require.NotContains(t, got, "10.1.2.3")
	require.NotContains(t, got, "10.0.0.0/8")
}
