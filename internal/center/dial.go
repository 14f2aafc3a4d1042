package center

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// NewHTTPClient returns the HTTP client a Center reads a platform with
// when it is given none (and `vitrine report` reads one with). The discovery document names the URLs of the logs and
// monitors the Center then reads, and a page shows what went wrong when
// one fails: a platform on a public address could otherwise have a Center
// probe the networks it runs in (a loopback or private address, a cloud's
// metadata service) and show what answered. So when the platform's own
// address is public, the client connects to public addresses only, checked
// as each connection is made (after name resolution, so a name that
// resolves to a private address is refused too). A platform on a loopback
// or private address (vitrine up, a vendor's own network) is read without
// this restriction: its Center is inside that network already.
func NewHTTPClient(platform string) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if u, err := url.Parse(platform); err == nil && isPublicHost(u.Hostname()) {
		d := &net.Dialer{Timeout: 10 * time.Second, Control: refusePrivate}
		t.DialContext = d.DialContext
		t.Proxy = nil // the check is of the address dialled
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: t}
}

// isPublicHost reports whether host (a name or an address) resolves to
// public addresses only.
func isPublicHost(host string) bool {
	addrs, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip", host)
	if err != nil || len(addrs) == 0 {
		return true // unknown: the stricter client
	}
	for _, a := range addrs {
		if !isPublic(a) {
			return false
		}
	}
	return true
}

func isPublic(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsGlobalUnicast() && !a.IsPrivate() && !a.IsLoopback() && !a.IsLinkLocalUnicast() &&
		!netip.MustParsePrefix("100.64.0.0/10").Contains(a) // carrier-grade NAT, shared address space
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
