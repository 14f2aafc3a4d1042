package gateway

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/principal"
)

// downPrincipals is a registry that cannot be reached, as the platform's
// is from a region's own process while the platform is down.
type downPrincipals struct{}

func (downPrincipals) Authenticate(*http.Request) (*principal.Principal, error) {
	return nil, fmt.Errorf("authenticating principal: %w", fault.Mark(fault.ErrUnavailable, fmt.Errorf("connection refused")))
}

// TestPrincipalsUnavailable: when the registry cannot be reached the
// access fails closed with a 503, and the log does not record a denied
// "bad credential" attempt of a principal whose credential may be good.
func TestPrincipalsUnavailable(t *testing.T) {
	e := newEnvWith(t, "", func(c *Config) { c.Principals = downPrincipals{} })
	before := e.glog.count()
	r := e.do("GET", "/v1/records?sha256="+fmt.Sprintf("%064x", 1), "vp1.whatever", `{"code":"CUSTOMER_INITIATED_SUPPORT","detail":"case 1"}`)
	if r.status != http.StatusServiceUnavailable {
		t.Errorf("read with the registry down: %d %s, want 503", r.status, r.body)
	}
	if n := e.glog.count() - before; n != 0 {
		entries, _ := e.glog.appended()
		t.Errorf("%d entries appended: %s", n, entries[len(entries)-1])
	}
}
