package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/client"
)

// TestAcknowledge: the supervisor, and only the supervisor, acknowledges an
// alert with a note; the note is in the monitor's acknowledgement log,
// proven from it by an outsider's client, and shown with the alert.
func TestAcknowledge(t *testing.T) {
	tp := startPlatform(t)
	ctx := context.Background()
	const token = "0123456789abcdef0123456789abcdef-supervisor"
	m, err := New(ctx, Config{Dir: t.TempDir(), Platforms: []string{tp.URL()}, SupervisorToken: token, Name: "supervisor.example/monitor"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	raised, err := m.Raise(ctx, "test-alert", "info", "a test", "1")
	if err != nil {
		t.Fatal(err)
	}
	id := raised[0].ID
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	post := func(alert int64, tok, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", fmt.Sprintf("%s/v1/alerts/%d/acknowledgements", srv.URL, alert), strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct {
		name      string
		alert     int64
		tok, body string
		status    int
	}{
		{"no token", id, "", `{"note":"x"}`, 401},
		{"another token", id, token + "x", `{"note":"x"}`, 401},
		{"an empty note", id, token, `{"note":"  "}`, 400},
		{"a control character", id, token, `{"note":"a\u0007b"}`, 400},
		{"a long note", id, token, `{"note":"` + strings.Repeat("a", MaxNote+1) + `"}`, 400},
		{"an unknown field", id, token, `{"note":"x","by":"me"}`, 400},
		{"no such alert", id + 100, token, `{"note":"x"}`, 404},
	} {
		if code, body := post(c.alert, c.tok, c.body); code != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, code, body, c.status)
		}
	}
	if a, _ := m.Alerts(ctx, AlertQuery{ID: id}); len(a) != 1 || len(a[0].Acknowledgements) != 0 {
		t.Fatalf("refused acknowledgements were kept: %+v", a)
	}

	code, body := post(id, token, `{"note":"Checked with the vendor: a drill.\nNo data left the region."}`)
	if code != 200 {
		t.Fatalf("acknowledging: %d %s", code, body)
	}
	var ack Acknowledgement
	if err := json.Unmarshal([]byte(body), &ack); err != nil {
		t.Fatal(err)
	}
	// An outsider proves the entry from the acknowledgement log.
	var about About
	resp, err := http.Get(srv.URL + "/v1/monitor")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&about)
	resp.Body.Close()
	if about.Acknowledgements.Origin != "supervisor.example/monitor/acknowledgements" {
		t.Fatalf("GET /v1/monitor: %+v", about)
	}
	l, err := client.NewLog(srv.URL+"/"+about.Acknowledgements.Path, about.Acknowledgements.VKey, []byte(about.Acknowledgements.WitnessPolicy), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	entry, _, err := l.Entry(ctx, cp, ack.Index)
	if err != nil || !bytes.Equal(entry, []byte(ack.Entry)) {
		t.Fatalf("the acknowledgement log's entry %d: %v\n%s\nwant\n%s", ack.Index, err, entry, ack.Entry)
	}
	var logged ackEntry
	if err := json.Unmarshal(entry, &logged); err != nil || logged.Alert != id || logged.Rule != "test-alert" || !strings.HasPrefix(logged.AlertDigest, "sha256:") || !strings.Contains(logged.Note, "a drill") {
		t.Errorf("the logged acknowledgement: %+v, %v", logged, err)
	}
	got, err := m.Alerts(ctx, AlertQuery{ID: id})
	if err != nil || len(got) != 1 || len(got[0].Acknowledgements) != 1 || got[0].Acknowledgements[0].Index != ack.Index {
		t.Errorf("the alert with its acknowledgement: %+v, %v", got, err)
	}

	// With no token configured nobody acknowledges.
	m2, err := New(ctx, Config{Dir: t.TempDir(), Platforms: []string{tp.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	r2, _ := m2.Raise(ctx, "test-alert", "info", "a test", "1")
	srv2 := httptest.NewServer(m2.Handler())
	defer srv2.Close()
	req, _ := http.NewRequest("POST", fmt.Sprintf("%s/v1/alerts/%d/acknowledgements", srv2.URL, r2[0].ID), strings.NewReader(`{"note":"x"}`))
	req.Header.Set("Authorization", "Bearer ")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Errorf("an empty token with none configured: %v %v", resp.Status, err)
	}
}

// TestAcknowledgementRecovered: an acknowledgement logged by a monitor
// stopped before it kept it is shown with its alert after the restart.
func TestAcknowledgementRecovered(t *testing.T) {
	tp := startPlatform(t)
	ctx := context.Background()
	dir := t.TempDir()
	m, err := New(ctx, Config{Dir: dir, Platforms: []string{tp.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	raised, err := m.Raise(ctx, "test-alert", "info", "a test", "1")
	if err != nil {
		t.Fatal(err)
	}
	// Logged, then the monitor stops before keeping it; beside it, one
	// that binds another alert of the same id (another JSON), which is
	// not kept.
	stored, err := m.Alerts(ctx, AlertQuery{ID: raised[0].ID})
	if err != nil {
		t.Fatal(err)
	}
	d, err := alertDigest(stored[0])
	if err != nil {
		t.Fatal(err)
	}
	other, _ := json.Marshal(ackEntry{V: 1, Kind: "acknowledgement", Alert: raised[0].ID, AlertDigest: "sha256:" + strings.Repeat("0", 64), Rule: "test-alert", Note: "of another alert"})
	if _, err := m.acks.Append(ctx, other); err != nil {
		t.Fatal(err)
	}
	entry, _ := json.Marshal(ackEntry{V: 1, Kind: "acknowledgement", Alert: raised[0].ID, AlertDigest: d, Rule: "test-alert", Note: "seen before the crash"})
	index, err := m.acks.Append(ctx, entry)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.acks.Prove(ctx, index); err != nil {
		t.Fatal(err)
	}
	m.Close()
	m, err = New(ctx, Config{Dir: dir, Platforms: []string{tp.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	got, err := m.Alerts(ctx, AlertQuery{ID: raised[0].ID})
	if err != nil || len(got) != 1 || len(got[0].Acknowledgements) != 1 || got[0].Acknowledgements[0].Note != "seen before the crash" || got[0].Acknowledgements[0].Index != index {
		t.Fatalf("after the restart: %+v, %v", got, err)
	}
	m.Close()
	// And only once, however often it restarts.
	m, err = New(ctx, Config{Dir: dir, Platforms: []string{tp.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got, _ := m.Alerts(ctx, AlertQuery{ID: raised[0].ID}); len(got[0].Acknowledgements) != 1 {
		t.Errorf("after another restart: %d acknowledgements", len(got[0].Acknowledgements))
	}
}
