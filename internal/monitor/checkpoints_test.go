package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/gotest"
	"github.com/vitrine-dev/vitrine/internal/liar"
	"github.com/vitrine-dev/vitrine/internal/platform"
)

// waitQuiet waits until the log's checkpoint has not changed for a second.
func waitQuiet(t *testing.T, p *platform.Platform, log string) []byte {
	t.Helper()
	return gotest.WaitQuiet(t, func() []byte { b, _ := p.Log(log).Reader().ReadCheckpoint(context.Background()); return b })
}

// TestPostedCheckpoints: a platform whose data directory was copied and
// run twice, each copy taking other entries, is a real split view (one log
// key, one witness key, two histories). The monitor follows one copy; the
// other copy's checkpoint, posted as an agent that was served it would,
// is a 409 and a critical log-fork alert that holds both checkpoints.
func TestPostedCheckpoints(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func(data string) *platform.Platform {
		p, err := platform.Start(ctx, platform.Config{Data: data, Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close(context.Background()) })
		return p
	}
	dirA := t.TempDir()
	a := start(dirA)
	waitQuiet(t, a, "access-zurich")
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	dirB := t.TempDir()
	if err := os.CopyFS(dirB, os.DirFS(dirA)); err != nil {
		t.Fatal(err)
	}
	a, b := start(dirA), start(dirB)
	for _, x := range []struct {
		p  *platform.Platform
		id string
	}{{a, "analyst:on-a"}, {b, "analyst:on-b"}} {
		tp := &testPlatform{Platform: x.p}
		tp.call(t, "POST", x.p.URL()+"/v1/principals", x.p.OperatorToken(), `{"id":"`+x.id+`","role":"analyst","location":"CH","regions":["zurich"]}`, "", nil)
	}
	cpA, cpB := waitQuiet(t, a, "access-zurich"), waitQuiet(t, b, "access-zurich")

	m, err := New(ctx, Config{Dir: t.TempDir(), Platforms: []string{a.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	post := func(body []byte) (int, CheckpointAnswer, string) {
		t.Helper()
		resp, err := http.Post(srv.URL+"/v1/checkpoints", "text/plain", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var ans CheckpointAnswer
		_ = json.Unmarshal(raw, &ans)
		return resp.StatusCode, ans, string(raw)
	}
	if code, _, body := post(cpA); code != http.StatusNotFound {
		t.Errorf("a checkpoint before the monitor followed the log: %d %s, want 404", code, body)
	}
	if _, err := m.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if code, ans, body := post(cpA); code != http.StatusOK || !ans.Consistent || ans.Log != "access-zurich" {
		t.Errorf("a's own checkpoint: %d %s, want 200 consistent", code, body)
	}
	code, ans, body := post(cpB)
	if code != http.StatusConflict || ans.Consistent || ans.Alert == nil {
		t.Fatalf("b's checkpoint: %d %s, want 409 with an alert", code, body)
	}
	if a := ans.Alert; a.Rule != "log-fork" || a.Severity != "critical" || len(a.Checkpoints) != 2 || a.Checkpoints[0] != string(cpA) || a.Checkpoints[1] != string(cpB) {
		t.Errorf("the alert: %+v; want log-fork, critical, a's checkpoint and b's", a)
	}
	stored, err := m.Alerts(ctx, AlertQuery{Rule: "log-fork"})
	if err != nil || len(stored) != 1 {
		t.Errorf("stored fork alerts: %d, %v; want 1", len(stored), err)
	}
	if code, _, _ := post(cpB); code != http.StatusConflict {
		t.Errorf("b's checkpoint again: %d", code)
	}
	if stored, _ := m.Alerts(ctx, AlertQuery{Rule: "log-fork"}); len(stored) != 1 {
		t.Errorf("posting the fork twice stored %d alerts, want 1", len(stored))
	}
	// What proves nothing is refused.
	unsigned := bytes.Replace(cpA, []byte("\n\n"), []byte("\n\n— "), 1)
	for name, body := range map[string][]byte{
		"garbage":         []byte("hello"),
		"an unknown log":  []byte("example.org/other\n1\nAAAA\n\n— x y\n"),
		"a broken one":    unsigned,
		"a doctored root": []byte(strings.Replace(string(cpA), "\n", "\nX", 2)),
	} {
		if code, _, body := post(body); code != http.StatusBadRequest && code != http.StatusNotFound {
			t.Errorf("%s: %d %s, want 400 or 404", name, code, body)
		}
	}
}

// TestUnprovenCheckpoint: a log that freezes the monitor's view and
// refuses it the tiles that would prove a newer checkpoint, signed and
// witnessed, that someone else was served: the posted checkpoint is a 503
// at first, kept, and a critical checkpoint-unproven alert holding both
// checkpoints once it has stayed unproven for StaleAfter.
func TestUnprovenCheckpoint(t *testing.T) {
	tp := startPlatform(t)
	ctx := context.Background()
	px := liar.New(t, tp.URL(), "access-zurich", nil)
	c := &clock{t: time.Now()}
	m, err := New(ctx, Config{Dir: t.TempDir(), Platforms: []string{px.URL}, StaleAfter: time.Minute, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	waitQuiet(t, tp.Platform, "access-zurich")
	if _, err := m.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	px.Tell(liar.Hide)
	if _, err := m.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	tp.read(t, "CUSTOMER_INITIATED_SUPPORT; case 44")
	newer := waitQuiet(t, tp.Platform, "access-zurich")
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/v1/checkpoints", "text/plain", bytes.NewReader(newer))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a newer checkpoint the log will not prove: %d, want 503", resp.StatusCode)
	}
	unproven := func() []Alert { a, _ := passFor(m, "checkpoint-unproven"); return a }
	if got := unproven(); len(got) != 0 {
		t.Fatalf("at once: %+v", got)
	}
	c.add(2 * time.Minute)
	got := unproven()
	if len(got) != 1 || got[0].Severity != "critical" || len(got[0].Checkpoints) != 2 || got[0].Checkpoints[1] != string(newer) {
		t.Fatalf("two minutes on: %+v", got)
	}
	if again := unproven(); len(again) != 0 {
		t.Errorf("again: %+v", again)
	}
}
