package notifier

import (
	"net"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
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
