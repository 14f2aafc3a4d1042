package platform

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/certfile"
	"github.com/vitrine-dev/vitrine/internal/gotest"
	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/metrics/metricstest"
)

// The parts of `vitrine up` report to the registry it is given: an
// endpoint's batch and an analyst's read move the logs', the region's,
// the gateway's, custody's and the witness's metrics, and no metric names
// the endpoint, the analyst or what the batch held.
func TestMetrics(t *testing.T) {
	reg := metrics.New()
	p, err := Start(context.Background(), Config{Data: t.TempDir(), Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond,
		BuildSourceRoots: []string{}, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer stop(t, p)
	ep := register(t, p, "DE")
	sha := hashOf("metered")
	if code, body := postJSON(t, ep.IngestURL, ep.Token, batchJSON("b-1", fileRec(sha, "C:/Users/greta/report.exe"))); code != 200 {
		t.Fatalf("ingest: %d %s", code, body)
	}
	analyst := createPrincipal(t, p, `{"id":"analyst:greta","role":"analyst","location":"CH","regions":["zurich"]}`)
	if code, body, _ := readRecords(t, p, analyst, sha); code != 200 || !strings.Contains(string(body), "greta/report.exe") {
		t.Fatalf("read: %d %s", code, body)
	}

	s := metricstest.ScrapeHandler(t, reg.Handler())
	access := map[string]string{"log": "vitrine.local/logs/access-zurich"}
	if got := s.Get(t, "vitrine_log_appends_total", access); got < 2 {
		t.Errorf("appends to access-zurich: %v, want the grant and the access at least", got)
	}
	for _, name := range LogNames {
		lbl := map[string]string{"log": "vitrine.local/logs/" + name}
		if got := s.Get(t, "vitrine_log_storage_healthy", lbl); got != 1 {
			t.Errorf("log %s: storage healthy %v", name, got)
		}
		s.Get(t, "vitrine_log_checkpoint_age_seconds", lbl)
		s.Get(t, "vitrine_log_witness_requests_total", map[string]string{"log": lbl["log"], "witness": "supervisor", "outcome": "cosigned"})
	}
	s.Check(t, []metricstest.Want{
		{Name: "vitrine_region_ingest_batches_total", Labels: map[string]string{"region": "zurich", "result": "stored"}, Value: 1},
		{Name: "vitrine_region_ingest_records_total", Labels: map[string]string{"region": "zurich"}, Value: 1},
		{Name: "vitrine_gateway_decisions_total", Labels: map[string]string{"region": "zurich", "action": "read", "decision": "granted"}, Value: 1},
		{Name: "vitrine_gateway_records_total", Labels: map[string]string{"region": "zurich", "action": "read"}, Value: 1},
		{Name: "vitrine_custody_unwraps_total", Labels: map[string]string{"region": "zurich", "outcome": "granted"}, Value: 1},
		{Name: "vitrine_custody_unwrapped_keys_total", Labels: map[string]string{"region": "zurich"}, Value: 1},
	}...)
	if got := s.Get(t, "vitrine_witness_add_checkpoint_total", map[string]string{"code": "200"}); got < float64(len(LogNames)) {
		t.Errorf("the witness cosigned %v checkpoints, want one per log at least", got)
	}
	for _, personal := range []string{ep.ID, ep.Token, "greta", analyst, sha, p.OperatorToken()} {
		if strings.Contains(s.Text, personal) {
			t.Errorf("the metrics name %q", personal)
		}
	}
}

// With a certificate, the platform serves HTTPS alone, at an https:// URL
// that a client trusting its CA reads; plain HTTP is refused.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := gotest.NewCA(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca.Issue(t, "vitrine.test", certFile, keyFile)
	cert, err := certfile.Load(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(context.Background(), Config{Data: t.TempDir(), Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond,
		BuildSourceRoots: []string{}, TLS: cert.Config()})
	if err != nil {
		t.Fatal(err)
	}
	defer stop(t, p)
	if !strings.HasPrefix(p.URL(), "https://") {
		t.Fatalf("URL %s, want https://", p.URL())
	}
	hc := ca.Client()
	resp, err := hc.Get(p.URL() + "/.well-known/vitrine.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("discovery over HTTPS: %d", resp.StatusCode)
	}
	// The logs publish witnessed checkpoints: the in-process witness is
	// reached without the network, whatever the scheme.
	if code := get(t, hc, p.URL()+"/logs/release/checkpoint"); code != http.StatusOK {
		t.Errorf("checkpoint over HTTPS: %d", code)
	}
	if code := get(t, http.DefaultClient, "http://"+strings.TrimPrefix(p.URL(), "https://")+"/healthz"); code == http.StatusOK {
		t.Error("plain HTTP was served")
	}
}

// get returns the status of GET u with hc, 0 if it failed.
func get(t *testing.T, hc *http.Client, u string) int {
	t.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
