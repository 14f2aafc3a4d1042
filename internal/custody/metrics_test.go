package custody

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/metrics/metricstest"
)

// Every unwrap is counted once, by region and outcome, with the keys a
// granted one released; a region custody does not hold is "unknown".
func TestMetrics(t *testing.T) {
	reg := metrics.New()
	e := newEnv(t)
	e.cfg.Dir, e.cfg.Metrics = t.TempDir(), reg.Custody("")
	e.svc = e.open()
	ctx := t.Context()

	_, wrapped := e.wrap("zurich", 3)
	granted := record("zurich", "read", "granted", wrapped)
	denied := record("zurich", "read", "denied", wrapped)
	_, proofs := e.prove("zurich", granted, denied)
	if _, err := e.svc.Unwrap(ctx, &UnwrapRequest{Region: "zurich", Entry: granted, Proof: proofs[0], Keys: wrapped}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Unwrap(ctx, &UnwrapRequest{Region: "zurich", Entry: denied, Proof: proofs[1], Keys: wrapped}); err == nil {
		t.Fatal("unwrapped for a denied access")
	}
	if _, err := e.svc.Unwrap(ctx, &UnwrapRequest{Region: "paris", Entry: granted, Proof: proofs[0], Keys: wrapped}); err == nil {
		t.Fatal("unwrapped for a region custody does not hold")
	}
	if _, err := e.svc.Unwrap(ctx, &UnwrapRequest{Region: "zurich", Entry: granted, Proof: proofs[0]}); err == nil {
		t.Fatal("unwrapped no keys")
	}
	srv := httptest.NewServer(e.svc.Handler(func(*http.Request) bool { return true }))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/v1/unwrap", "application/json", bytes.NewReader([]byte(`{"region":`)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := e.svc.Ready(ctx); err != nil {
		t.Errorf("Ready of an open custody: %v", err)
	}
	e.svc.Close()
	if _, err := e.svc.Unwrap(ctx, &UnwrapRequest{Region: "zurich", Entry: granted, Proof: proofs[0], Keys: wrapped}); err == nil {
		t.Fatal("unwrapped after Close")
	}
	if err := e.svc.Ready(ctx); err == nil || strings.Contains(err.Error(), "/") {
		t.Errorf("Ready of a closed custody = %v, want an error naming no file", err)
	}

	s := metricstest.ScrapeHandler(t, reg.Handler())
	unwraps := func(region, outcome string) map[string]string {
		return map[string]string{"region": region, "outcome": outcome}
	}
	s.Check(t, []metricstest.Want{
		{Name: "vitrine_custody_unwraps_total", Labels: unwraps("zurich", "granted"), Value: 1},
		{Name: "vitrine_custody_unwraps_total", Labels: unwraps("zurich", "refused"), Value: 1},
		{Name: "vitrine_custody_unwraps_total", Labels: unwraps("zurich", "malformed"), Value: 1},
		{Name: "vitrine_custody_unwraps_total", Labels: unwraps("zurich", "unavailable"), Value: 1},
		{Name: "vitrine_custody_unwraps_total", Labels: unwraps("unknown", "refused"), Value: 1},
		{Name: "vitrine_custody_unwraps_total", Labels: unwraps("unknown", "malformed"), Value: 1},
		{Name: "vitrine_custody_unwraps_total", Labels: unwraps("moscow", "granted"), Value: 0},
		{Name: "vitrine_custody_unwrapped_keys_total", Labels: map[string]string{"region": "zurich"}, Value: 3},
	}...)
	if strings.Contains(s.Text, "paris") || strings.Contains(s.Text, "jdoe") {
		t.Errorf("the metrics name what a request named:\n%s", s.Grep("custody"))
	}
}
