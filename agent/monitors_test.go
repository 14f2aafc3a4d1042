package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/agent"
	"github.com/vitrine-dev/vitrine/internal/gotest"
	"github.com/vitrine-dev/vitrine/internal/monitor"
	"github.com/vitrine-dev/vitrine/internal/platform"
)

// lateHandler serves the handler it is given once it has one.
type lateHandler struct{ h atomic.Pointer[http.Handler] }

func (l *lateHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := l.h.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	http.Error(w, "starting", http.StatusServiceUnavailable)
}

// TestAgentReportsCheckpoints: a platform whose data directory was copied
// and run twice publishes one release version with other bytes in each
// copy: a split view of its release log, each side signed and witnessed.
// The supervisor's monitor follows one copy. An agent of that copy has
// its install's checkpoint confirmed by the monitor; an agent served the
// other copy has its checkpoint refused as a fork, and installs nothing.
func TestAgentReportsCheckpoints(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	mon := new(lateHandler)
	offline := t.TempDir()
	start := func(data string) *platform.Platform {
		p, err := platform.Start(ctx, platform.Config{Data: data, Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond,
			TUFOfflineDir: offline, Monitor: mon, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close(context.Background()) })
		return p
	}
	dirA := filepath.Join(t.TempDir(), "a")
	a := start(dirA)
	gotest.WaitQuiet(t, func() []byte { b, _ := a.Log("release").Reader().ReadCheckpoint(ctx); return b })
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	dirB := filepath.Join(t.TempDir(), "b")
	if err := os.CopyFS(dirB, os.DirFS(dirA)); err != nil {
		t.Fatal(err)
	}
	a, b := start(dirA), start(dirB)
	publish(t, a, "tool", "1.0.0", map[string][]byte{"tool_linux_amd64": []byte("\x7fELF the audited tool")})
	publish(t, b, "tool", "1.0.0", map[string][]byte{"tool_linux_amd64": []byte("\x7fELF a tool for one endpoint")})

	m, err := monitor.New(ctx, monitor.Config{Dir: t.TempDir(), Platforms: []string{a.URL()}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	h := m.Handler()
	mon.h.Store(&h)
	if _, err := m.Pass(ctx); err != nil {
		t.Fatal(err)
	}

	onA := register(t, a, "DE")
	done, err := onA.Update(ctx)
	if err != nil || len(done) != 1 {
		t.Fatalf("the update from a: %+v, %v", done, err)
	}
	if r := done[0].Monitors; len(r) != 1 || !r[0].Confirmed || r[0].Monitor != a.URL()+"/monitor/" {
		t.Errorf("the monitors' reports of a's checkpoint: %+v, want one confirmation", r)
	}

	onB := register(t, b, "DE")
	done, err = onB.Update(ctx)
	if !errors.Is(err, agent.ErrForked) || !errors.Is(err, agent.ErrRejected) || len(done) != 0 {
		t.Fatalf("the update from b's split view: %+v, %v; want nothing installed and ErrForked", done, err)
	}
	forks, err := m.Alerts(ctx, monitor.AlertQuery{Rule: "log-fork"})
	if err != nil || len(forks) != 1 || len(forks[0].Checkpoints) != 2 {
		t.Errorf("the monitor's fork alerts: %+v, %v; want one with both checkpoints", forks, err)
	}

	// A monitor that cannot be reached does not hold updates back: it is
	// reported.
	mon.h.Store(nil)
	publish(t, a, "tool", "1.0.1", map[string][]byte{"tool_linux_amd64": []byte("\x7fELF the audited tool, fixed")})
	done, err = onA.Update(ctx)
	if err != nil || len(done) != 1 {
		t.Fatalf("the update with the monitor down: %+v, %v", done, err)
	}
	if r := done[0].Monitors; len(r) != 1 || r[0].Confirmed || r[0].Err == nil {
		t.Errorf("the report of a monitor that is down: %+v", r)
	}

	// A monitor the endpoint's operator pins that claims a fork with an
	// older checkpoint of the same, consistent log: the log disproves the
	// claim and the update goes on.
	older, err := a.Log("release").Reader().ReadCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posted, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		json.NewEncoder(w).Encode(map[string]any{"consistent": false, "alert": map[string]any{"rule": "log-fork", "detail": "a made-up fork",
			"checkpoints": []string{string(older), string(posted)}}})
	}))
	defer liar.Close()
	if err := onA.AddMonitor("ftp://x"); err == nil {
		t.Error("an ftp monitor was pinned")
	}
	if err := onA.AddMonitor(liar.URL); err != nil {
		t.Fatal(err)
	}
	publish(t, a, "tool", "1.0.2", map[string][]byte{"tool_linux_amd64": []byte("\x7fELF the audited tool, fixed again")})
	done, err = onA.Update(ctx)
	if err != nil || len(done) != 1 {
		t.Fatalf("the update with a lying monitor: %+v, %v", done, err)
	}
	r := done[0].Monitors
	if len(r) != 2 || r[1].Monitor != liar.URL+"/" || r[1].Err == nil || !strings.Contains(r[1].Err.Error(), "consistent") {
		t.Errorf("the reports with a lying monitor: %+v", r)
	}
}
