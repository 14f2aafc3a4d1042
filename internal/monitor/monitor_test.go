package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/gotest"
	"github.com/vitrine-dev/vitrine/internal/liar"
	"github.com/vitrine-dev/vitrine/internal/platform"
)

// testPlatform is a running platform with one endpoint's record in zurich
// and an analyst of zurich.
type testPlatform struct {
	*platform.Platform
	sha, analyst, data string
	endpoint           string // the record's endpoint's token
}

func startPlatform(t testing.TB) *testPlatform {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	data := t.TempDir()
	p, err := platform.Start(context.Background(), platform.Config{Data: data, Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		p.Close(ctx)
	})
	tp := &testPlatform{Platform: p, sha: fmt.Sprintf("%064x", []byte("monitor test"))[:64], data: data}
	var ep struct {
		Token     string `json:"token"`
		IngestURL string `json:"ingest_url"`
	}
	tp.call(t, "POST", p.URL()+"/v1/endpoints", p.OperatorToken(), `{"country":"DE"}`, "", &ep)
	rec := `{"time":"` + time.Now().UTC().Add(-time.Minute).Format(time.RFC3339) + `","kind":"file","sha256":"` + tp.sha + `","size":1,"detection":"","url":"","path":"/home/a/x","product":"vitrine-agent/1.0.0","ruledb":42}`
	tp.call(t, "POST", ep.IngestURL, ep.Token, `{"batch_id":"b1","records":[`+rec+`]}`, "", nil)
	tp.endpoint = ep.Token
	var pr struct{ Token string }
	tp.call(t, "POST", p.URL()+"/v1/principals", p.OperatorToken(), `{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":["zurich"]}`, "", &pr)
	tp.analyst = pr.Token
	return tp
}

// call sends a request and decodes a 2xx answer into out.
func (tp *testPlatform) call(t testing.TB, method, u, token, body, justification string, out any) {
	t.Helper()
	gotest.Call(t, method, u, token, body, justification, out)
}

// read reads the record as the analyst, with justification.
func (tp *testPlatform) read(t testing.TB, justification string) {
	tp.call(t, "GET", tp.URL()+"/regions/zurich/v1/records?sha256="+tp.sha, tp.analyst, "", justification, nil)
}

// passFor makes one pass and returns the alerts of rule it raised, and
// the pass's error.
func passFor(m *Monitor, rule string) ([]Alert, error) {
	raised, err := m.Pass(context.Background())
	var out []Alert
	for _, a := range raised {
		if a.Rule == rule {
			out = append(out, a)
		}
	}
	return out, err
}

// passUntil makes passes until want alerts of rule have been raised in
// all, for up to 20 s: entries reach the monitor once a witnessed
// checkpoint covers them.
func passUntil(t *testing.T, m *Monitor, rule string, want int) []Alert {
	t.Helper()
	var got []Alert
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		raised, err := passFor(m, rule)
		if err != nil {
			t.Fatalf("pass: %v", err)
		}
		if got = append(got, raised...); len(got) >= want {
			return got
		}
	}
	t.Fatalf("%d alerts of %s after 20 s, want %d", len(got), rule, want)
	return nil
}

// checkGrounded verifies an alert's proof as anyone would: the checkpoint
// under the log's key and the witness policy of the discovery document,
// and the entry's inclusion.
func checkGrounded(t *testing.T, p *platform.Platform, a Alert) {
	t.Helper()
	d := p.Discovery()
	gotest.CheckProof(t, &d, a.Log, a.Index, a.Entry, a.Proof)
}

