package gateway

import (
	"net/http"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/metrics/metricstest"
)

// Every request to the gateway is counted once, by action and decision,
// with the records it released; the metrics name no principal and no
// endpoint.
func TestMetrics(t *testing.T) {
	reg := metrics.New()
	e := newEnvWith(t, "", func(c *Config) {
		c.Metrics = reg.Gateway(testRegion)
		c.Unauthenticated = Limits{Burst: 1, AllBurst: 1 << 20}
	})
	a := hash("a")
	ep := e.ingest("CH", rec(a, 0, "C:/Users/anna/eicar.com"), rec(a, 1, "C:/Users/anna/b.exe"))
	for _, c := range []struct {
		method, path, principal, justification string
		want                                   int
	}{
		{"GET", "/v1/records?sha256=" + a, "analyst:jdoe", justified, 200},
		{"GET", "/v1/records/export?sha256=" + a, "supervisor:sv", justified, 200},
		{"GET", "/v1/records?sha256=" + a, "auditor:ann", justified, 403},
		{"GET", "/v1/records?sha256=" + a, "analyst:jdoe", "", 400},
		{"GET", "/v1/records?sha256=" + a, "", justified, 401},                // logged: within the burst
		{"GET", "/v1/records?sha256=" + a, "", justified, 401},                // counted: beyond it
		{"GET", "/v1/records?endpoint=" + ep, "analyst:jdoe", justified, 200}, // by endpoint, which the metrics must not name
		{"DELETE", "/v1/records?sha256=" + a, "operator:ops", justified, 200},
	} {
		if r := e.do(c.method, c.path, c.principal, c.justification); r.status != c.want {
			t.Fatalf("%s %s as %q: %d %s, want %d", c.method, c.path, c.principal, r.status, r.body, c.want)
		}
	}
	e.ingest("CH", rec(a, 0, "C:/Users/anna/c.exe"))
	e.custodySrv.Close()
	if r := e.do("GET", "/v1/records?sha256="+a, "analyst:jdoe", justified); r.status != http.StatusServiceUnavailable {
		t.Fatalf("read with custody stopped: %d, want 503", r.status)
	}

	s := metricstest.ScrapeHandler(t, reg.Handler())
	decisions := func(action, decision string) map[string]string {
		return map[string]string{"region": testRegion, "action": action, "decision": decision}
	}
	s.Check(t, []metricstest.Want{
		{Name: "vitrine_gateway_decisions_total", Labels: decisions("read", "granted"), Value: 2},
		{Name: "vitrine_gateway_decisions_total", Labels: decisions("read", "denied"), Value: 3},
		{Name: "vitrine_gateway_decisions_total", Labels: decisions("read", "counted"), Value: 1},
		{Name: "vitrine_gateway_decisions_total", Labels: decisions("read", "failed"), Value: 1},
		{Name: "vitrine_gateway_decisions_total", Labels: decisions("export", "granted"), Value: 1},
		{Name: "vitrine_gateway_decisions_total", Labels: decisions("delete", "granted"), Value: 1},
		{Name: "vitrine_gateway_decisions_total", Labels: decisions("delete", "denied"), Value: 0},
		{Name: "vitrine_gateway_records_total", Labels: map[string]string{"region": testRegion, "action": "read"}, Value: 4},
		{Name: "vitrine_gateway_records_total", Labels: map[string]string{"region": testRegion, "action": "export"}, Value: 2},
		{Name: "vitrine_gateway_records_total", Labels: map[string]string{"region": testRegion, "action": "delete"}, Value: 2},
	}...)
	for _, personal := range []string{ep, "jdoe", "analyst:", "anna", e.tokens["analyst:jdoe"]} {
		if strings.Contains(s.Text, personal) {
			t.Errorf("the metrics name %q", personal)
		}
	}
}
