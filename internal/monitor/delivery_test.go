package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/vitrine-dev/vitrine/internal/backoff"
)

// receiver is a webhook receiver that checks each delivery's signature
// with the Standard Webhooks library and refuses the first refuse
// attempts with 503.
type receiver struct {
	t      testing.TB
	wh     *standardwebhooks.Webhook
	mu     sync.Mutex
	refuse int
	// attempts are the webhook-ids of every attempt, got the alerts
	// accepted, in order.
	attempts []string
	got      []Alert
	bad      []string
}

func newReceiver(t testing.TB, secret string, refuse int) (*receiver, *httptest.Server) {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	rc := &receiver{t: t, wh: wh, refuse: refuse}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return rc, srv
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err := rc.wh.Verify(body, r.Header); err != nil {
		rc.bad = append(rc.bad, err.Error())
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	rc.attempts = append(rc.attempts, r.Header.Get("webhook-id"))
	if rc.refuse > 0 {
		rc.refuse--
		w.Header().Set("Retry-After", "0")
		http.Error(w, "not now", http.StatusServiceUnavailable)
		return
	}
	var a Alert
	if err := json.Unmarshal(body, &a); err != nil {
		rc.bad = append(rc.bad, err.Error())
		http.Error(w, "not an alert", http.StatusBadRequest)
		return
	}
	rc.got = append(rc.got, a)
}

// waitFor waits up to 20 s until cond holds over what rc received.
func (rc *receiver) waitFor(t *testing.T, what string, cond func(got []Alert) bool) []Alert {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		rc.mu.Lock()
		got := append([]Alert(nil), rc.got...)
		rc.mu.Unlock()
		if cond(got) {
			return got
		}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	t.Fatalf("after 20 s the receiver has not %s: got %d alerts, bad deliveries %q", what, len(rc.got), rc.bad)
	return nil
}

func hasRule(rule string) func([]Alert) bool {
	return func(got []Alert) bool {
		for _, a := range got {
			if a.Rule == rule {
				return true
			}
		}
		return false
	}
}

// run runs m until the test ends.
func run(t *testing.T, m *Monitor) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; m.Close() })
}

// TestWebhookDelivery: an access that meets a rule reaches a webhook as
// the alert object, with its proof and a signature that the Standard
// Webhooks library accepts; a receiver that refuses it at first gets it
// again under the same webhook-id until it takes it.
func TestWebhookDelivery(t *testing.T) {
	tp := startPlatform(t)
	dir := t.TempDir()
	secret, err := LoadWebhookSecret(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, WebhookSecretFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the secret's file: %v %v, want 0600", fi, err)
	}
	if again, err := LoadWebhookSecret(dir); err != nil || again != secret {
		t.Fatalf("the secret read again: %v, changed %v", err, again != secret)
	}
	rc, srv := newReceiver(t, secret, 2)
	m, err := New(context.Background(), Config{Dir: dir, Platforms: []string{tp.URL()}, Interval: 100 * time.Millisecond,
		Webhooks: []string{srv.URL + "/hook"}, Heartbeat: -1})
	if err != nil {
		t.Fatal(err)
	}
	run(t, m)
	tp.read(t, "THIRD_PARTY_DATA_REQUEST; court order 9")
	got := rc.waitFor(t, "received the third-party alert", hasRule("third-party-request"))
	a := got[0]
	if !strings.Contains(a.Entry, "court order 9") || a.ID == 0 {
		t.Errorf("the delivered alert: %+v", a)
	}
	checkGrounded(t, tp.Platform, a)
	rc.mu.Lock()
	attempts, bad := rc.attempts, rc.bad
	rc.mu.Unlock()
	if len(attempts) != 3 || attempts[0] != attempts[2] || attempts[1] != attempts[2] || len(bad) != 0 {
		t.Errorf("attempts %q (want three with one webhook-id), bad %q", attempts, bad)
	}
	// The receiver answered; the cursor moves just after.
	var ts []TargetState
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ts, err = m.Deliveries(context.Background()); err == nil && len(ts) == 1 && ts[0].Cursor == a.ID {
			break
		}
	}
	if err != nil || len(ts) != 1 || ts[0].Cursor != a.ID || ts[0].Failures != 0 {
		t.Errorf("delivery state %+v, %v; want the cursor at %d", ts, err, a.ID)
	}
}

