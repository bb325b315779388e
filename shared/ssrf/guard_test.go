package ssrf_test

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/ssrf"
)

func TestCheckIP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		givenIP   string
		givenAllw string
		wantOK    bool
	}{
		{name: "public v4", givenIP: "93.184.216.34", wantOK: true},
		{name: "public v6", givenIP: "2606:2800:220:1:248:1893:25c8:1946", wantOK: true},
		{name: "loopback", givenIP: "127.0.0.1"},
		{name: "loopback other", givenIP: "127.1.2.3"},
		{name: "rfc1918 10", givenIP: "10.1.2.3"},
		{name: "rfc1918 172", givenIP: "172.31.255.255"},
		{name: "rfc1918 192", givenIP: "192.168.1.1"},
		{name: "cgnat", givenIP: "100.64.0.1"},
		{name: "link-local metadata", givenIP: "169.254.169.254"},
		{name: "unspecified", givenIP: "0.0.0.0"},
		{name: "multicast", givenIP: "224.0.0.1"},
		{name: "broadcast", givenIP: "255.255.255.255"},
		{name: "documentation", givenIP: "203.0.113.9"},
		{name: "v6 loopback", givenIP: "::1"},
		{name: "v6 unspecified", givenIP: "::"},
		{name: "v6 ula aws metadata", givenIP: "fd00:ec2::254"},
		{name: "v6 link-local", givenIP: "fe80::1"},
		{name: "v4-mapped loopback", givenIP: "::ffff:127.0.0.1"},
		{name: "v4-compatible loopback", givenIP: "::127.0.0.1"},
		{name: "nat64 private", givenIP: "64:ff9b::10.0.0.1"},
		{name: "nat64 public", givenIP: "64:ff9b::93.184.216.34", wantOK: true},
		{name: "ipv4-translated metadata", givenIP: "::ffff:0:a9fe:a9fe"},
		{name: "ipv4-translated public", givenIP: "::ffff:0:5db8:d822", wantOK: true},
		{name: "ipv6 benchmarking", givenIP: "2001:2::1"},
		{name: "ipv6 documentation 3fff", givenIP: "3fff::1"},
		{name: "6to4 private", givenIP: "2002:c0a8:0101::1"},
		{name: "teredo loopback", givenIP: "2001:0:4136:e378:8000:63bf:80ff:fffe"},
		{name: "allowed loopback", givenIP: "127.0.0.1", givenAllw: "127.0.0.0/8", wantOK: true},
		{name: "allowed single ip", givenIP: "10.0.0.7", givenAllw: "10.0.0.7", wantOK: true},
		{name: "allow list is not a wildcard", givenIP: "10.0.0.8", givenAllw: "10.0.0.7"},
		{name: "zoned loopback", givenIP: "::1%lo"},
		{name: "zoned link-local", givenIP: "fe80::1%eth0"},
		{name: "zoned public", givenIP: "2606:2800:220:1:248:1893:25c8:1946%eth0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			allowed, err := ssrf.ParseNetworks(tt.givenAllw)
			require.NoError(t, err)
			err = ssrf.NewGuard(allowed).CheckIP(netip.MustParseAddr(tt.givenIP))
			if tt.wantOK {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, ssrf.ErrBlocked)
			}
		})
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	g := ssrf.NewGuard(nil)
	for _, ok := range []string{"https://example.com/hook", "http://example.com:8080/a?b=c", "https://93.184.216.34/", "https://93.184.216.34./", "https://example.com./h", "https://1password.com/", "https://a.0x/"} {
		require.NoError(t, g.CheckURL(ok), ok)
	}
	for _, bad := range []string{"", "example.com", "ftp://example.com", "file:///etc/passwd", "http://", "https://user:pw@example.com/",
		"http://127.0.0.1/", "http://localhost:8080/", "http://[::1]/", "http://[::1%25lo]:8080/", "http://[fe80::1%25eth0]/", "http://169.254.169.254/latest", "gopher://x",
		"https://example.com:99999/h", "https://example.com:0/h",
		// IPv4 written so that resolvers read it as an address (inet_aton)
		"http://10.0.0.1./", "http://127.1/", "http://2130706433/", "http://0x7f000001/", "http://0X7F000001/", "http://0/", "http://0177.0.0.1/", "http://93.184.216.34.5/"} {
		require.Error(t, g.CheckURL(bad), bad)
	}
}

func TestParseNetworksRejects(t *testing.T) {
	t.Parallel()
	_, err := ssrf.ParseNetworks("10.0.0.0/8,nope")
	require.ErrorContains(t, err, "nope")
}

func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{"https://example.com", "http://[::ffff:127.0.0.1]/", "http://0x7f.1/", "http://%31%32%37.0.0.1/"} {
		f.Add(s)
	}
	g := ssrf.NewGuard(nil)
	f.Fuzz(func(t *testing.T, raw string) {
		_ = g.CheckURL(raw)
	})
}

func FuzzCheckIP(f *testing.F) {
	f.Add([]byte{127, 0, 0, 1})
	f.Add(make([]byte, 16))
	g := ssrf.NewGuard(nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		ip, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		if err := g.CheckIP(ip); err == nil && (ip.Unmap().IsLoopback() || ip.Unmap().IsPrivate() || ip.Unmap().IsLinkLocalUnicast() || ip.Unmap().IsUnspecified()) {
			t.Fatalf("%s passed the guard", ip)
		}
	})
}

func BenchmarkCheckIP(b *testing.B) {
	g := ssrf.NewGuard(nil)
	ip := netip.MustParseAddr("93.184.216.34")
	b.ReportAllocs()
	for b.Loop() {
		_ = g.CheckIP(ip)
	}
}

func BenchmarkCheckURL(b *testing.B) {
	g := ssrf.NewGuard(nil)
	b.ReportAllocs()
	for b.Loop() {
		_ = g.CheckURL("https://hooks.example.com/v1/callback?tenant=acme")
	}
}
