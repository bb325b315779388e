// Package ssrf keeps outbound webhook calls away from addresses they must not
// reach: loopback, private, link-local, cloud metadata and other non-public
// ranges. The check runs on the IP actually dialled (net.Dialer.Control), so
// a DNS name that resolves, or re-resolves, to a private address is refused
// too. Operators open chosen ranges with an allow list.
package ssrf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
)

// ErrBlocked is wrapped by every refusal of this package.
var ErrBlocked = errors.New("address not allowed")

// blocked lists the non-public ranges. IPv4-mapped IPv6 addresses are
// unmapped before the check; NAT64, 6to4 and Teredo embed an IPv4 address
// that is checked as well.
var blocked = mustPrefixes(
	"0.0.0.0/8",       // "this" network, unspecified
	"10.0.0.0/8",      // private
	"100.64.0.0/10",   // carrier-grade NAT
	"127.0.0.0/8",     // loopback
	"169.254.0.0/16",  // link-local, cloud metadata 169.254.169.254
	"172.16.0.0/12",   // private
	"192.0.0.0/24",    // IETF protocol assignments
	"192.0.2.0/24",    // documentation
	"192.88.99.0/24",  // 6to4 relay anycast
	"192.168.0.0/16",  // private
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // documentation
	"203.0.113.0/24",  // documentation
	"224.0.0.0/4",     // multicast
	"240.0.0.0/4",     // reserved, broadcast
	"::/128",          // unspecified
	"::1/128",         // loopback
	"::/96",           // IPv4-compatible (deprecated)
	"100::/64",        // discard
	"2001:2::/48",     // benchmarking
	"2001:db8::/32",   // documentation
	"3fff::/20",       // documentation (RFC 9637)
	"2001:10::/28",    // ORCHID
	"2001:20::/28",    // ORCHIDv2
	"fc00::/7",        // unique local, includes AWS metadata fd00:ec2::254
	"fe80::/10",       // link-local
	"fec0::/10",       // site-local (deprecated)
	"ff00::/8",        // multicast
)

// embedded are IPv6 forms that carry an IPv4 address, with where it sits.
var embedded = []struct {
	prefix netip.Prefix
	offset int // byte offset of the IPv4 address
}{
	{netip.MustParsePrefix("64:ff9b::/96"), 12},    // NAT64
	{netip.MustParsePrefix("::ffff:0:0:0/96"), 12}, // IPv4-translated (SIIT)
	{netip.MustParsePrefix("64:ff9b:1::/48"), 12},  // local-use NAT64
	{netip.MustParsePrefix("2002::/16"), 2},        // 6to4
}

var teredo = netip.MustParsePrefix("2001::/32")

func mustPrefixes(cidrs ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(cidrs))
	for i, c := range cidrs {
		out[i] = netip.MustParsePrefix(c)
	}
	return out
}

// Guard decides which addresses outbound calls may reach.
type Guard struct {
	allowed []netip.Prefix
}

// NewGuard returns a guard that refuses every non-public address except those
// in allowed.
func NewGuard(allowed []netip.Prefix) *Guard {
	return &Guard{allowed: allowed}
}

// ParseNetworks parses a comma-separated list of CIDRs (or single IPs).
func ParseNetworks(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !strings.Contains(part, "/") {
			addr, err := netip.ParseAddr(part)
			if err != nil {
				return nil, fmt.Errorf("network %q: %w", part, err)
			}
			out = append(out, netip.PrefixFrom(addr, addr.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("network %q: %w", part, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// CheckIP returns nil when ip may be dialled.
func (g *Guard) CheckIP(ip netip.Addr) error {
	if ip.Zone() != "" { // a zone makes Prefix.Contains false: never trust one
		return fmt.Errorf("%w: %s has an IPv6 zone", ErrBlocked, ip)
	}
	ip = ip.Unmap()
	for _, p := range g.allowed {
		if p.Contains(ip) {
			return nil
		}
	}
	if !ip.IsValid() {
		return fmt.Errorf("%w: invalid IP", ErrBlocked)
	}
	if inner, ok := embeddedIPv4(ip); ok {
		if err := g.CheckIP(inner); err != nil {
			return fmt.Errorf("%w: %s embeds %s", ErrBlocked, ip, inner)
		}
	}
	for _, p := range blocked {
		if p.Contains(ip) {
			return fmt.Errorf("%w: %s is in the non-public range %s (allow it with HOOKSTREAM_ALLOWED_CALLBACK_NETWORKS)", ErrBlocked, ip, p)
		}
	}
	return nil
}

func embeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	if !ip.Is6() {
		return netip.Addr{}, false
	}
	b := ip.As16()
	for _, e := range embedded {
		if e.prefix.Contains(ip) {
			return netip.AddrFrom4([4]byte(b[e.offset : e.offset+4])), true
		}
	}
	if teredo.Contains(ip) { // client IPv4 is the last 4 bytes, inverted
		return netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}), true
	}
	return netip.Addr{}, false
}

// numericLastLabel tells whether a host name's last label is a number:
// decimal digits, or 0x and hex digits.
func numericLastLabel(host string) bool {
	last := host[strings.LastIndexByte(host, '.')+1:]
	digits := "0123456789"
	if rest, ok := strings.CutPrefix(last, "0x"); ok {
		last, digits = rest, "0123456789abcdef"
	}
	return last != "" && strings.Trim(last, digits) == ""
}

// Control is a net.Dialer Control function: it refuses the connection when
// the address being dialled is not allowed.
func (g *Guard) Control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: dial address %q: %v", ErrBlocked, address, err)
	}
	return g.CheckIP(ap.Addr())
}

// CheckURL validates a callback URL before it is stored: an absolute http or
// https URL with a host, no user info, and no host that is certainly
// non-public (an IP literal in a blocked range or a localhost name). Names
// are not resolved here; the dial-time check is the one that counts.
func (g *Guard) CheckURL(raw string) error {
	if len(raw) > 2048 {
		return errors.New("longer than 2048 characters")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("scheme must be http or https")
	}
	if u.User != nil {
		return errors.New("user info is not allowed in the URL")
	}
	host := u.Hostname()
	if host == "" {
		return errors.New("host missing")
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return errors.New("port must be 1 to 65535")
		}
	}
	if ip, err := netip.ParseAddr(strings.TrimSuffix(host, ".")); err == nil {
		return g.CheckIP(ip)
	}
	lower := strings.ToLower(strings.TrimSuffix(host, "."))
	if lower == "localhost" || strings.HasSuffix(lower, ".localhost") {
		return g.CheckIP(netip.MustParseAddr("127.0.0.1"))
	}
	if numericLastLabel(lower) {
		// No DNS name ends in a label of digits: this is an IPv4 address
		// written short, in octal or in hex (127.1, 2130706433, 0x7f000001),
		// which resolvers and URL parsers read differently.
		return errors.New("host is an IPv4 address in a short, octal or hex form: write it as four decimal numbers (a.b.c.d)")
	}
	if net.ParseIP(host) == nil && strings.ContainsAny(host, " %") {
		return errors.New("host is not a valid name")
	}
	return nil
}
