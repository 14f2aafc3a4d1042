package platform

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/tilestore"
)

func TestReadinessReport(t *testing.T) {
	since := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	broken := tilestore.Health{State: tilestore.Broken, Since: since, Reason: "log storage failed: write /data/x: no space left on device", Refused: 12, Attempts: 3}
	tests := []struct {
		name         string
		logs         map[string]tilestore.Health
		detail       bool
		wantReady    bool
		wantNotReady []string
	}{
		{"all healthy", map[string]tilestore.Health{"release": {}, "access-zurich": {}}, false, true, nil},
		{"one broken", map[string]tilestore.Health{"release": {}, "access-zurich": broken}, false, false,
			[]string{"log access-zurich: storage broken since 2025-01-02T03:04:05Z, 12 appends refused"}},
		{"one broken, for the operator", map[string]tilestore.Health{"access-zurich": broken}, true, false,
			[]string{"log access-zurich: storage broken since 2025-01-02T03:04:05Z, 12 appends refused: log storage failed: write /data/x: no space left on device"}},
		{"closed", map[string]tilestore.Health{"policy": {State: tilestore.Closed}}, false, false, []string{"log policy: storage closed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := readiness(tt.logs, tt.detail)
			if r.Ready != tt.wantReady || !slices.Equal(r.NotReady, tt.wantNotReady) {
				t.Errorf("readiness = %v %q, want %v %q", r.Ready, r.NotReady, tt.wantReady, tt.wantNotReady)
			}
			if !tt.detail {
				b, _ := json.Marshal(r)
				if strings.Contains(string(b), "/data/x") {
					t.Errorf("report without detail names a file: %s", b)
				}
			}
		})
	}
}

// GET /healthz and /readyz answer 200 on a platform whose logs all work,
// and /readyz names each log's state.
func TestReadyz(t *testing.T) {
	p := start(t, t.TempDir())
	defer stop(t, p)
	if code, body := httpDo(t, "GET", p.URL()+"/healthz", "", nil); code != http.StatusOK {
		t.Errorf("GET /healthz: %d %s", code, body)
	}
	code, body := httpDo(t, "GET", p.URL()+"/readyz", "", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /readyz: %d %s", code, body)
	}
	var r Readiness
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("GET /readyz: %v: %s", err, body)
	}
	if !r.Ready || len(r.Logs) != len(LogNames) {
		t.Fatalf("readiness = %s, want ready with %d logs", body, len(LogNames))
	}
	for _, name := range LogNames {
		if h, ok := r.Logs[name]; !ok || h.State != tilestore.Healthy {
			t.Errorf("log %s: %+v, want healthy", name, h)
		}
	}
	if !strings.Contains(string(body), `"state": "healthy"`) {
		t.Errorf("states are not named: %s", body)
	}
}
