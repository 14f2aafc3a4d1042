package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/liar"
	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/internal/witness"
)

// clock is a test's time, moved by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestPlatformUnreachable: a platform whose discovery document cannot be
// read for longer than StaleAfter is one platform-unreachable alert per
// outage; once it answers again, the next outage is another.
func TestPlatformUnreachable(t *testing.T) {
	tp := startPlatform(t)
	var down bool
	var mu sync.Mutex
	target, _ := url.Parse(tp.URL())
	rp := httputil.NewSingleHostReverseProxy(target)
	px := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		d := down
		mu.Unlock()
		if d {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	defer px.Close()
	setDown := func(d bool) { mu.Lock(); down = d; mu.Unlock() }
	c := &clock{t: time.Now()}
	m, err := New(context.Background(), Config{Dir: t.TempDir(), Platforms: []string{px.URL}, StaleAfter: time.Minute, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	pass := func() []Alert { a, _ := passFor(m, "platform-unreachable"); return a }
	if a := pass(); len(a) != 0 {
		t.Fatalf("a platform that answers: %+v", a)
	}
	setDown(true)
	for i, step := range []time.Duration{0, 30 * time.Second, 31 * time.Second, 10 * time.Second} {
		c.add(step)
		a := pass()
		want := 0
		if i == 2 {
			want = 1
		}
		if len(a) != want {
			t.Fatalf("pass %d of the outage (%s in): %d alerts, want %d", i+1, step, len(a), want)
		}
		if want == 1 && (a[0].Severity != "warning" || a[0].Platform != px.URL || !strings.Contains(a[0].Detail, "502")) {
			t.Errorf("the alert: %+v", a[0])
		}
	}
	setDown(false)
	c.add(time.Second)
	pass()
	setDown(true)
	pass()
	c.add(2 * time.Minute)
	if a := pass(); len(a) != 1 {
		t.Errorf("a second outage: %d alerts, want 1", len(a))
	}
}

// TestWitnessSilent: a log whose witness policy lets it publish under any
// one of two witnesses, one of which never cosigns, is a witness-silent
// alert naming that witness once it has been silent for StaleAfter.
func TestWitnessSilent(t *testing.T) {
	tp := startPlatform(t)
	w2, err := witness.Open(context.Background(), witness.Config{Dir: t.TempDir(), Name: "second.example/witness"})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	// The discovery document, as this proxy serves it, has a policy of
	// any one of the supervisor's witness and a second one.
	target, _ := url.Parse(tp.URL())
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(r *http.Response) error {
		if r.Request.URL.Path != "/.well-known/vitrine.json" {
			return nil
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		var d map[string]any
		if err := json.Unmarshal(b, &d); err != nil {
			return err
		}
		pol := d["witness_policy"].(string)
		first := strings.Fields(pol)[1]
		pol = strings.Replace(pol, "quorum "+first+"\n", "witness second "+w2.VKey()+" https://second.example/witness\ngroup either any "+first+" second\nquorum either\n", 1)
		d["witness_policy"] = pol
		b, _ = json.Marshal(d)
		r.Body = io.NopCloser(bytes.NewReader(b))
		r.ContentLength = int64(len(b))
		r.Header.Set("Content-Length", strconv.Itoa(len(b)))
		return nil
	}
	px := httptest.NewServer(rp)
	defer px.Close()
	c := &clock{t: time.Now()}
	m, err := New(context.Background(), Config{Dir: t.TempDir(), Platforms: []string{px.URL}, StaleAfter: time.Minute, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	silent := func() []Alert {
		a, err := passFor(m, "witness-silent")
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	if a := silent(); len(a) != 0 {
		t.Fatalf("at once: %+v", a)
	}
	c.add(2 * time.Minute)
	a := silent()
	if len(a) != len(platform.LogNames) { // one per log
		t.Fatalf("after two minutes: %d witness-silent alerts, want one per log (%d): %+v", len(a), len(platform.LogNames), a)
	}
	for _, x := range a {
		if !strings.Contains(x.Detail, "witness second (https://second.example/witness)") || len(x.Checkpoints) != 1 {
			t.Errorf("the alert: %+v", x)
		}
	}
	c.add(time.Minute)
	if a := silent(); len(a) != 0 {
		t.Errorf("the same silence again: %d alerts", len(a))
	}
}

// TestMonitorLagging: a platform that answers its tiles too slowly for a
// pass to finish within PlatformTimeout leaves the logs it holds up (and
// those after them) behind; once they have not been caught up for
// StaleAfter, each is a monitor-lagging alert. Logs that were followed to
// their checkpoints are not.
func TestMonitorLagging(t *testing.T) {
	tp := startPlatform(t)
	px := liar.New(t, tp.URL(), "access-zurich", nil)
	c := &clock{t: time.Now()}
	m, err := New(context.Background(), Config{Dir: t.TempDir(), Platforms: []string{px.URL}, StaleAfter: time.Minute, PlatformTimeout: 300 * time.Millisecond, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	lagging := func() map[string]bool {
		raised, _ := passFor(m, "monitor-lagging")
		out := map[string]bool{}
		for _, a := range raised {
			out[a.Log] = true
		}
		return out
	}
	waitQuiet(t, tp.Platform, "access-zurich")
	for range 2 { // the first pass follows, the second counts from it
		if got := lagging(); len(got) != 0 {
			t.Fatalf("a platform that answers in time: %v", got)
		}
	}
	tp.read(t, "CUSTOMER_INITIATED_SUPPORT; case 8")
	waitQuiet(t, tp.Platform, "access-zurich")
	px.Tell(liar.Slow)
	c.add(30 * time.Second)
	if got := lagging(); len(got) != 0 {
		t.Fatalf("behind for 30 s: %v", got)
	}
	c.add(time.Minute)
	got := lagging()
	if !got["access-zurich"] || got["policy"] || got["release"] {
		t.Errorf("behind for 90 s: %v, want access-zurich (and what comes after it), not policy or release", got)
	}
	if again := lagging(); again["access-zurich"] {
		t.Errorf("the same lag again: %v", again)
	}
}

// TestHealthSurvivesRestart: an outage that began before a restart is
// counted from when it began, and alerted once, however often the monitor
// restarts.
func TestHealthSurvivesRestart(t *testing.T) {
	px := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	}))
	defer px.Close()
	dir := t.TempDir()
	c := &clock{t: time.Now()}
	open := func() *Monitor {
		m, err := New(context.Background(), Config{Dir: dir, Platforms: []string{px.URL}, StaleAfter: time.Minute, Now: c.now})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	count := func(m *Monitor) int {
		m.Pass(context.Background())
		a, err := m.Alerts(context.Background(), AlertQuery{Rule: "platform-unreachable"})
		if err != nil {
			t.Fatal(err)
		}
		return len(a)
	}
	m := open()
	if n := count(m); n != 0 {
		t.Fatalf("at once: %d", n)
	}
	m.Close()
	c.add(2 * time.Minute)
	m = open()
	if n := count(m); n != 1 {
		t.Fatalf("two minutes into the outage, after a restart: %d alerts, want 1", n)
	}
	m.Close()
	c.add(time.Minute)
	m = open()
	defer m.Close()
	if n := count(m); n != 1 {
		t.Errorf("after another restart: %d alerts, want still 1", n)
	}
}