// TestWrongSecretIsRefusedAndKept: a receiver holding another secret
// refuses every delivery; the alert stays undelivered, the failures are
// counted, and it arrives once the receiver has the right secret.
func TestWrongSecretIsRefusedAndKept(t *testing.T) {
	tp := startPlatform(t)
	dir := t.TempDir()
	secret, err := LoadWebhookSecret(t.TempDir()) // not the monitor's
	if err != nil {
		t.Fatal(err)
	}
	rc, srv := newReceiver(t, secret, 0)
	m, err := New(context.Background(), Config{Dir: dir, Platforms: []string{tp.URL()}, Interval: time.Hour, Webhooks: []string{srv.URL}, Heartbeat: -1})
	if err != nil {
		t.Fatal(err)
	}
	run(t, m)
	if _, err := m.Raise(context.Background(), "test-alert", "info", "a test", "1"); err != nil {
		t.Fatal(err)
	}
	var ts []TargetState
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ts, err = m.Deliveries(context.Background()); err == nil && len(ts) == 1 && ts[0].Failures >= 1 {
			break
		}
	}
	if len(ts) != 1 || ts[0].Failures < 1 || ts[0].Cursor != 0 || !strings.Contains(ts[0].LastError, "401") {
		t.Fatalf("delivery to a receiver with another secret: %+v", ts)
	}
	right, err := LoadWebhookSecret(dir)
	if err != nil {
		t.Fatal(err)
	}
	wh, err := standardwebhooks.NewWebhook(right)
	if err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	rc.wh = wh
	rc.mu.Unlock()
	rc.waitFor(t, "received the test alert", hasRule("test-alert"))
}

// TestHookCommand: the hook command gets each alert on its standard
// input with its delivery id; a failing run is retried.
func TestHookCommand(t *testing.T) {
	tp := startPlatform(t)
	dir, work := t.TempDir(), t.TempDir()
	script := filepath.Join(work, "hook")
	out := filepath.Join(work, "out")
	// Fails its first run, then appends the id and the alert.
	body := "#!/bin/sh\nset -e\nif [ ! -e " + work + "/failed ]; then touch " + work + "/failed; echo first run fails >&2; exit 3; fi\n" +
		"{ printf '%s ' \"$VITRINE_ALERT_ID\"; cat; echo; } > " + out + ".tmp\nmv " + out + ".tmp " + out + "\n"
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), Config{Dir: t.TempDir(), Platforms: []string{tp.URL()}, HookCommand: "hook"}); err == nil {
		t.Error("a relative hook command was accepted")
	}
	m, err := New(context.Background(), Config{Dir: dir, Platforms: []string{tp.URL()}, Interval: time.Hour, HookCommand: script, Heartbeat: -1})
	if err != nil {
		t.Fatal(err)
	}
	run(t, m)
	added, err := m.Raise(context.Background(), "test-alert", "info", "a test", "1")
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && len(b) == 0; time.Sleep(50 * time.Millisecond) {
		b, _ = os.ReadFile(out)
	}
	id, alert, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	var a Alert
	if !ok || json.Unmarshal([]byte(alert), &a) != nil || a.Rule != "test-alert" || id != m.deliveryID(added[0].ID) {
		t.Fatalf("the hook got %q", b)
	}
	var ts []TargetState
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ts, _ = m.Deliveries(context.Background()); len(ts) == 1 && ts[0].Cursor == a.ID {
			break
		}
	}
	if len(ts) != 1 || ts[0].Cursor != a.ID {
		t.Errorf("delivery state %+v", ts)
	}
}

