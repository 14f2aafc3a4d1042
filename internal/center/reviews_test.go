package center

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/liar"
	"github.com/vitrine-dev/vitrine/internal/monitor"
	"github.com/vitrine-dev/vitrine/internal/platform"
)

// newPrincipal creates the principal id (role:name) and returns its token.
func newPrincipal(t *testing.T, p *platform.Platform, id string) string {
	t.Helper()
	role, _, _ := strings.Cut(id, ":")
	var pr struct{ Token string }
	call(t, "POST", p.URL()+"/v1/principals", p.OperatorToken(), `{"id":"`+id+`","role":"`+role+`","location":"CH","regions":["zurich"]}`, "", &pr)
	return pr.Token
}

// formClient is a browser's part in the review form: it keeps the
// Center's cookie, reads the form's token from the page, and posts the
// form as a browser does.
type formClient struct {
	t    *testing.T
	hc   *http.Client
	base string
}

func newFormClient(t *testing.T, base string) *formClient {
	jar, _ := cookiejar.New(nil)
	return &formClient{t: t, base: base, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var formToken = regexp.MustCompile(`name="form" value="([^"]+)"`)

// token reads the release page and returns its form's token.
func (f *formClient) token() string {
	f.t.Helper()
	resp, err := f.hc.Get(f.base + "/center/releases/tool/1.2.3")
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := formToken.FindSubmatch(b)
	if resp.StatusCode != 200 || m == nil {
		f.t.Fatalf("the release page: %d, no form token", resp.StatusCode)
	}
	return string(m[1])
}

// post sends the form and returns the status, the Location and the body.
func (f *formClient) post(v url.Values, header map[string]string) (int, string, string) {
	f.t.Helper()
	req, _ := http.NewRequest("POST", f.base+"/center/releases/tool/1.2.3/reviews", strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for k, val := range header {
		req.Header.Set(k, val)
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

// TestReviews: the release page lists the auditor's review from the
// review log, proven and bound to the release's entry, with a proof that
// verifies offline. Through the Center's form an auditor records another,
// which the page then shows; a request from elsewhere, without the form's
// token, without a token, with an analyst's or an unknown token, or with
// a bad verdict or path, is refused and logs nothing, and no answer shows
// the token. A platform whose answer does not verify, or whose review log
// is doctored, is caught.
func TestReviews(t *testing.T) {
	p, px := startPlatform(t)
	c, err := New(Config{Platform: px.URL, Dir: t.TempDir(), CacheFor: time.Nanosecond, IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	base := newServer(t, c)
	page := func() ReleasePage {
		t.Helper()
		code, body := get(t, base+"/center/releases/tool/1.2.3", "application/json")
		var rp ReleasePage
		if code != 200 || json.Unmarshal([]byte(body), &rp) != nil {
			t.Fatalf("the release page: %d %s", code, body)
		}
		return rp
	}
	rp := page()
	if len(rp.Reviews) != 1 || rp.ReviewsProblem != "" {
		t.Fatalf("the reviews: %+v %s", rp.Reviews, rp.ReviewsProblem)
	}
	rv := rp.Reviews[0]
	if !rv.Bound || !rv.Verified || rv.Auditor != "auditor:alice" || rv.Verdict != "approved" || !strings.Contains(rv.Notes, "reproducible") {
		t.Errorf("the review: %+v", rv)
	}
	if _, err := checkAlertProof(p.Log("review").VKey(), p.Log("review").Policy(), rv.Index, rv.Raw, rv.Proof); err != nil {
		t.Errorf("the review's proof does not verify offline: %v", err)
	}
	if _, html := get(t, base+"/center/releases/tool/1.2.3", ""); !strings.Contains(html, `id="review-0"`) || !strings.Contains(html, "reproducible") ||
		!strings.Contains(html, `data-input="verify-review-0-entry"`) || !strings.Contains(html, `id="review-form"`) {
		t.Errorf("the release page as HTML shows no review with its check, or no form")
	}

	auditor := newPrincipal(t, p, "auditor:bob")
	analyst := newPrincipal(t, p, "analyst:eve")
	size := func() uint64 {
		cp, err := p.Log("review").Checkpoint(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return cp.Size
	}
	before := size()
	f := newFormClient(t, base)
	good := func() url.Values {
		return url.Values{"token": {auditor}, "verdict": {"concerns"}, "notes": {"Line one.\r\nLine <two> & \"three\"."}, "files": {""}, "form": {f.token()}}
	}
	for _, tc := range []struct {
		name   string
		change func(url.Values)
		header map[string]string
		want   int
	}{
		{"from another site", nil, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"from another origin", nil, map[string]string{"Sec-Fetch-Site": "", "Origin": "https://evil.example"}, 403},
		{"without the form's token", func(v url.Values) { v.Del("form") }, nil, 403},
		{"with another form's token", func(v url.Values) { v.Set("form", strings.Repeat("A", 43)) }, nil, 403},
		{"without a token", func(v url.Values) { v.Del("token") }, nil, 401},
		{"an unknown token", func(v url.Values) { v.Set("token", "vp1."+strings.Repeat("B", 43)) }, nil, 401},
		{"an analyst's token", func(v url.Values) { v.Set("token", analyst) }, nil, 403},
		{"no verdict", func(v url.Values) { v.Del("verdict") }, nil, 400},
		{"a path outside the source", func(v url.Values) { v.Set("files", "../etc/passwd") }, nil, 400},
		{"a file the source lacks", func(v url.Values) { v.Set("files", "main.go") }, nil, 400},
		{"notes too long", func(v url.Values) { v.Set("notes", strings.Repeat("x", 8001)) }, nil, 400},
		{"not a form", nil, map[string]string{"Content-Type": "application/json"}, 415},
	} {
		v := good()
		if tc.change != nil {
			tc.change(v)
		}
		code, loc, body := f.post(v, tc.header)
		if code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.want)
		}
		if strings.Contains(body, auditor) || strings.Contains(loc, auditor) || strings.Contains(body, analyst) {
			t.Errorf("%s: the answer shows the token", tc.name)
		}
		if tc.want == 400 && strings.Contains(v.Get("notes"), "Line one.") && !strings.Contains(body, "Line one.") {
			t.Errorf("%s: the page does not keep the notes typed", tc.name)
		}
	}
	if got := size(); got != before {
		t.Fatalf("refused reviews were logged: the review log grew from %d to %d", before, got)
	}

	code, loc, body := f.post(good(), nil)
	want := fmt.Sprintf("/center/releases/tool/1.2.3?recorded=%d#review-%d", before, before)
	if code != http.StatusSeeOther || loc != want || strings.Contains(body, auditor) {
		t.Fatalf("the form: %d to %q, want 303 to %s: %s", code, loc, want, body)
	}
	rp = page()
	if len(rp.Reviews) != 2 || rp.Reviews[0].Index != before || rp.Reviews[0].Auditor != "auditor:bob" || rp.Reviews[0].Notes != "Line one.\nLine <two> & \"three\"." || !rp.Reviews[0].Bound {
		t.Fatalf("after the form: %+v", rp.Reviews)
	}
	if _, html := get(t, base+loc, ""); !strings.Contains(html, fmt.Sprintf("recorded as entry %d", before)) || !strings.Contains(html, "Line &lt;two&gt;") {
		t.Errorf("the page the form leads to does not say the review was recorded, or does not escape its notes")
	}

	// A platform whose answer to the review is not the review asked for,
	// or whose proof does not verify: the Center says so.
	for name, doctor := range map[string]func(*platform.ReviewAnswer){
		"another verdict": func(a *platform.ReviewAnswer) { a.Entry = strings.Replace(a.Entry, `"concerns"`, `"approved"`, 1) },
		"a doctored proof": func(a *platform.ReviewAnswer) {
			i := strings.Index(a.Proof, "\n\n") // the first hash after the index line
			a.Proof = a.Proof[:i-2] + "AA" + a.Proof[i:]
		},
	} {
		lc, err := New(Config{Platform: px.URL, Dir: t.TempDir(), HTTPClient: &http.Client{Transport: doctorReviews(doctor)}, IndexEvery: -1})
		if err != nil {
			t.Fatal(err)
		}
		lf := newFormClient(t, newServer(t, lc))
		v := good()
		v.Set("form", lf.token())
		code, _, body := lf.post(v, nil)
		if code != http.StatusBadGateway || !strings.Contains(body, "did not verify") {
			t.Errorf("%s: %d %s", name, code, body)
		}
	}

	// A review log whose bundles are doctored: the page shows no review
	// and says why.
	rx := liar.New(t, p.URL(), "review", []byte(`{"v":1,"kind":"review","evil":true}`))
	lc, err := New(Config{Platform: rx.URL, Dir: t.TempDir(), IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	lbase := newServer(t, lc)
	rx.Tell(liar.Bundle)
	code, html := get(t, lbase+"/center/releases/tool/1.2.3", "")
	if code != 200 || strings.Contains(html, "evil") || strings.Contains(html, `class="review `) || !strings.Contains(html, "The review log could not be read") {
		t.Errorf("over a doctored review log: %d, shows a review or not the problem", code)
	}
}

// doctorReviews is a transport that changes the platform's answers to
// POST /v1/reviews with doctor.
func doctorReviews(doctor func(*platform.ReviewAnswer)) http.RoundTripper {
	return roundTrip(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err != nil || r.Method != "POST" || !strings.HasSuffix(r.URL.Path, "/v1/reviews") || resp.StatusCode != 201 {
			return resp, err
		}
		var a platform.ReviewAnswer
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := json.Unmarshal(b, &a); err != nil {
			return nil, err
		}
		doctor(&a)
		b, _ = json.Marshal(a)
		resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		resp.Header.Del("Content-Length")
		return resp, nil
	})
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// atomFeed is what the tests read of an Atom feed.
type atomFeed struct {
	XMLName xml.Name `xml:"http://www.w3.org/2005/Atom feed"`
	Title   string   `xml:"title"`
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

// TestFeeds: each feed is Atom that parses back, every entry with an id,
// a time and a link to the Center; the releases, the policy and the
// review are there; an alert whose entry a lying monitor doctored (its
// proof then fails) is not, while the verified ones are; a doctored release log is a 502.
func TestFeeds(t *testing.T) {
	p, px := startPlatform(t)
	// The monitor's answer, with the proof of its first alert about an
	// entry doctored.
	doctored := roundTrip(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err != nil || !strings.HasSuffix(r.URL.Path, "/v1/alerts") {
			return resp, err
		}
		var page monitor.AlertsAnswer
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := json.Unmarshal(b, &page); err != nil {
			return nil, err
		}
		// A copy of the first alert about an entry, with the entry
		// changed: its proof no longer holds.
		for _, a := range page.Alerts {
			if a.Proof != "" {
				a.ID += 1000
				a.Detail = "DOCTORED"
				a.Entry = strings.Replace(a.Entry, `"v":1`, `"v":1 `, 1)
				page.Alerts = append(page.Alerts, a)
				break
			}
		}
		b, _ = json.Marshal(page)
		resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		resp.Header.Del("Content-Length")
		return resp, nil
	})
	c, err := New(Config{Platform: px.URL, Dir: t.TempDir(), CacheFor: time.Nanosecond, HTTPClient: &http.Client{Transport: doctored}, IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	base := newServer(t, c)
	read := func(name string) atomFeed {
		t.Helper()
		resp, err := http.Get(base + "/center/feeds/" + name)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var f atomFeed
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/atom+xml; charset=utf-8" {
			t.Fatalf("%s: %d %s", name, resp.StatusCode, b)
		}
		if err := xml.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s does not parse as Atom: %v\n%s", name, err, b)
		}
		if f.Title == "" || f.ID != base+"/center/feeds/"+name {
			t.Errorf("%s: title %q, id %q", name, f.Title, f.ID)
		}
		for _, e := range f.Entries {
			if _, err := time.Parse(time.RFC3339, e.Updated); err != nil || e.ID == "" || !strings.HasPrefix(e.Link.Href, base+"/center/") {
				t.Errorf("%s: entry %+v", name, e)
			}
		}
		return f
	}
	if f := read("releases.atom"); len(f.Entries) != 1 || f.Entries[0].Title != "tool 1.2.3" || f.Entries[0].Link.Href != base+"/center/releases/tool/1.2.3" {
		t.Errorf("releases: %+v", f.Entries)
	}
	first := read("releases.atom").Entries[0].Updated
	if again := read("releases.atom").Entries[0].Updated; again != first {
		t.Errorf("a release's time moved from %s to %s", first, again)
	}
	if f := read("policy.atom"); len(f.Entries) != 1 || f.Entries[0].Title != "Residency policy version 1" {
		t.Errorf("policy: %+v", f.Entries)
	}
	if f := read("reviews.atom"); len(f.Entries) != 1 || !strings.Contains(f.Entries[0].Title, "tool 1.2.3: approved (auditor:alice)") ||
		!strings.Contains(f.Entries[0].Content, "reproducible") || !strings.HasSuffix(f.Entries[0].Link.Href, "#review-0") {
		t.Errorf("reviews: %+v", f.Entries)
	}
	o, err := c.Overview(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	verified, doctoredSeen := 0, false
	for _, a := range o.Monitors[0].Alerts {
		if a.ProofVerified {
			verified++
		}
		if a.Detail == "DOCTORED" {
			doctoredSeen = !a.ProofVerified
		}
	}
	f := read("alerts.atom")
	if !doctoredSeen || verified == 0 || len(f.Entries) != verified {
		t.Errorf("alerts: %d in the feed, %d verified, the doctored one seen unverified: %v", len(f.Entries), verified, doctoredSeen)
	}
	for _, e := range f.Entries {
		if strings.Contains(e.Content, "DOCTORED") {
			t.Error("the alerts feed has the alert whose proof does not verify")
		}
	}
	if code, _ := get(t, base+"/center/feeds/nothing.atom", ""); code != 404 {
		t.Errorf("an unknown feed: %d", code)
	}
	// A release log whose bundles are doctored: no feed of it.
	rx := liar.New(t, p.URL(), "release", []byte(`{"v":1,"kind":"release","evil":true}`))
	lc, err := New(Config{Platform: rx.URL, Dir: t.TempDir(), IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	rx.Tell(liar.Bundle)
	if code, body := get(t, newServer(t, lc)+"/center/feeds/releases.atom", ""); code != http.StatusBadGateway || strings.Contains(body, "evil") {
		t.Errorf("over a doctored release log: %d %s", code, body)
	}
}

// TestSupervisorPage: the witness of the pinned policy with its
// cosignature of each log's verified checkpoint, and the monitor's alerts
// with their entries and proofs, the third party's request among them,
// verified; as JSON and HTML.
func TestSupervisorPage(t *testing.T) {
	_, px := startPlatform(t)
	c, err := New(Config{Platform: px.URL, Dir: t.TempDir(), CacheFor: time.Nanosecond, IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	base := newServer(t, c)
	code, body := get(t, base+"/center/supervisor", "application/json")
	var sp SupervisorPage
	if code != 200 || json.Unmarshal([]byte(body), &sp) != nil {
		t.Fatalf("the supervisor page: %d %s", code, body)
	}
	if len(sp.Witnesses) != 1 || len(sp.Witnesses[0].Logs) != len(platform.LogNames) || sp.Quorum == "" || sp.Witnesses[0].VKey == "" {
		t.Fatalf("the witnesses: %+v", sp.Witnesses)
	}
	for _, l := range sp.Witnesses[0].Logs {
		if !l.Cosigned || !l.Verified || l.Time.IsZero() {
			t.Errorf("the witness's cosignature of %s: %+v", l.Log, l)
		}
	}
	var third *AlertState
	for i, a := range sp.Monitors[0].Alerts {
		if a.Rule == "third-party-request" {
			third = &sp.Monitors[0].Alerts[i]
		}
	}
	if third == nil || !third.ProofVerified || third.Proof == "" || !strings.Contains(third.Entry, "THIRD_PARTY_DATA_REQUEST") || third.Anchor == "" {
		t.Fatalf("the third party's alert: %+v", third)
	}
	_, html := get(t, base+"/center/supervisor", "")
	for _, want := range []string{`<h1>Supervisor</h1>`, `id="` + third.Anchor + `"`, `data-input="verify-` + third.Anchor + `-entry"`, "third-party-request", `href="/center/feeds/alerts.atom"`} {
		if !strings.Contains(html, want) {
			t.Errorf("the page has no %s", want)
		}
	}
	if strings.Contains(html, `data-verified="false"`) {
		t.Error("an honest platform's supervisor page marks something unverified")
	}
}
