package logserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/metrics/metricstest"
	"github.com/vitrine-dev/vitrine/internal/tilestore"
)

// The log's metrics move as it works: appends and their latency, the
// batches its storage made durable, its calls to the witness, and the
// checkpoint it serves.
func TestMetrics(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const origin = "example.com/metered"
	policy, down := downWitness(t, dir, origin)
	reg := metrics.New()
	l, err := Open(ctx, Config{Dir: dir, Origin: origin, WitnessPolicy: policy, CheckpointInterval: 100 * time.Millisecond,
		WitnessTimeout: time.Second, Metrics: reg.Log(origin)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())

	const n = 64
	var wg sync.WaitGroup
	var last atomic.Uint64
	for i := range n {
		wg.Go(func() {
			idx, err := l.Append(ctx, fmt.Appendf(nil, "entry %d", i))
			if err != nil {
				t.Error(err)
			}
			if idx+1 > last.Load() {
				last.Store(idx + 1)
			}
		})
	}
	wg.Wait()
	if _, err := l.Append(ctx, nil); err == nil {
		t.Fatal("an empty entry was appended")
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = l.AwaitWitnessed(wctx, n-1)
	cancel()
	if err != nil {
		t.Fatal(err)
	}

	s := metricstest.ScrapeHandler(t, reg.Handler())
	lbl := map[string]string{"log": origin}
	if got := s.Get(t, "vitrine_log_appends_total", lbl); got != n {
		t.Errorf("appends %v, want %d", got, n)
	}
	if got := s.Get(t, "vitrine_log_append_duration_seconds", lbl); got != n {
		t.Errorf("append latencies observed %v, want %d", got, n)
	}
	if got := s.Get(t, "vitrine_log_append_failures_total", map[string]string{"log": origin, "reason": "invalid"}); got != 1 {
		t.Errorf("invalid appends %v, want 1", got)
	}
	batches := s.Families["vitrine_log_batch_entries"].Metric[0].Histogram
	if batches.GetSampleSum() != n || batches.GetSampleCount() < 1 || batches.GetSampleCount() > n {
		t.Errorf("batches: %d holding %v entries, want 1 to %d holding %d", batches.GetSampleCount(), batches.GetSampleSum(), n, n)
	}
	cosigned := map[string]string{"log": origin, "witness": "w", "outcome": "cosigned"}
	if got := s.Get(t, "vitrine_log_witness_requests_total", cosigned); got < 1 {
		t.Errorf("cosigned witness requests %v, want some", got)
	}
	if got := s.Get(t, "vitrine_log_witness_duration_seconds", map[string]string{"log": origin, "witness": "w"}); got < 1 {
		t.Errorf("witness latencies observed %v, want some", got)
	}
	if got := s.Get(t, "vitrine_log_checkpoint_size", lbl); got < n {
		t.Errorf("checkpoint size %v, want at least %d", got, n)
	}
	if got := s.Get(t, "vitrine_log_checkpoint_age_seconds", lbl); got < 0 || got > 60 {
		t.Errorf("checkpoint age %vs, want under a minute", got)
	}
	if got := s.Get(t, "vitrine_log_storage_healthy", lbl); got != 1 {
		t.Errorf("storage healthy = %v, want 1", got)
	}

	// A witness that fails is counted, and the checkpoint ages.
	down.Store(true)
	if _, err := l.Append(ctx, []byte("while the witness is down")); err != nil {
		t.Fatal(err)
	}
	failed := map[string]string{"log": origin, "witness": "w", "outcome": "failed"}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		s = metricstest.ScrapeHandler(t, reg.Handler())
		if v, _ := s.Value("vitrine_log_witness_requests_total", failed); v > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failed witness request counted:\n%s", s.Grep("vitrine_log_witness"))
		}
	}

	// A closed log reports no checkpoint.
	down.Store(false)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := l.Close(cctx); err != nil {
		t.Fatal(err)
	}
	s = metricstest.ScrapeHandler(t, reg.Handler())
	if _, ok := s.Value("vitrine_log_checkpoint_size", lbl); ok {
		t.Error("a closed log still reports its checkpoint")
	}
}

// healthStorage is the journaled tiles with a health the test sets: a
// broken disk, without breaking one.
type healthStorage struct {
	*tilestore.Driver
	broken atomic.Bool
}

func (s *healthStorage) Health() tilestore.Health {
	if s.broken.Load() {
		return tilestore.Health{State: tilestore.Broken, Since: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
			Reason: "write /secret/path/tile: no space left on device", Refused: 3, NextAttempt: time.Now().Add(time.Second)}
	}
	return s.Driver.Health()
}

func (s *healthStorage) OK() bool { return !s.broken.Load() && s.Driver.OK() }

// A log in its own process is ready while its storage takes appends and
// it serves a checkpoint; /readyz says 503 otherwise, and names no file.
func TestServing(t *testing.T) {
	dir := t.TempDir()
	st := &healthStorage{Driver: tilestore.New(tilestore.Config{Path: filepath.Join(dir, "storage")})}
	l, err := Open(context.Background(), Config{Dir: dir, Origin: "example.com/ready", Storage: st, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.WithHealth(l.ReadHandler(), httpapi.Check{Name: "log example.com/ready", Ready: l.Serving}))
	defer srv.Close()
	readyz := func() (int, httpapi.Readiness, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var rd httpapi.Readiness
		if err := json.NewDecoder(resp.Body).Decode(&rd); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, rd, resp.Header.Get("Retry-After")
	}
	if code, rd, _ := readyz(); code != http.StatusOK || !rd.Ready {
		t.Fatalf("a healthy log with a checkpoint: %d %+v", code, rd)
	}
	st.broken.Store(true)
	code, rd, retry := readyz()
	if code != http.StatusServiceUnavailable || rd.Ready || retry == "" {
		t.Fatalf("a broken log: %d %+v Retry-After %q, want 503 with Retry-After", code, rd, retry)
	}
	if len(rd.NotReady) != 1 || !strings.Contains(rd.NotReady[0], "storage broken since 2025-01-02T03:04:05Z, 3 appends refused") || strings.Contains(rd.NotReady[0], "/secret") {
		t.Errorf("not ready = %q, want the state without the reason", rd.NotReady)
	}
	if resp, err := http.Get(srv.URL + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz of a broken log: %v %v, want 200 (alive)", resp, err)
	}
	st.broken.Store(false)
	if code, _, _ := readyz(); code != http.StatusOK {
		t.Errorf("recovered: %d, want 200", code)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, rd, _ := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(strings.Join(rd.NotReady, ""), "closed") {
		t.Errorf("closed: %d %+v, want 503 naming the closed storage", code, rd)
	}
}