// TestSendTestAlert: test-alert, from its own store handle as from
// another process, is delivered by the running monitor; without a
// running monitor it times out undelivered.
func TestSendTestAlert(t *testing.T) {
	tp := startPlatform(t)
	dir := t.TempDir()
	secret, err := LoadWebhookSecret(dir)
	if err != nil {
		t.Fatal(err)
	}
	rc, srv := newReceiver(t, secret, 0)
	cfg := Config{Dir: dir, Platforms: []string{tp.URL()}, Interval: time.Hour, Webhooks: []string{srv.URL}, Heartbeat: -1}
	m, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Not running yet: nobody delivers it.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	first, ts, err := SendTestAlert(ctx, dir, time.Now(), nil)
	cancel()
	if err == nil || len(ts) != 1 || ts[0].Cursor >= first.ID {
		t.Fatalf("with no monitor running: %v, %+v", err, ts)
	}
	run(t, m)
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	looks := 0
	second, ts, err := SendTestAlert(ctx, dir, time.Now(), func(int64, []TargetState) { looks++ })
	if err != nil || len(ts) != 1 || ts[0].Cursor < second.ID || looks == 0 {
		t.Fatalf("with the monitor running: %v, %+v, %d looks", err, ts, looks)
	}
	got := rc.waitFor(t, "received both test alerts", func(got []Alert) bool { return len(got) == 2 })
	if got[0].ID != first.ID || got[1].ID != second.ID {
		t.Errorf("received %d then %d, want %d then %d", got[0].ID, got[1].ID, first.ID, second.ID)
	}
	if _, _, err := SendTestAlert(ctx, t.TempDir(), time.Now(), nil); err == nil {
		t.Error("a test alert into a directory with no monitor was accepted")
	}
}

// TestHeartbeat: one heartbeat per period, however often the monitor
// restarts.
func TestHeartbeat(t *testing.T) {
	tp := startPlatform(t)
	dir := t.TempDir()
	now := time.Date(2026, 12, 7, 10, 15, 0, 0, time.UTC)
	for range 2 {
		m, err := New(context.Background(), Config{Dir: dir, Platforms: []string{tp.URL()}, Heartbeat: time.Hour, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		m.heartbeat(context.Background())
		m.Close()
	}
	now = now.Add(time.Hour)
	m, err := New(context.Background(), Config{Dir: dir, Platforms: []string{tp.URL()}, Heartbeat: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.heartbeat(context.Background())
	beats, err := m.Alerts(context.Background(), AlertQuery{Rule: "heartbeat"})
	if err != nil || len(beats) != 2 {
		t.Errorf("heartbeats: %d, %v; want 2 (one per hour)", len(beats), err)
	}
}

// TestRefusedAlertIsSetAside: an alert a receiver refuses again and again
// (413: too large for it) is set aside for that receiver after
// maxRefusals attempts, with a delivery-failed alert, and the alerts
// after it arrive; a receiver out of reach is not given up on. A target
// whose address changed takes over the backlog of the one it replaced.
func TestRefusedAlertIsSetAside(t *testing.T) {
	defer func(p backoff.Policy) { deliveryRetry = p }(deliveryRetry)
	deliveryRetry = backoff.Policy{Min: time.Millisecond, Max: 5 * time.Millisecond}
	tp := startPlatform(t)
	dir := t.TempDir()
	secret, err := LoadWebhookSecret(dir)
	if err != nil {
		t.Fatal(err)
	}
	rc, srv := newReceiver(t, secret, 0)
	picky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), `"detail":"refuse me"`) {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		rc.ServeHTTP(w, r)
	}))
	defer picky.Close()
	ctx := context.Background()
	// First a target that is down, collecting a backlog.
	m, err := New(ctx, Config{Dir: dir, Platforms: []string{tp.URL()}, Interval: time.Hour, Webhooks: []string{srv.URL + "/old-address"}, Heartbeat: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	for i, d := range []string{"first", "refuse me", "third"} {
		if _, err := m.Raise(ctx, "test-alert", "info", d, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	m.Close()
	// The address is fixed: the new one gets the backlog.
	m, err = New(ctx, Config{Dir: dir, Platforms: []string{tp.URL()}, Interval: time.Hour, Webhooks: []string{picky.URL}, Heartbeat: -1})
	if err != nil {
		t.Fatal(err)
	}
	run(t, m)
	got := rc.waitFor(t, "received the alerts after the refused one", func(got []Alert) bool { return len(got) >= 3 })
	var details []string
	for _, a := range got {
		details = append(details, a.Rule+": "+a.Detail)
	}
	if len(got) != 3 || got[0].Detail != "first" || got[1].Detail != "third" || got[2].Rule != "delivery-failed" || !strings.Contains(got[2].Detail, "413") {
		t.Errorf("received %q; want first, third, then delivery-failed naming the 413", details)
	}
}
