package center

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/liar"
	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/internal/relocate"
	"github.com/vitrine-dev/vitrine/residency"
)

// residencyPage reads the residency page as JSON and as HTML.
func residencyPage(t *testing.T, base, query string) (*ResidencyPage, string) {
	t.Helper()
	u := base + "/center/residency"
	if query != "" {
		u += "?q=" + url.QueryEscape(query)
	}
	code, body := get(t, u, "application/json")
	var rp ResidencyPage
	if code != 200 || json.Unmarshal([]byte(body), &rp) != nil {
		t.Fatalf("the residency page: %d %s", code, body)
	}
	code, html := get(t, u, "")
	if code != 200 {
		t.Fatalf("the residency page as HTML: %d %s", code, html)
	}
	return &rp, html
}

// mapFill returns the fill the page's map gives the country's shape.
func mapFill(t *testing.T, html, code string) string {
	t.Helper()
	m := regexp.MustCompile(`<path d="[^"]*" fill="(#[0-9a-f]{6})"[^>]*data-code="` + code + `"`).FindStringSubmatch(html)
	if m == nil {
		t.Fatalf("the map has no shape for %s", code)
	}
	return m[1]
}

// relocateCountry relocates country to region on p and waits for the
// job to finish.
func relocateCountry(t *testing.T, p *platform.Platform, country, to string) *relocate.Job {
	t.Helper()
	var j relocate.Job
	call(t, "POST", p.URL()+"/v1/relocations", p.OperatorToken(), fmt.Sprintf(`{"country":%q,"to":%q}`, country, to), "", &j, 202)
	for deadline := time.Now().Add(60 * time.Second); j.Step != relocate.StepDone; time.Sleep(100 * time.Millisecond) {
		call(t, "GET", p.URL()+"/v1/relocations/"+j.ID, p.OperatorToken(), "", "", &j)
		if j.Error != "" || time.Now().After(deadline) {
			t.Fatalf("the relocation: %+v", j)
		}
	}
	return &j
}

