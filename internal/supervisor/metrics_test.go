package supervisor

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/metrics/metricstest"
)

// A supervisor is ready while its witness and its members' custody
// answer; its members' unwraps are counted under their names, and a
// supervisor opened again (SIGHUP) counts on in the same registry.
func TestReadyAndMetrics(t *testing.T) {
	a, ta := testMember(t, "acme.example", "http://127.0.0.1:1")
	b, _ := testMember(t, "bolt.example", "http://127.0.0.1:2")
	h := new(httpapi.Lazy)
	srv := httptest.NewServer(h)
	defer srv.Close()
	reg := metrics.New()
	cfg := Config{Dir: t.TempDir(), Name: "supervisor.test", URL: srv.URL, Members: []Member{a, b}, Metrics: reg}
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.Set(s.Handler())
	if err := s.Ready(t.Context()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	// An unwrap without a proof: refused, and counted for acme alone.
	code, body := do(t, "POST", srv.URL+"/members/acme.example/custody/v1/unwrap", ta, `{"region":"zurich","entry":"e30=","proof":"","keys":["AA=="]}`)
	if code != 403 {
		t.Fatalf("unwrap without a proof: %d %s", code, body)
	}
	s.Close()
	if err := s.Ready(t.Context()); err == nil {
		t.Error("a closed supervisor is ready")
	}
	if s, err = Open(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sc := metricstest.ScrapeHandler(t, reg.Handler())
	if got := sc.Get(t, "vitrine_custody_unwraps_total", map[string]string{"member": "acme.example", "region": "zurich", "outcome": "refused"}); got != 1 {
		t.Errorf("acme's refused unwraps: %v, want 1", got)
	}
	if got := sc.Get(t, "vitrine_custody_unwraps_total", map[string]string{"member": "bolt.example", "region": "zurich", "outcome": "refused"}); got != 0 {
		t.Errorf("bolt's refused unwraps: %v, want 0", got)
	}
}
