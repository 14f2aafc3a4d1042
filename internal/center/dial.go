package center

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// NewHTTPClient returns the HTTP client a Center reads a platform with
// when it is given none (and `vitrine report` reads one with). The
// discovery document names the URLs of the logs and monitors the Center
// then reads, and a page shows what went wrong when one fails: a platform
// could otherwise have a Center probe the networks it runs in (a loopback
// or private address, a cloud's metadata service) and show what answered.
// So the client connects to public addresses only, checked as each
// connection is made (after name resolution, so a name that resolves to a
// private address is refused too), unless the platform's URL names a
// loopback or private address itself (vitrine up, a vendor's own network),
// or allowPrivate says so: its Center is inside that network already. The
// platform's URL decides, never its DNS, which the platform controls.
func NewHTTPClient(platform string, allowPrivate bool) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if !allowPrivate && !privateURL(platform) {
		d := &net.Dialer{Timeout: 10 * time.Second, Control: refusePrivate}
		t.DialContext = d.DialContext
		t.Proxy = nil // the check is of the address dialled
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: t}
}

// privateURL reports whether u's host is localhost or an address that is
// not public.
func privateURL(u string) bool {
	pu, err := url.Parse(u)
	if err != nil {
		return false
	}
	host := pu.Hostname()
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && !isPublic(a)
}

// notPublic are the IANA special-purpose blocks (RFC 6890 and after) that
// a Center must not reach over a public platform, beside private,
// loopback and link-local addresses.
var notPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // shared address space (carrier-grade NAT)
	netip.MustParsePrefix("192.0.0.0/24"),  // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),   // reserved, and the broadcast address
	netip.MustParsePrefix("2001::/32"),     // Teredo, which embeds an IPv4 address
	netip.MustParsePrefix("2002::/16"),     // 6to4, likewise
}

// isPublic reports whether a is a public unicast address: IPv4 outside
// the blocks above, or IPv6 in 2000::/3 (global unicast; NAT64's
// 64:ff9b::/96, which reaches IPv4 addresses, is outside it) outside them.
func isPublic(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() {
		return false
	}
	if a.Is6() && !netip.MustParsePrefix("2000::/3").Contains(a) {
		return false
	}
	for _, p := range notPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// refusePrivate is a dialer's Control that refuses a connection to an
// address that is not public.
func refusePrivate(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("center: refusing to connect to %s: %w", address, err)
	}
	if !isPublic(ap.Addr()) {
		return fmt.Errorf("center: refusing to connect to %s: the platform is on a public address, and this one is not", ap.Addr())
	}
	return nil
}
