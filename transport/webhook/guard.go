package webhook

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
)

// RefusedError is the error of a send whose destination resolved to an
// address the configuration does not allow. It is permanent: the message
// becomes Failed at once, since retrying reaches the same address.
type RefusedError struct {
	// Host is the URL's host, Addr the address it resolved to.
	Host string
	Addr netip.Addr
	// Reason names the kind of address: "loopback", "private", ...
	Reason string
}

// Error names the destination, the address and why it is refused.
func (e *RefusedError) Error() string {
	article := "a"
	if strings.ContainsRune("aeiou", rune(e.Reason[0])) {
		article = "an"
	}
	allow := "Config.AllowPrivate or Config.AllowedNets"
	if strings.HasSuffix(e.Reason, "cloud-metadata") {
		allow = "Config.AllowedNets only" // AllowPrivate does not
	}
	return fmt.Sprintf("destination %s refused: %s is %s %s address (allow it with %s)",
		e.Host, e.Addr, article, e.Reason, allow)
}

// Permanent reports true: retrying cannot make the address acceptable.
func (e *RefusedError) Permanent() bool { return true }

// metadataNets are cloud instance-metadata services. They are refused even
// with Config.AllowPrivate, unless Config.AllowedNets names them.
var metadataNets = []netip.Prefix{
	netip.MustParsePrefix("169.254.169.254/32"),  // AWS, GCP, Azure, OpenStack, ...
	netip.MustParsePrefix("169.254.170.2/32"),    // AWS ECS task metadata
	netip.MustParsePrefix("100.100.100.200/32"),  // Alibaba Cloud
	netip.MustParsePrefix("fd00:ec2::254/128"),   // AWS over IPv6
	netip.MustParsePrefix("fd00:ec2::23/128"),    // AWS EKS pod identity
	netip.MustParsePrefix("fe80::a9fe:a9fe/128"), // 169.254.169.254 on IPv6 link-local
}

// specialNets are not public unicast destinations, beside what netip's
// predicates find.
var specialNets = []struct {
	p      netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\""},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared (carrier-grade NAT)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local NAT64"},
	{netip.MustParsePrefix("100::/64"), "discard-only"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
}

// guard decides which addresses a request may connect to.
type guard struct {
	allowPrivate bool
	allowed      []netip.Prefix
}

// check returns why ip is refused, or "" if it is allowed.
func (g guard) check(ip netip.Addr) string {
	ip = ip.Unmap()
	if slices.ContainsFunc(g.allowed, func(p netip.Prefix) bool { return p.Contains(ip) }) {
		return ""
	}
	metadata := func(ip netip.Addr) bool {
		return slices.ContainsFunc(metadataNets, func(p netip.Prefix) bool { return p.Contains(ip) })
	}
	if metadata(ip) {
		return "cloud-metadata"
	}
	v4, via, embeds := embeddedIPv4(ip)
	if embeds && metadata(v4) && !slices.ContainsFunc(g.allowed, func(p netip.Prefix) bool { return p.Contains(v4) }) {
		return via + " cloud-metadata" // refused under AllowPrivate too
	}
	if g.allowPrivate {
		return ""
	}
	switch {
	case ip.IsLoopback():
		return "loopback"
	case ip.IsPrivate():
		return "private"
	case ip.IsLinkLocalUnicast():
		return "link-local"
	case ip.IsUnspecified():
		return "unspecified"
	case ip.IsMulticast():
		return "multicast"
	case ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "broadcast"
	}
	for _, s := range specialNets {
		if s.p.Contains(ip) {
			return s.reason
		}
	}
	if embeds {
		if r := g.check(v4); r != "" {
			return via + " " + r
		}
	}
	return ""
}

// nat64 is the well-known NAT64 prefix.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// embeddedIPv4 returns the IPv4 address that a 6to4 or NAT64 address
// reaches, and which of the two it is.
func embeddedIPv4(ip netip.Addr) (v4 netip.Addr, via string, ok bool) {
	b := ip.As16()
	switch {
	case ip.Is6() && b[0] == 0x20 && b[1] == 0x02:
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), "6to4", true
	case nat64.Contains(ip):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), "NAT64", true
	}
	return netip.Addr{}, "", false
}

// control is the net.Dialer's Control: it runs on the address actually
// dialed, after name resolution, so a name that resolves to an allowed
// address once and to a refused one later (DNS rebinding) is refused.
func (g guard) control(host string) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("webhook: dialing %s: unexpected address %q: %w", host, address, err)
		}
		if r := g.check(ap.Addr()); r != "" {
			return &RefusedError{Host: host, Addr: ap.Addr().Unmap(), Reason: r}
		}
		return nil
	}
}
