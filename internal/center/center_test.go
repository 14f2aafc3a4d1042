package center

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/gotest"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/liar"
	"github.com/vitrine-dev/vitrine/internal/monitor"
	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/release"
)

// call is gotest.Call.
var call = gotest.Call

// startPlatform starts a platform with a monitor at /monitor/, a release,
// an auditor's review of it, and a read of a record justified by a third party's request, which the
// monitor has alerted on; and a proxy to it, honest until told to lie
// about its access-zurich log, through which the monitor reads it.
func startPlatform(t testing.TB) (*platform.Platform, *liar.Proxy) {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	mon := new(httpapi.Lazy)
	p, err := platform.Start(ctx, platform.Config{Data: t.TempDir(), Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond, Logger: quiet, Monitor: mon})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		p.Close(ctx)
	})
	src := []byte("source of tool")
	if _, err := p.Publish(ctx, "tool", "1.2.3", map[string][]byte{"tool_linux_amd64": []byte("\x7fELF tool")}, src, &release.Build{
		Recipe: json.RawMessage(`{"name":"tool"}`), Source: "dir:.", Archive: strings.TrimPrefix(release.Digest(src), "sha256:"),
		Toolchain: "go1.26.8", Env: map[string]string{"CGO_ENABLED": "0"}, BuilderID: p.URL() + "/conveyer", InvocationID: "1",
		Started: time.Now().Add(-time.Minute), Finished: time.Now()}); err != nil {
		t.Fatal(err)
	}
	var ep struct {
		Token     string `json:"token"`
		IngestURL string `json:"ingest_url"`
	}
	call(t, "POST", p.URL()+"/v1/endpoints", p.OperatorToken(), `{"country":"DE"}`, "", &ep)
	sha := fmt.Sprintf("%064x", 42)
	rec := `{"time":"` + time.Now().UTC().Add(-time.Minute).Format(time.RFC3339) + `","kind":"file","sha256":"` + sha + `","size":1,"detection":"","url":"","path":"/home/a/x","product":"vitrine-agent/1.0.0","ruledb":42}`
	call(t, "POST", ep.IngestURL, ep.Token, `{"batch_id":"b1","records":[`+rec+`]}`, "", nil)
	var pr struct{ Token string }
	call(t, "POST", p.URL()+"/v1/principals", p.OperatorToken(), `{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":["zurich"]}`, "", &pr)
	call(t, "GET", p.URL()+"/regions/zurich/v1/records?sha256="+sha, pr.Token, "", "THIRD_PARTY_DATA_REQUEST; court order 7", nil)
	// An auditor's review of the release.
	var au struct{ Token string }
	call(t, "POST", p.URL()+"/v1/principals", p.OperatorToken(), `{"id":"auditor:alice","role":"auditor","location":"CH","regions":["zurich"]}`, "", &au)
	call(t, "POST", p.URL()+"/v1/reviews", au.Token, `{"name":"tool","version":"1.2.3","verdict":"approved","notes":"Read the whole source; the build is reproducible."}`, "", nil, 201)

	px := liar.New(t, p.URL(), "access-zurich", []byte(`{"v":1,"kind":"access","evil":true}`))
	m, err := monitor.New(ctx, monitor.Config{Dir: t.TempDir(), Platforms: []string{px.URL}, Heartbeat: -1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	mon.Set(m.Handler())
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		raised, err := m.Pass(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(raised) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no alert on the read within 20 s")
		}
	}
	return p, px
}

