package metrics_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/metrics/metricstest"
)

// Every family has exactly the labels docs/operations.md lists, and only
// the values of fixed sets or of the deployment's parts.
func TestFamilies(t *testing.T) {
	r := metrics.New()
	l := r.Log("example.com/logs/access-zurich")
	l.Appended(3 * time.Millisecond)
	l.AppendFailed(metrics.AppendBusy)
	l.Batch(17)
	l.Witness("supervisor").Done(20*time.Millisecond, http.StatusOK)
	l.Witness("supervisor").Done(20*time.Millisecond, http.StatusConflict)
	made := time.Now().Add(-90 * time.Second)
	stop := l.Report(func() metrics.LogState {
		return metrics.LogState{Healthy: true, Published: true, Size: 42, Made: made}
	})
	reg := r.Region("zurich")
	reg.Ingested(5, false)
	reg.Ingested(5, true)
	reg.Rejected(metrics.RejectMisdirected)
	reg.Verdicts(metrics.VerdictAnswered, 3)
	r.Gateway("zurich").Decided(metrics.ActionExport, metrics.Granted, 7)
	r.Gateway("zurich").Decided(metrics.ActionRead, metrics.Denied, 0)
	c := r.Custody("")
	c.Region("zurich").Unwrapped(metrics.UnwrapGranted, 2)
	c.Region(metrics.UnknownRegion).Unwrapped(metrics.UnwrapRefused, 0)

	s := metricstest.ScrapeHandler(t, r.Handler())
	const origin = "example.com/logs/access-zurich"
	s.Check(t, []metricstest.Want{
		{Name: "vitrine_log_appends_total", Labels: map[string]string{"log": origin}, Value: 1},
		{Name: "vitrine_log_append_duration_seconds", Labels: map[string]string{"log": origin}, Value: 1},
		{Name: "vitrine_log_append_failures_total", Labels: map[string]string{"log": origin, "reason": "busy"}, Value: 1},
		{Name: "vitrine_log_append_failures_total", Labels: map[string]string{"log": origin, "reason": "invalid"}, Value: 0},
		{Name: "vitrine_log_batch_entries", Labels: map[string]string{"log": origin}, Value: 1},
		{Name: "vitrine_log_witness_duration_seconds", Labels: map[string]string{"log": origin, "witness": "supervisor"}, Value: 2},
		{Name: "vitrine_log_witness_requests_total", Labels: map[string]string{"log": origin, "witness": "supervisor", "outcome": "cosigned"}, Value: 1},
		{Name: "vitrine_log_witness_requests_total", Labels: map[string]string{"log": origin, "witness": "supervisor", "outcome": "conflict"}, Value: 1},
		{Name: "vitrine_log_checkpoint_size", Labels: map[string]string{"log": origin}, Value: 42},
		{Name: "vitrine_log_storage_healthy", Labels: map[string]string{"log": origin}, Value: 1},
		{Name: "vitrine_region_ingest_batches_total", Labels: map[string]string{"region": "zurich", "result": "stored"}, Value: 1},
		{Name: "vitrine_region_ingest_batches_total", Labels: map[string]string{"region": "zurich", "result": "duplicate"}, Value: 1},
		{Name: "vitrine_region_ingest_records_total", Labels: map[string]string{"region": "zurich"}, Value: 5},
		{Name: "vitrine_region_ingest_rejected_total", Labels: map[string]string{"region": "zurich", "reason": "misdirected"}, Value: 1},
		{Name: "vitrine_region_verdict_requests_total", Labels: map[string]string{"region": "zurich", "result": "answered"}, Value: 1},
		{Name: "vitrine_region_verdicts_total", Labels: map[string]string{"region": "zurich"}, Value: 3},
		{Name: "vitrine_gateway_decisions_total", Labels: map[string]string{"region": "zurich", "action": "export", "decision": "granted"}, Value: 1},
		{Name: "vitrine_gateway_decisions_total", Labels: map[string]string{"region": "zurich", "action": "read", "decision": "denied"}, Value: 1},
		{Name: "vitrine_gateway_records_total", Labels: map[string]string{"region": "zurich", "action": "export"}, Value: 7},
		{Name: "vitrine_custody_unwraps_total", Labels: map[string]string{"region": "zurich", "outcome": "granted"}, Value: 1},
		{Name: "vitrine_custody_unwraps_total", Labels: map[string]string{"region": "unknown", "outcome": "refused"}, Value: 1},
		{Name: "vitrine_custody_unwrapped_keys_total", Labels: map[string]string{"region": "zurich"}, Value: 2},
	}...)
	if age := s.Get(t, "vitrine_log_checkpoint_age_seconds", map[string]string{"log": origin}); age < 90 || age > 120 {
		t.Errorf("checkpoint age %v, want about 90s", age)
	}
	labels := map[string]string{
		"vitrine_log_appends_total":             "log",
		"vitrine_log_append_failures_total":     "log,reason",
		"vitrine_log_append_duration_seconds":   "log",
		"vitrine_log_batch_entries":             "log",
		"vitrine_log_witness_duration_seconds":  "log,witness",
		"vitrine_log_witness_requests_total":    "log,outcome,witness",
		"vitrine_log_checkpoint_age_seconds":    "log",
		"vitrine_log_checkpoint_size":           "log",
		"vitrine_log_storage_healthy":           "log",
		"vitrine_region_ingest_batches_total":   "region,result",
		"vitrine_region_ingest_records_total":   "region",
		"vitrine_region_ingest_rejected_total":  "reason,region",
		"vitrine_region_verdict_requests_total": "region,result",
		"vitrine_region_verdicts_total":         "region",
		"vitrine_gateway_decisions_total":       "action,decision,region",
		"vitrine_gateway_records_total":         "action,region",
		"vitrine_custody_unwraps_total":         "outcome,region",
		"vitrine_custody_unwrapped_keys_total":  "region",
	}
	for name, want := range labels {
		if got := s.LabelNames(name); !slices.Equal(got, []string{want}) {
			t.Errorf("%s has labels %q, want %q", name, got, want)
		}
	}
	// The fixed sets are there from the start, at zero.
	for _, reason := range []string{"unauthenticated", "misdirected", "body", "malformed", "unavailable"} {
		s.Get(t, "vitrine_region_ingest_rejected_total", map[string]string{"region": "zurich", "reason": reason})
	}
	for _, d := range []string{"granted", "denied", "counted", "failed"} {
		s.Get(t, "vitrine_gateway_decisions_total", map[string]string{"region": "zurich", "action": "delete", "decision": d})
	}
	if s.Families["go_goroutines"] == nil || s.Families["process_cpu_seconds_total"] == nil {
		t.Error("the Go runtime's and the process's metrics are missing")
	}

	// A closed log stops reporting its checkpoint; a log opened again
	// under its origin gets the same set, and reports again.
	stop()
	s = metricstest.ScrapeHandler(t, r.Handler())
	if _, ok := s.Value("vitrine_log_checkpoint_size", map[string]string{"log": origin}); ok {
		t.Error("a closed log still reports its checkpoint")
	}
	if r.Log(origin) != l || r.Region("zurich") != reg || r.Custody("") != c {
		t.Error("asking again gave another set")
	}
}