func TestMonitorEndToEnd(t *testing.T) {
	tp := startPlatform(t)
	dir := t.TempDir()
	m, err := New(context.Background(), Config{Dir: dir, Platforms: []string{tp.URL()}, Chunk: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	tp.read(t, "CUSTOMER_INITIATED_SUPPORT; case 1")
	tp.read(t, "THIRD_PARTY_DATA_REQUEST; court order 7")
	alerts := passUntil(t, m, "third-party-request", 1)
	a := alerts[0]
	if a.Severity != "notice" || a.Platform != tp.URL() || a.Log != "access-zurich" || !strings.Contains(a.Entry, "court order 7") {
		t.Errorf("the alert: %+v", a)
	}
	checkGrounded(t, tp.Platform, a)
	for _, f := range []string{"monitor.db", "monitor.db-wal", "monitor.db-shm"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want 0600", f, fi.Mode().Perm(), err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "pins")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("pins: %v, %v; want 0700", fi.Mode().Perm(), err)
	}

	// The same entries again, through a new monitor on the same
	// directory: nothing is raised twice.
	m.Close()
	m2, err := New(context.Background(), Config{Dir: dir, Platforms: []string{tp.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	tp.read(t, "THIRD_PARTY_DATA_REQUEST; court order 8")
	more := passUntil(t, m2, "third-party-request", 1)
	if len(more) != 1 || !strings.Contains(more[0].Entry, "court order 8") {
		t.Errorf("after a restart: %+v, want only the new read's alert", more)
	}
	all, err := m2.Alerts(context.Background(), AlertQuery{Rule: "third-party-request"})
	if err != nil || len(all) != 2 {
		t.Errorf("stored third-party alerts: %d, %v; want 2", len(all), err)
	}
}

// TestMonitorCatchesDoctoredBundles: a log that serves a rewritten entry
// bundle after answering honestly never gets its entry past the monitor:
// the pass fails naming the mismatch, and no alert carries the doctored
// bytes.
func TestMonitorCatchesDoctoredBundles(t *testing.T) {
	tp := startPlatform(t)
	px := liar.New(t, tp.URL(), "access-zurich", []byte(`{"v":1,"kind":"access","evil":true}`))
	m, err := New(context.Background(), Config{Dir: t.TempDir(), Platforms: []string{px.URL}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tp.read(t, "THIRD_PARTY_DATA_REQUEST; court order 1")
	passUntil(t, m, "third-party-request", 1)
	px.Tell(liar.Bundle)
	tp.read(t, "THIRD_PARTY_DATA_REQUEST; court order 2")
	var lastErr error
	for range 50 {
		raised, err := m.Pass(context.Background())
		for _, a := range raised {
			if strings.Contains(a.Entry, "evil") {
				t.Fatalf("an alert carries the doctored entry: %+v", a)
			}
		}
		if err != nil {
			lastErr = err
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if lastErr == nil || !bytes.Contains([]byte(lastErr.Error()), []byte("access-zurich")) {
		t.Errorf("the pass over a lying log: %v; want an error naming the log", lastErr)
	}
	// And the supervisor hears of it: a critical alert, not a log line.
	tampered, err := m.Alerts(context.Background(), AlertQuery{Rule: "log-tampered"})
	if err != nil || len(tampered) != 1 || tampered[0].Severity != "critical" || tampered[0].Log != "access-zurich" {
		t.Errorf("log-tampered alerts: %+v, %v; want one, critical, of access-zurich", tampered, err)
	}
}

func TestAlertsRoute(t *testing.T) {
	tp := startPlatform(t)
	m, err := New(context.Background(), Config{Dir: t.TempDir(), Platforms: []string{tp.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tp.read(t, "THIRD_PARTY_DATA_REQUEST; court order 1")
	tp.read(t, "THIRD_PARTY_DATA_REQUEST; court order 2")
	passUntil(t, m, "third-party-request", 2)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	get := func(q string) (int, AlertsAnswer) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/v1/alerts" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ans AlertsAnswer
		if resp.StatusCode == 200 {
			if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, ans
	}
	code, first := get("?rule=third-party-request&limit=1")
	if code != 200 || len(first.Alerts) != 1 || first.Next != first.Alerts[0].ID {
		t.Fatalf("first page: %d %+v", code, first)
	}
	code, second := get(fmt.Sprintf("?rule=third-party-request&after=%d", first.Next))
	if code != 200 || len(second.Alerts) != 1 || second.Alerts[0].ID <= first.Next || second.Next != 0 {
		t.Fatalf("second page: %d %+v", code, second)
	}
	checkGrounded(t, tp.Platform, second.Alerts[0])
	if code, ans := get("?severity=warning&rule=third-party-request"); code != 200 || len(ans.Alerts) != 0 {
		t.Errorf("notices at severity warning and above: %d %+v", code, ans)
	}
	for _, bad := range []string{"?after=-1", "?limit=0", "?limit=100000", "?severity=urgent", "?rule=Bad%20Rule", "?after=x"} {
		if code, _ := get(bad); code != http.StatusBadRequest {
			t.Errorf("GET /v1/alerts%s: %d, want 400", bad, code)
		}
	}

	// One alert by its id, as the feed links to it.
	resp, err := http.Get(fmt.Sprintf("%s/v1/alerts/%d", srv.URL, second.Alerts[0].ID))
	if err != nil {
		t.Fatal(err)
	}
	var one Alert
	err = json.NewDecoder(resp.Body).Decode(&one)
	resp.Body.Close()
	if err != nil || one.ID != second.Alerts[0].ID || one.Proof != second.Alerts[0].Proof {
		t.Errorf("GET /v1/alerts/%d: %v %+v", second.Alerts[0].ID, err, one)
	}
	for _, bad := range []string{"/v1/alerts/0", "/v1/alerts/x", "/v1/alerts/999999"} {
		if resp, err := http.Get(srv.URL + bad); err != nil || resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %v %v, want 404", bad, resp.Status, err)
		}
	}

	// The Atom feed: newest first, each entry linking to its alert,
	// under the prefix the monitor is served at.
	mux := http.NewServeMux()
	mux.Handle("/monitor/", http.StripPrefix("/monitor", m.Handler()))
	pre := httptest.NewServer(mux)
	defer pre.Close()
	resp, err = http.Get(pre.URL + "/monitor/v1/alerts.atom?rule=third-party-request")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var feed struct {
		XMLName xml.Name `xml:"http://www.w3.org/2005/Atom feed"`
		ID      string   `xml:"id"`
		Updated string   `xml:"updated"`
		Entries []struct {
			Title   string `xml:"title"`
			ID      string `xml:"id"`
			Updated string `xml:"updated"`
			Link    struct {
				Href string `xml:"href,attr"`
			} `xml:"link"`
			Content string `xml:"content"`
		} `xml:"entry"`
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/atom+xml") {
		t.Errorf("the feed's content type: %s", ct)
	}
	if err := xml.NewDecoder(resp.Body).Decode(&feed); err != nil {
		t.Fatal(err)
	}
	if len(feed.Entries) != 2 || feed.ID != pre.URL+"/monitor/v1/alerts.atom" {
		t.Fatalf("the feed: %+v", feed)
	}
	e := feed.Entries[0]
	if want := fmt.Sprintf("%s/monitor/v1/alerts/%d", pre.URL, second.Alerts[0].ID); e.ID != want || e.Link.Href != want ||
		!strings.Contains(e.Title, "[notice] third-party-request in access-zurich entry") || !strings.Contains(e.Content, "court order 2") {
		t.Errorf("the newest entry: %+v", e)
	}
	if _, err := time.Parse(time.RFC3339, e.Updated); err != nil || feed.Updated != e.Updated {
		t.Errorf("updated: feed %q, entry %q, %v", feed.Updated, e.Updated, err)
	}
}

// TestLogStale: a log whose checkpoint stops changing while entries are
// being appended to it (the proxy freezes it, as a stopped log or an old
// view would look) is a log-stale alert; the same log growing is not.
func TestLogStale(t *testing.T) {
	tp := startPlatform(t)
	px := liar.New(t, tp.URL(), "access-zurich", nil)
	m, err := New(context.Background(), Config{Dir: t.TempDir(), Platforms: []string{px.URL}, StaleAfter: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// stale passes for d while reads grow the access log, and returns
	// the log-stale alerts of access-zurich.
	stale := func(d time.Duration) []Alert {
		var got []Alert
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			tp.read(t, "CUSTOMER_INITIATED_SUPPORT; case 1")
			raised, err := m.Pass(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range raised {
				if a.Rule == "log-stale" && a.Log == "access-zurich" {
					got = append(got, a)
				}
			}
		}
		return got
	}
	if got := stale(4 * time.Second); len(got) != 0 {
		t.Fatalf("a growing log was stale: %+v", got)
	}
	px.Tell(liar.Frozen)
	got := stale(4 * time.Second)
	if len(got) != 1 || got[0].Severity != "warning" || len(got[0].Checkpoints) != 1 {
		t.Fatalf("a frozen log: %+v, want one log-stale alert with its checkpoint", got)
	}
}

// TestResidencyAfterRestart: a restarted monitor checks residency under
// the policy it read before the restart (a review found cross-border-access
// silent after one), and distinct rule errors on one entry are distinct
// alerts.
func TestResidencyAfterRestart(t *testing.T) {
	tp := startPlatform(t)
	dir := t.TempDir()
	rules := append(DefaultRules(),
		Rule{Name: "needs-x", Severity: "info", When: "kind == 'access' && entry.x == 1"},
		Rule{Name: "needs-y", Severity: "info", When: "kind == 'access' && entry.y == 1"})
	rs, err := Compile(rules)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(context.Background(), Config{Dir: dir, Platforms: []string{tp.URL()}, Rules: rs})
	if err != nil {
		t.Fatal(err)
	}
	tp.read(t, "CUSTOMER_INITIATED_SUPPORT; case 1")
	failed := passUntil(t, m, "rule-failed", 2)
	if failed[0].Index == nil || failed[1].Index == nil || *failed[0].Index != *failed[1].Index {
		t.Errorf("rule-failed alerts: %+v; want two on one entry", failed)
	}
	m.Close()
	var pr struct{ Token string }
	tp.call(t, "POST", tp.URL()+"/v1/principals", tp.OperatorToken(), `{"id":"analyst:far","role":"analyst","location":"CN","regions":["zurich"]}`, "", &pr)
	tp.analyst = pr.Token
	m2, err := New(context.Background(), Config{Dir: dir, Platforms: []string{tp.URL()}, Rules: rs})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	tp.read(t, "CUSTOMER_INITIATED_SUPPORT; case 2")
	got := passUntil(t, m2, "cross-border-access", 1)
	if !strings.Contains(got[0].Entry, "analyst:far") {
		t.Errorf("cross-border-access after a restart: %+v", got[0])
	}
}

// TestMalformedEntries: entries that the log holds but that do not parse
// are critical alerts, and an entry of a kind the monitor does not know a
// notice; neither is skipped, and each alert is grounded in the log.
func TestMalformedEntries(t *testing.T) {
	tp := startPlatform(t)
	l := tp.Log("access-zurich")
	ctx := context.Background()
	for _, e := range []string{
		"not json at all",
		`{"v":1,"kind":"access","time":"yesterday"}`,
		`{"v":1,"kind":"weather","forecast":"rain"}`,
	} {
		if _, err := l.Append(ctx, []byte(e)); err != nil {
			t.Fatal(err)
		}
	}
	m, err := New(ctx, Config{Dir: t.TempDir(), Platforms: []string{tp.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	bad := passUntil(t, m, "malformed-entry", 2)
	for _, a := range bad {
		if a.Severity != "critical" || a.Detail == "" {
			t.Errorf("malformed entry alert: %+v", a)
		}
		checkGrounded(t, tp.Platform, a)
	}
	if !strings.Contains(bad[0].Entry, "not json") || !strings.Contains(bad[1].Entry, "yesterday") {
		t.Errorf("the malformed entries' alerts: %q, %q", bad[0].Entry, bad[1].Entry)
	}
	unknown, err := m.Alerts(ctx, AlertQuery{Rule: "unknown-entry"})
	if err != nil || len(unknown) != 1 || unknown[0].Severity != "notice" || !strings.Contains(unknown[0].Entry, "weather") {
		t.Fatalf("unknown-entry alerts: %+v, %v", unknown, err)
	}
	checkGrounded(t, tp.Platform, unknown[0])
}

// TestChunksCountOnce: entries read across many small chunks are each
// counted once in a threshold's window: five reads fire a more-than-four
// rule once, and the next four do not fire it again.
func TestChunksCountOnce(t *testing.T) {
	tp := startPlatform(t)
	rs, err := Compile([]Rule{{Name: "fifth-read", Severity: "info", When: "kind == 'access' && entry.action == 'read'",
		Threshold: &Threshold{Count: 4, Window: "1h", GroupBy: "entry.principal.id"}}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(context.Background(), Config{Dir: t.TempDir(), Platforms: []string{tp.URL()}, Rules: rs, Chunk: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for i := range 9 {
		tp.read(t, fmt.Sprintf("CUSTOMER_INITIATED_SUPPORT; case %d", i))
	}
	passUntil(t, m, "fifth-read", 1)
	gotest.WaitQuiet(t, func() []byte { b, _ := tp.Log("access-zurich").Reader().ReadCheckpoint(context.Background()); return b })
	if _, err := m.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a, _ := m.Alerts(context.Background(), AlertQuery{Rule: "fifth-read"}); len(a) != 1 || !strings.Contains(a[0].Detail, "5 matches") {
		t.Errorf("nine reads in chunks of three: %+v, want one alert at the fifth", a)
	}
}

// TestAlertsPageBytes: a page of GET /v1/alerts is cut at maxAlertsPage
// bytes, and next goes on from where it was cut.
func TestAlertsPageBytes(t *testing.T) {
	tp := startPlatform(t)
	ctx := context.Background()
	m, err := New(ctx, Config{Dir: t.TempDir(), Platforms: []string{tp.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	big := strings.Repeat("x", 60<<10)
	for i := range 100 {
		if _, err := m.Raise(ctx, "test-alert", "info", big, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	seen, after, pages := 0, int64(0), 0
	for {
		resp, err := http.Get(fmt.Sprintf("%s/v1/alerts?limit=1000&after=%d", srv.URL, after))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if len(b) > maxAlertsPage+(64<<10) {
			t.Fatalf("a page of %d bytes", len(b))
		}
		var ans AlertsAnswer
		if err := json.Unmarshal(b, &ans); err != nil {
			t.Fatal(err)
		}
		seen += len(ans.Alerts)
		pages++
		if ans.Next == 0 {
			break
		}
		after = ans.Next
	}
	if seen != 100 || pages < 2 {
		t.Errorf("%d alerts in %d pages, want 100 in at least 2", seen, pages)
	}
}