func get(t *testing.T, u, accept string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestOverview: the overview shows every log's verified checkpoint, the
// policy in force from the policy log, the release from the release log
// and the monitor's alert with its proof checked; as HTML and as JSON.
// Over a proxy that then serves a checkpoint that does not verify, the
// page says so, marking it unverified.
func TestOverview(t *testing.T) {
	_, px := startPlatform(t)
	c, err := New(Config{Platform: px.URL, Dir: t.TempDir(), CacheFor: time.Nanosecond, IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	base := newServer(t, c)

	code, body := get(t, base+"/", "application/json")
	var o Overview
	if code != 200 || json.Unmarshal([]byte(body), &o) != nil {
		t.Fatalf("GET / as JSON: %d %s", code, body)
	}
	if len(o.Problems) != 0 || o.Pinned != "first use" || len(o.Logs) != len(platform.LogNames) {
		t.Fatalf("the overview: %+v", o)
	}
	for _, l := range o.Logs {
		if !l.Verified || l.Size == 0 || len(l.Witnesses) == 0 || l.Newest.IsZero() {
			t.Errorf("log %s: %+v", l.Name, l)
		}
	}
	if o.Policy == nil || o.Policy.Version != 1 || len(o.Policy.Regions) != 2 {
		t.Fatalf("the policy: %+v", o.Policy)
	}
	if len(o.Releases) != 1 || o.Releases[0].Name != "tool" || o.Releases[0].Version != "1.2.3" || len(o.Releases[0].Artifacts) != 1 {
		t.Errorf("the releases: %+v", o.Releases)
	}
	if len(o.Monitors) != 1 || len(o.Monitors[0].Alerts) == 0 || o.Counts.OpenAlerts == 0 {
		t.Fatalf("the monitors: %+v", o.Monitors)
	}
	var third *AlertState
	for i, a := range o.Monitors[0].Alerts {
		if a.Rule == "third-party-request" {
			third = &o.Monitors[0].Alerts[i]
		}
	}
	if third == nil || !third.ProofVerified || third.Index == nil {
		t.Errorf("the third-party alert: %+v", third)
	}

	code, page := get(t, base+"/", "")
	if code != 200 || !strings.Contains(page, "<h1>Overview</h1>") {
		t.Fatalf("GET / as HTML: %d %s", code, page)
	}
	for _, want := range []string{"access-zurich", "tool 1.2.3", "third-party-request", "Policy version 1", "zurich", "moscow"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page does not show %q", want)
		}
	}
	if n := strings.Count(page, `data-verified="true"`); n != len(platform.LogNames)+1 { // the logs and the alert's proof
		t.Errorf("%d elements marked verified, want %d", n, len(platform.LogNames)+1)
	}
	if strings.Contains(page, `data-verified="false"`) {
		t.Error("an honest platform's page marks something unverified")
	}

	// The proxy now serves a checkpoint that does not verify.
	px.Tell(liar.Checkpoint)
	code, page = get(t, base+"/", "")
	if code != 200 || !strings.Contains(page, "What did not verify") || !strings.Contains(page, "log access-zurich") {
		t.Fatalf("over a lying proxy: %d %s", code, page)
	}
	if n := strings.Count(page, `data-verified="false"`); n < 2 { // the problems and the log's row
		t.Errorf("%d elements marked unverified, want the problems and the log", n)
	}
}

// newServer serves c for the test and returns its URL.
func newServer(t *testing.T, c *Center) string {
	t.Cleanup(func() { c.Close() })
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestLogPages: a log's page lists its entries newest first, each proven;
// an entry's page decodes the access record and gives its proof, which
// verifies offline; bad paths are 4xx; over a proxy that then serves
// doctored entry bundles, the pages refuse (502) and show none of the
// doctored bytes.
func TestLogPages(t *testing.T) {
	p, px := startPlatform(t)
	c, err := New(Config{Platform: px.URL, Dir: t.TempDir(), CacheFor: time.Nanosecond, IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	base := newServer(t, c)
	code, body := get(t, base+"/center/logs/access-zurich/", "application/json")
	var page LogPage
	if code != 200 || json.Unmarshal([]byte(body), &page) != nil {
		t.Fatalf("the log's page: %d %s", code, body)
	}
	if page.Size == 0 || len(page.Entries) != int(page.Size) || page.Entries[0].Index != page.Size-1 || page.Before != nil {
		t.Fatalf("the log's page: %+v", page)
	}
	var read *EntrySummary
	for i, e := range page.Entries {
		if !e.Verified {
			t.Errorf("entry %d not verified", e.Index)
		}
		if e.Justification == "THIRD_PARTY_DATA_REQUEST" {
			read = &page.Entries[i]
		}
	}
	if read == nil || read.Principal != "analyst:jdoe" || read.Action != "read" || read.Outcome != "granted" {
		t.Fatalf("the read in the log's page: %+v", read)
	}
	code, body = get(t, fmt.Sprintf("%s/center/logs/access-zurich/%d", base, read.Index), "application/json")
	var ep EntryPage
	if code != 200 || json.Unmarshal([]byte(body), &ep) != nil || ep.Record == nil || ep.Record.Justification.Detail != "court order 7" {
		t.Fatalf("the read's page: %d %s", code, body)
	}
	vkey := p.Log("access-zurich").VKey()
	policy := p.Log("access-zurich").Policy()
	if _, err := checkAlertProof(vkey, policy, read.Index, ep.Raw, ep.Proof); err != nil {
		t.Errorf("the entry page's proof does not verify offline: %v", err)
	}
	_, html := get(t, fmt.Sprintf("%s/center/logs/access-zurich/%d", base, read.Index), "")
	if !strings.Contains(html, "court order 7") || !strings.Contains(html, `data-verified="true"`) {
		t.Errorf("the read's page as HTML: %s", html)
	}
	for path, want := range map[string]int{
		"/center/logs/access-zurich/999999": 404, "/center/logs/access-zurich/x": 404, "/center/logs/nothing/": 404,
		"/center/logs/access-zurich/?before=x": 400, "/center/logs/access-zurich/?before=99999999": 400,
	} {
		if code, body := get(t, base+path, ""); code != want {
			t.Errorf("GET %s: %d %s, want %d", path, code, body, want)
		}
	}

	px.Tell(liar.Bundle)
	for _, path := range []string{"/center/logs/access-zurich/", fmt.Sprintf("/center/logs/access-zurich/%d", read.Index)} {
		code, body := get(t, base+path, "")
		if code != http.StatusBadGateway || strings.Contains(body, "evil") {
			t.Errorf("GET %s over doctored bundles: %d %s", path, code, body)
		}
	}
}

// TestReleasePage: a release found by its artifact's sha256, by its name
// and version, or by its release-log entry; its page shows the artifacts
// and the provenance, whose envelope is the one the release log records
// and whose signature verifies under the pinned release key.
func TestReleasePage(t *testing.T) {
	_, px := startPlatform(t)
	c, err := New(Config{Platform: px.URL, Dir: t.TempDir(), CacheFor: time.Nanosecond, IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	base := newServer(t, c)
	sum := sha256.Sum256([]byte("\x7fELF tool"))
	sha := hex.EncodeToString(sum[:])
	for q, want := range map[string]string{sha: "/center/releases/tool/1.2.3", "sha256:" + sha: "/center/releases/tool/1.2.3",
		"tool 1.2.3": "/center/releases/tool/1.2.3", "tool@1.2.3": "/center/releases/tool/1.2.3", "access-zurich/1": "/center/logs/access-zurich/1"} {
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(base + "/center/search?q=" + url.QueryEscape(q))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
			t.Errorf("search %q: %d to %q, want %s", q, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
	for q, code := range map[string]int{strings.Repeat("0", 64): 404, "": 400, "nothing": 404} {
		if got, body := get(t, base+"/center/search?q="+url.QueryEscape(q), ""); got != code {
			t.Errorf("search %q: %d %s, want %d", q, got, body, code)
		}
	}
	code, body := get(t, base+"/center/releases/tool/1.2.3", "application/json")
	var rp ReleasePage
	if code != 200 || json.Unmarshal([]byte(body), &rp) != nil {
		t.Fatalf("the release's page: %d %s", code, body)
	}
	if rp.Provenance == nil || rp.ProvenanceProblem != "" || rp.Provenance.Toolchain != "go1.26.8" || rp.Provenance.Invocation != "1" ||
		len(rp.Artifacts) != 1 || rp.Artifacts[0].SHA256 != sha {
		t.Fatalf("the release's page: %+v", rp)
	}
	if code, _ := get(t, base+"/center/releases/tool/9.9.9", ""); code != 404 {
		t.Errorf("a release not in the log: %d, want 404", code)
	}
}

// TestReport: the transparency report counts the access logs' records by
// month, justification and action, with the third party's request on its
// own; counted again after more accesses, from where it stopped, it adds
// only those.
func TestReport(t *testing.T) {
	p, px := startPlatform(t)
	dir := t.TempDir()
	c, err := New(Config{Platform: px.URL, Dir: dir, CacheFor: time.Nanosecond, IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	base := newServer(t, c)
	report := func() Report {
		t.Helper()
		code, body := get(t, base+"/center/report", "application/json")
		var r Report
		if code != 200 || json.Unmarshal([]byte(body), &r) != nil {
			t.Fatalf("the report: %d %s", code, body)
		}
		return r
	}
	r := report()
	// The analyst's grant is an entry of kind grant, not counted; the
	// read is; the platform's own processing (the regions' exchange of
	// aggregates) may be, by now.
	var sum int64
	for _, n := range r.Totals.ByAction {
		sum += n
	}
	if r.Totals.ThirdPartyGranted != 1 || r.Totals.ByAction["read"] != 1 || r.Totals.ByJustification["THIRD_PARTY_DATA_REQUEST"] != 1 ||
		r.Totals.RecordsReleased < 1 || sum != r.Totals.Accesses || len(r.Months) != 1 {
		t.Fatalf("the report: %+v", r)
	}
	if r.Months[0].Month != time.Now().UTC().Format("2006-01") || len(r.Logs) != 2 {
		t.Errorf("the report's months and logs: %+v %+v", r.Months, r.Logs)
	}
	// A denied attempt: refused at its credential, before its
	// justification is read, it counts as a denied access without one.
	call(t, "GET", p.URL()+"/regions/zurich/v1/records?sha256="+fmt.Sprintf("%064x", 42), "vp1.nothing", "", "THIRD_PARTY_DATA_REQUEST; an unknown caller", nil, 401)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if r = report(); r.Totals.ByAction["denied"] == 1 || time.Now().After(deadline) {
			break
		}
	}
	if r.Totals.ByJustification["(none)"] != 1 || r.Totals.ThirdPartyGranted != 1 || r.Totals.ByAction["denied"] != 1 || r.Totals.ByAction["read"] != 1 {
		t.Fatalf("after a denied request: %+v", r.Totals)
	}
	_, page := get(t, base+"/center/report", "")
	if !strings.Contains(page, "<svg") || !strings.Contains(page, "THIRD_PARTY_DATA_REQUEST") {
		t.Errorf("the report's page: %s", page)
	}
	// Counted on from the counts kept, it says what a count from the
	// first entry says, up to the same sizes.
	for try := 0; ; try++ {
		kept, err := ComputeReport(context.Background(), http.DefaultClient, px.URL, dir, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		scratch, err := ComputeReport(context.Background(), http.DefaultClient, px.URL, t.TempDir(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(kept.Logs, scratch.Logs) && try < 20 {
			continue // the platform logged meanwhile
		}
		if !reflect.DeepEqual(kept.Logs, scratch.Logs) || !reflect.DeepEqual(kept.Totals, scratch.Totals) || !reflect.DeepEqual(kept.Months, scratch.Months) {
			t.Errorf("counted on: %+v %+v\nfrom the first entry: %+v %+v", kept.Logs, kept.Totals, scratch.Logs, scratch.Totals)
		}
		break
	}
}

// TestNewHTTPClient: a Center over a platform on a public address does
// not connect to a loopback, private or link-local one, whatever the
// discovery document names; over a platform on loopback (vitrine up) it
// does.
func TestNewHTTPClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("inside")) }))
	defer srv.Close()
	resp, err := NewHTTPClient("https://93.184.215.14", false).Get(srv.URL)
	if err == nil {
		resp.Body.Close()
		t.Fatal("a Center of a public platform read a loopback address")
	}
	if !strings.Contains(err.Error(), "refusing to connect to 127.0.0.1") {
		t.Errorf("the refusal: %v", err)
	}
	for _, a := range []string{"10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "::1", "fe80::1", "fd00::1", "0.0.0.0",
		"64:ff9b::a9fe:a9fe", "64:ff9b::a00:1", "64:ff9b:1::a00:1", "2002:a00:1::1", "2001:0:a00:1::1", "0.1.2.3", "198.18.0.1", "192.0.0.170", "240.0.0.1", "255.255.255.255"} {
		if refusePrivate("tcp", net.JoinHostPort(a, "80"), nil) == nil {
			t.Errorf("%s is not refused", a)
		}
	}
	if err := refusePrivate("tcp", "93.184.215.14:443", nil); err != nil {
		t.Errorf("a public address is refused: %v", err)
	}
	resp, err = NewHTTPClient(srv.URL, false).Get(srv.URL)
	if err != nil {
		t.Fatalf("a Center of a loopback platform: %v", err)
	}
	resp.Body.Close()
	// A platform's name decides nothing (its DNS is the platform's):
	// only its URL's address, or the Center's operator.
	if resp, err := NewHTTPClient("https://localhost.example", false).Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Error("a Center of a platform named by a public name read a loopback address")
	}
	for u, private := range map[string]bool{"http://localhost:8080": true, "http://10.1.2.3": true, "http://[::1]:80": true, "https://vitrine.example": false,
		"https://93.184.215.14": false, "http://[fd00::1]": true} {
		if privateURL(u) != private {
			t.Errorf("privateURL(%s) = %v", u, !private)
		}
	}
	if resp, err := NewHTTPClient("https://vitrine.example", true).Get(srv.URL); err != nil {
		t.Errorf("allowed private addresses: %v", err)
	} else {
		resp.Body.Close()
	}
}