// A supervisor's members' custody metrics carry the member's name.
func TestCustodyMembers(t *testing.T) {
	r := metrics.New()
	r.Custody("acme").Region("zurich").Unwrapped(metrics.UnwrapGranted, 1)
	r.Custody("globex").Region("zurich").Unwrapped(metrics.UnwrapGranted, 3)
	s := metricstest.ScrapeHandler(t, r.Handler())
	for member, want := range map[string]float64{"acme": 1, "globex": 3} {
		if got := s.Get(t, "vitrine_custody_unwrapped_keys_total", map[string]string{"member": member, "region": "zurich"}); got != want {
			t.Errorf("member %s: %v keys, want %v", member, got, want)
		}
	}
}

// Parts built without metrics take nil sets, which do nothing.
func TestNil(t *testing.T) {
	var r *metrics.Registry
	l := r.Log("x")
	l.Appended(time.Second)
	l.AppendFailed(metrics.AppendInvalid)
	l.Batch(1)
	l.Report(func() metrics.LogState { return metrics.LogState{} })()
	l.Witness("w").Done(time.Second, 200)
	r.Region("z").Ingested(1, false)
	r.Region("z").Rejected(metrics.RejectBody)
	r.Region("z").Verdicts(metrics.VerdictRejected, 0)
	r.Gateway("z").Decided(metrics.ActionRead, metrics.Granted, 1)
	r.Custody("").Region("z").Unwrapped(metrics.UnwrapGranted, 1)
	h := http.NotFoundHandler()
	if got := r.Witness().Handler(h); got == nil {
		t.Error("a nil witness set lost the handler")
	}
}

// The witness's answers to add-checkpoint are counted by status, other
// requests not at all.
func TestWitnessAnswers(t *testing.T) {
	r := metrics.New()
	status := http.StatusConflict
	h := r.Witness().Handler(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.WriteHeader(status)
	}))
	for _, path := range []string{"/add-checkpoint", "/add-checkpoint", "/checkpoint/x"} {
		method := "POST"
		if path == "/checkpoint/x" {
			method = "GET"
		}
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(method, path, nil))
	}
	status = 418
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/add-checkpoint", nil))
	s := metricstest.ScrapeHandler(t, r.Handler())
	if got := s.Get(t, "vitrine_witness_add_checkpoint_total", map[string]string{"code": "409"}); got != 2 {
		t.Errorf("409 answers: %v, want 2", got)
	}
	if got := s.Get(t, "vitrine_witness_add_checkpoint_total", map[string]string{"code": "other"}); got != 1 {
		t.Errorf("other answers: %v, want 1", got)
	}
}