// TestResidencyPage: the policy in force from the policy log, country by
// country and on the map, each country in its region's colour (Germany
// in zurich's, Brazil in moscow's, the default); a policy in the log
// signed with another key changes nothing. Germany relocated to moscow on
// the platform: the map colours it as moscow, the new version is listed
// with its change, and the relocation is shown verified with its proven
// entries. A relocation the platform logs but did not make (its entries
// do not add up) is shown unverified, with why; over a proxy whose
// access log then lies, no relocation is shown and the page says why.
func TestResidencyPage(t *testing.T) {
	p, px := startPlatform(t)
	c, err := New(Config{Platform: px.URL, Dir: t.TempDir(), IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	base := newServer(t, c)
	rp, html := residencyPage(t, base, "")
	where, colour := map[string]string{}, map[string]string{}
	for _, c := range rp.Countries {
		where[c.Code] = c.Region
	}
	for _, r := range rp.Regions {
		colour[r.Name] = r.Colour
	}
	if len(rp.Countries) != 249 || rp.Total != 249 || where["DE"] != "zurich" || where["BR"] != "moscow" || where["US"] != "zurich" {
		t.Errorf("countries: %d, DE %s, BR %s, US %s", len(rp.Countries), where["DE"], where["BR"], where["US"])
	}
	if rp.Policy == nil || rp.Policy.Version != 1 || len(rp.Versions) != 1 || rp.Versions[0].Changes[0] != "the first policy" || rp.Skipped != 0 {
		t.Errorf("the policy: %+v, versions %+v", rp.Policy, rp.Versions)
	}
	if len(rp.Regions) != 2 || colour["zurich"] == "" || colour["moscow"] == "" || colour["zurich"] == colour["moscow"] {
		t.Fatalf("regions: %+v", rp.Regions)
	}
	if mapFill(t, html, "DE") != colour["zurich"] || mapFill(t, html, "BR") != colour["moscow"] || mapFill(t, html, "US") != colour["zurich"] {
		t.Errorf("the map: DE %s, BR %s, US %s; zurich is %s, moscow %s", mapFill(t, html, "DE"), mapFill(t, html, "BR"), mapFill(t, html, "US"), colour["zurich"], colour["moscow"])
	}
	// A territory the map has without an ISO code is in no region.
	if !regexp.MustCompile(`<path d="[^"]*" fill="#d8dde3"><title>Kosovo: no ISO 3166-1 code, so no policy names it</title>`).MatchString(html) {
		t.Error("Kosovo is not drawn as in no region")
	}
	if !strings.Contains(html, `<tr id="DE">`) || !strings.Contains(html, "Singapore <small>(not on the map)</small>") {
		t.Error("the table has no row for Germany, or Singapore is not said to be off the map")
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(html))
	zw.Close()
	t.Logf("the residency page: %d bytes, %d gzipped", len(html), gz.Len())
	if len(rp.Relocations) != 0 || len(rp.AccessLogs) != 2 || rp.RelocationsProblem != "" {
		t.Errorf("relocations before any: %+v %+v %q", rp.Relocations, rp.AccessLogs, rp.RelocationsProblem)
	}

	// The filter: by name without its accent, by code, by region.
	for q, want := range map[string][]string{"cote": {"CI"}, "de": {"DE", "BD"}, "MOSCOW": {"BR"}, "nothing like it": nil} {
		rp, html := residencyPage(t, base, q)
		got := map[string]bool{}
		for _, c := range rp.Countries {
			got[c.Code] = true
		}
		for _, code := range want {
			if !got[code] {
				t.Errorf("q=%q: no %s among %d countries", q, code, len(rp.Countries))
			}
		}
		if q == "cote" && (len(rp.Countries) != 1 || !strings.Contains(html, `fill-opacity=".2" data-code="DE"`) || strings.Contains(html, `fill-opacity=".2" data-code="CI"`)) {
			t.Errorf("q=cote: %d countries; Germany should be dimmed on the map, Côte d'Ivoire not", len(rp.Countries))
		}
		if want == nil && (len(rp.Countries) != 0 || !strings.Contains(html, "No country matches")) {
			t.Errorf("q=%q: %d countries", q, len(rp.Countries))
		}
	}
	if code, _ := get(t, base+"/center/residency?q="+strings.Repeat("x", 65), ""); code != 400 {
		t.Errorf("a filter of 65 bytes: %d, want 400", code)
	}

	// The platform's policy log takes a policy that moves Germany, signed
	// with another key than the pinned one: it is not the policy in force.
	ctx := context.Background()
	skey, _, err := note.GenerateKey(rand.Reader, "not-the-policy-key")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	forged := &residency.Policy{Version: 9, Default: "moscow", Regions: []residency.Region{{Name: "zurich", Countries: []string{"CH"}}, {Name: "moscow"}}}
	entry, err := residency.Sign(forged, signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Log("policy").Append(ctx, entry); err != nil {
		t.Fatal(err)
	}
	// And a relocation of France that the platform logs but did not
	// make: a summary at each end, no chunk.
	for _, region := range []string{"zurich", "moscow"} {
		rec := &access.Record{Time: time.Now().UTC().Truncate(time.Millisecond), Region: region, Principal: access.Principal{ID: "operator:platform", Role: "operator", Location: "CH"},
			Action: "relocate", Resource: access.Resource{Dataset: "telemetry", Count: 0, Digest: access.Digest(nil),
				Query: "relocation job=rel-00000000000000ff country=FR from=zurich to=moscow policy=1 summary records=500 batches=5 digest=sha256:00 deleted=500"},
			Justification: access.Justification{Code: "RELOCATION", Detail: "relocation rel-00000000000000ff of FR from zurich to moscow"},
			Subjects:      []string{}, Request: "rel-00000000000000ff", Outcome: "granted"}
		b, err := rec.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Log("access-"+region).Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}

	// Germany relocated, for real, between two commitments of each
	// region's dataset.
	commit := func() {
		for _, region := range []string{"zurich", "moscow"} {
			call(t, "POST", p.URL()+"/regions/"+region+"/v1/commitments", p.OperatorToken(), "", "", nil)
		}
	}
	commit()
	job := relocateCountry(t, p, "DE", "moscow")
	commit()
	var rel, fake *Relocation
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		rp, html = residencyPage(t, base, "")
		rel, fake = nil, nil
		for i, r := range rp.Relocations {
			switch r.Job {
			case job.ID:
				rel = &rp.Relocations[i]
			case "rel-00000000000000ff":
				fake = &rp.Relocations[i]
			}
		}
		// The commitments after it are sequenced, but may not be in a
		// checkpoint yet.
		if (rel != nil && rel.Complete && rp.Policy.Version == 2 && fake != nil && len(rel.Datasets) == 2 && rel.Datasets[0].After != nil && rel.Datasets[1].After != nil) ||
			time.Now().After(deadline) {
			break
		}
	}
	if rp.Policy == nil || rp.Policy.Version != 2 || rp.Skipped != 1 || len(rp.Versions) != 2 || !strings.Contains(strings.Join(rp.Versions[0].Changes, "; "), "DE") {
		t.Fatalf("after the relocation: policy %+v, %d skipped, versions %+v", rp.Policy, rp.Skipped, rp.Versions)
	}
	if mapFill(t, html, "DE") != colour["moscow"] || mapFill(t, html, "FR") != colour["zurich"] || mapFill(t, html, "US") != colour["zurich"] {
		t.Errorf("the map after Germany moved: DE %s, FR %s, US %s; zurich is %s, moscow %s", mapFill(t, html, "DE"), mapFill(t, html, "FR"), mapFill(t, html, "US"), colour["zurich"], colour["moscow"])
	}
	if rel == nil || !rel.Verified || rel.Country != "DE" || rel.From != "zurich" || rel.To != "moscow" || rel.Policy != 2 ||
		rel.Records != 1 || rel.Received != 1 || rel.Deleted != 1 || rel.Chunks != 1 || rel.Moved == nil || rel.Before == nil || len(rel.Problems) != 0 {
		t.Fatalf("the relocation: %+v", rel)
	}
	if len(rel.Datasets) != 2 || rel.Datasets[0].Region != "zurich" || rel.Datasets[1].Region != "moscow" {
		t.Fatalf("the datasets around the relocation: %+v", rel.Datasets)
	}
	for i, want := range [][2]int64{{1, 0}, {0, 1}} { // zurich's record, moved to moscow
		d := rel.Datasets[i]
		if d.Before == nil || d.After == nil || d.Before.Count != want[0] || d.After.Count != want[1] {
			t.Errorf("%s's commitments around the relocation: %+v %+v, want counts %v", d.Region, d.Before, d.After, want)
		}
	}
	// Its entries: relocated, received, deleted, and both summaries,
	// each one an entry of its log that the Center's entry page proves.
	actions := map[string]int{}
	for _, e := range rel.Entries {
		actions[e.Log+" "+e.Action]++
		if (e.What == "summary") != strings.HasSuffix(e.What, "summary") || (e.What == "summary" && e.Count != 1) || (e.What != "summary" && e.What != "batches 1-1") {
			t.Errorf("entry %s #%d: %s of %d records", e.Log, e.Index, e.What, e.Count)
		}
		code, body := get(t, fmt.Sprintf("%s/center/logs/%s/%d", base, e.Log, e.Index), "application/json")
		var ep EntryPage
		if code != 200 || json.Unmarshal([]byte(body), &ep) != nil || ep.Record == nil || ep.Record.Request != job.ID || !ep.Entry.Verified {
			t.Errorf("entry %s #%d: %d %s", e.Log, e.Index, code, body)
		}
		if !strings.Contains(html, fmt.Sprintf(`<a href="/center/logs/%s/%d">`, e.Log, e.Index)) {
			t.Errorf("the page does not link entry %s #%d", e.Log, e.Index)
		}
	}
	if want := map[string]int{"access-zurich relocate": 2, "access-zurich delete": 1, "access-moscow relocate": 2}; fmt.Sprint(actions) != fmt.Sprint(want) {
		t.Errorf("the relocation's entries: %v, want %v", actions, want)
	}
	if fake == nil || fake.Verified || len(fake.Problems) == 0 {
		t.Fatalf("a relocation whose entries do not add up: %+v", fake)
	}
	if n := strings.Count(html, `<article class="relocation" data-verified="true">`); n != 1 {
		t.Errorf("%d relocations marked verified, want 1", n)
	}
	if n := strings.Count(html, `<article class="relocation" data-verified="false">`); n != 1 || !strings.Contains(html, "the chunks say 0 and 0") {
		t.Errorf("%d relocations marked unverified, want 1 with its problem named", n)
	}

	// The proxy now lies about access-zurich's checkpoint: the policy
	// and the map are still shown, and no relocation is.
	px.Tell(liar.Checkpoint)
	rp, html = residencyPage(t, base, "")
	if rp.RelocationsProblem == "" || len(rp.Relocations) != 0 || !strings.Contains(html, "could not be read for relocations") || strings.Contains(html, `class="relocation" data-verified="true"`) {
		t.Errorf("over a lying access log: %q, %d relocations", rp.RelocationsProblem, len(rp.Relocations))
	}
	if rp.Policy == nil || rp.Policy.Version != 2 || mapFill(t, html, "DE") != colour["moscow"] {
		t.Errorf("over a lying access log, the policy: %+v", rp.Policy)
	}
}
