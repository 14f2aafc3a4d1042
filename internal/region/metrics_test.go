package region

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/metrics/metricstest"
)

// Ingest and verdicts move the region's metrics, by result and reason,
// and the metrics name no endpoint.
func TestMetrics(t *testing.T) {
	reg := metrics.New()
	tr := newTestRegion(t, Config{Metrics: reg.Region("zurich")})
	id, tok, err := tr.issuer.Register("DE", "zurich")
	if err != nil {
		t.Fatal(err)
	}
	abroad, abroadTok, err := tr.issuer.Register("BR", "moscow")
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path, token string, body []byte) int {
		t.Helper()
		req, err := http.NewRequest(method, tr.srv.URL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	sha := strings.Repeat("ab", 32)
	for _, c := range []struct {
		method, path, token string
		body                []byte
		want                int
	}{
		{"POST", "/v1/telemetry", tok, smallBatch("b-1"), 200},
		{"POST", "/v1/telemetry", tok, smallBatch("b-1"), 200}, // a duplicate
		{"POST", "/v1/telemetry", tok, smallBatch("b-2"), 200},
		{"POST", "/v1/telemetry", "", smallBatch("b-3"), 401},
		{"POST", "/v1/telemetry", abroadTok, smallBatch("b-4"), 421},
		{"POST", "/v1/telemetry", tok, []byte(`{"batch_id":"b-5","records":"no"}`), 400},
		{"GET", "/v1/verdicts/" + sha, tok, nil, 200},
		{"POST", "/v1/verdicts", tok, []byte(`{"sha256":["` + sha + `","` + strings.Repeat("cd", 32) + `","` + strings.Repeat("ef", 32) + `"]}`), 200},
		{"GET", "/v1/verdicts/nothex", tok, nil, 400},
		{"POST", "/v1/verdicts", "", []byte(`{}`), 401},
	} {
		if got := do(c.method, c.path, c.token, c.body); got != c.want {
			t.Fatalf("%s %s: %d, want %d", c.method, c.path, got, c.want)
		}
	}

	s := metricstest.ScrapeHandler(t, reg.Handler())
	s.Check(t, []metricstest.Want{
		{Name: "vitrine_region_ingest_batches_total", Labels: map[string]string{"region": "zurich", "result": "stored"}, Value: 2},
		{Name: "vitrine_region_ingest_batches_total", Labels: map[string]string{"region": "zurich", "result": "duplicate"}, Value: 1},
		{Name: "vitrine_region_ingest_records_total", Labels: map[string]string{"region": "zurich"}, Value: 4},
		{Name: "vitrine_region_ingest_rejected_total", Labels: map[string]string{"region": "zurich", "reason": "unauthenticated"}, Value: 1},
		{Name: "vitrine_region_ingest_rejected_total", Labels: map[string]string{"region": "zurich", "reason": "misdirected"}, Value: 1},
		{Name: "vitrine_region_ingest_rejected_total", Labels: map[string]string{"region": "zurich", "reason": "malformed"}, Value: 1},
		{Name: "vitrine_region_ingest_rejected_total", Labels: map[string]string{"region": "zurich", "reason": "unavailable"}, Value: 0},
		{Name: "vitrine_region_verdict_requests_total", Labels: map[string]string{"region": "zurich", "result": "answered"}, Value: 2},
		{Name: "vitrine_region_verdict_requests_total", Labels: map[string]string{"region": "zurich", "result": "rejected"}, Value: 2},
		{Name: "vitrine_region_verdicts_total", Labels: map[string]string{"region": "zurich"}, Value: 4},
	}...)
	for _, personal := range []string{id.ID, abroad.ID, "/bin/a", tok} {
		if strings.Contains(s.Text, personal) {
			t.Errorf("the metrics name %q", personal)
		}
	}
}
