package center

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/liar"
)

// accessesPage reads /center/accesses?query as JSON.
func accessesPage(t *testing.T, base, query string) AccessesPage {
	t.Helper()
	code, body := get(t, base+"/center/accesses?"+query, "application/json")
	var page AccessesPage
	if code != 200 || json.Unmarshal([]byte(body), &page) != nil {
		t.Fatalf("accesses?%s: %d %s", query, code, body)
	}
	return page
}

// TestAccessIndex: the Center follows the access log into its index; the
// index's rows are the log's entries as its tiles give them; filters by
// principal, justification, outcome, action, subject and time select what
// they name; pages join up; search goes to a principal's and a
// pseudonym's entries; bad filters are 400s. Over a proxy that doctors
// the log's bundles the index stops, says why and indexes nothing of
// them; honest again, it goes on from where it stopped, nothing twice.
func TestAccessIndex(t *testing.T) {
	p, px := startPlatform(t)
	ctx := context.Background()
	// A denied attempt: a read with no justification.
	var pr struct{ Token string }
	call(t, "POST", p.URL()+"/v1/principals", p.OperatorToken(), `{"id":"analyst:kroe","role":"analyst","location":"CH","regions":["zurich"]}`, "", &pr)
	req, _ := http.NewRequest("GET", p.URL()+"/regions/zurich/v1/records?sha256="+fmt.Sprintf("%064x", 42), nil)
	req.Header.Set("Authorization", "Bearer "+pr.Token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode/100 != 4 {
		t.Fatalf("a read with no justification: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	c, err := New(Config{Platform: px.URL, Dir: t.TempDir(), CacheFor: time.Nanosecond, IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	base := newServer(t, c)
	var tiles LogPage
	for { // until the log's tiles hold the denied attempt
		tiles = LogPage{}
		code, body := get(t, base+"/center/logs/access-zurich/", "application/json")
		if code != 200 || json.Unmarshal([]byte(body), &tiles) != nil {
			t.Fatalf("the log's page: %d %s", code, body)
		}
		if strings.Contains(body, `"denied"`) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := c.UpdateIndex(ctx); err != nil {
		t.Fatal(err)
	}
	all := accessesPage(t, base, "log=access-zurich")
	if st := c.index.Status()["access-zurich"]; st.Indexed < tiles.Size || st.Problem != "" || !slices.ContainsFunc(all.Indexed, func(s IndexStatus) bool { return s.Log == "access-zurich" }) {
		t.Fatalf("indexed: %+v, want at least %d entries of access-zurich", all.Indexed, tiles.Size)
	}
	// The index's rows are the tiles' entries (those of the page's
	// checkpoint; the index may have seen a newer one).
	byIndex := map[uint64]Indexed{}
	for _, e := range all.Entries {
		if !e.Verified || e.Log != "access-zurich" {
			t.Errorf("entry %+v", e)
		}
		byIndex[e.Index] = e
	}
	for _, want := range tiles.Entries {
		got, ok := byIndex[want.Index]
		want.Summary = ""
		if !ok || !reflect.DeepEqual(got.EntrySummary, want) {
			t.Errorf("entry %d: index %+v, tiles %+v", want.Index, got.EntrySummary, want)
		}
	}
	for i := 1; i < len(all.Entries); i++ {
		if all.Entries[i].Time.After(all.Entries[i-1].Time) {
			t.Errorf("entries not newest first: %v after %v", all.Entries[i].Time, all.Entries[i-1].Time)
		}
	}

	// A second Center, which indexes the log as a long catch-up does
	// (the rows first, the indexes after), answers every filter below
	// the same.
	indexBulk = 1
	c2, err := New(Config{Platform: px.URL, Dir: t.TempDir(), CacheFor: time.Nanosecond, IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	base2 := newServer(t, c2)
	err = c2.UpdateIndex(ctx)
	indexBulk = 200_000
	if err != nil {
		t.Fatal(err)
	}
	var indexes int
	if err := c2.index.db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN ('entries_principal', 'entries_action', 'entries_justification', 'subjects_key')`).Scan(&indexes); err != nil || indexes != 4 {
		t.Errorf("after a bulk follow, %d of the 4 indexes (%v)", indexes, err)
	}

	only := func(query string, keep func(Indexed) bool) []Indexed {
		t.Helper()
		got := accessesPage(t, base, query).Entries
		// (Up to what both indexes hold: the platform logs its own
		// processing meanwhile.)
		held := func(es []Indexed) []Indexed {
			var out []Indexed
			for _, e := range es {
				if e.Index < min(c.index.Status()[e.Log].Indexed, c2.index.Status()[e.Log].Indexed) {
					out = append(out, e)
				}
			}
			return out
		}
		if bulk := accessesPage(t, base2, query).Entries; !reflect.DeepEqual(held(got), held(bulk)) || len(held(got)) == 0 {
			t.Errorf("accesses?%s: %+v, from the index made in bulk %+v", query, got, bulk)
		}
		var want []Indexed
		for _, e := range all.Entries {
			if keep(e) {
				want = append(want, e)
			}
		}
		if len(want) == 0 || !reflect.DeepEqual(got, want) {
			t.Errorf("accesses?%s: %+v, want %+v", query, got, want)
		}
		return got
	}
	only("principal=analyst:jdoe", func(e Indexed) bool { return e.Principal == "analyst:jdoe" })
	third := only("justification=THIRD_PARTY_DATA_REQUEST", func(e Indexed) bool { return e.Justification == "THIRD_PARTY_DATA_REQUEST" })
	only("outcome=denied", func(e Indexed) bool { return e.Outcome == "denied" })
	only("outcome=granted&principal=analyst:jdoe", func(e Indexed) bool { return e.Outcome == "granted" && e.Principal == "analyst:jdoe" })
	only("action=read", func(e Indexed) bool { return e.Action == "read" })
	only("justification=(none)", func(e Indexed) bool { return e.Kind == "access" && e.Justification == "" })
	only("from="+third[0].Time.Format(time.RFC3339Nano), func(e Indexed) bool { return !e.Time.Before(third[0].Time) })
	if got := accessesPage(t, base, "principal=analyst:nobody").Entries; len(got) != 0 {
		t.Errorf("an unknown principal: %+v", got)
	}
	if got := accessesPage(t, base, "to=2000-01-01").Entries; len(got) != 0 {
		t.Errorf("before 2000: %+v", got)
	}

	// The read's subject, from its entry page, selects it.
	code, body := get(t, fmt.Sprintf("%s/center/logs/access-zurich/%d", base, third[0].Index), "application/json")
	var ep EntryPage
	if code != 200 || json.Unmarshal([]byte(body), &ep) != nil || ep.Record == nil || len(ep.Record.Subjects) == 0 {
		t.Fatalf("the read's page: %d %s", code, body)
	}
	subject := ep.Record.Subjects[0]
	if got := accessesPage(t, base, "subject="+subject).Entries; len(got) != 1 || got[0].Index != third[0].Index {
		t.Errorf("subject %s: %+v", subject, got)
	}

	// Pages of one entry join up into the whole.
	var paged []Indexed
	for f := (Filter{Log: "access-zurich"}); ; {
		got, next, err := c.index.Query(ctx, f, 1)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, got...)
		if next == nil {
			break
		}
		f.Before = next
	}
	if len(paged) != len(all.Entries) {
		t.Errorf("paged one at a time: %d entries, want %d", len(paged), len(all.Entries))
	}
	for i := range paged {
		if paged[i].Log != all.Entries[i].Log || paged[i].Index != all.Entries[i].Index {
			t.Errorf("page %d: %s/%d, want %s/%d", i, paged[i].Log, paged[i].Index, all.Entries[i].Log, all.Entries[i].Index)
		}
	}
	_, html := get(t, base+"/center/accesses?principal=analyst:jdoe", "")
	if !strings.Contains(html, "THIRD_PARTY_DATA_REQUEST") || !strings.Contains(html, `data-verified="true"`) || !strings.Contains(html, `<progress`) {
		t.Errorf("the page as HTML: %s", html)
	}

	for q, want := range map[string]string{
		"analyst:jdoe": "/center/accesses?principal=analyst%3Ajdoe",
		subject:        "/center/accesses?subject=" + url.QueryEscape(subject),
		"tool":         "/center/releases/tool/1.2.3", // a release's name: its newest version
	} {
		if code, loc := searchFor(t, base, q); code != http.StatusSeeOther || loc != want {
			t.Errorf("search %s: %d %s, want %s", q, code, loc, want)
		}
	}
	if code, _ := searchFor(t, base, "nosuchtool"); code != http.StatusNotFound {
		t.Errorf("search for a name no release has: %d", code)
	}
	for _, q := range []string{"principal=alice", "principal=analyst:jdoe&principal=analyst:kroe", "subject=hmac-sha256:00", "action=steal",
		"justification=BECAUSE", "outcome=maybe", "from=yesterday", "to=2026-13-01", "before=1.2", "before=-1.0.0", "log=release",
		"principal=" + strings.Repeat("a", 300)} {
		if code, body := get(t, base+"/center/accesses?"+q, ""); code != 400 {
			t.Errorf("accesses?%s: %d %s, want 400", q, code, body)
		}
	}

	// More entries; the proxy doctors the log's bundles: the index stops
	// short, says why, and holds nothing of them.
	before := c.index.Status()["access-zurich"]
	call(t, "GET", p.URL()+"/regions/zurich/v1/records?sha256="+fmt.Sprintf("%064x", 42), pr.Token, "", "THIRD_PARTY_DATA_REQUEST; court order 8", nil)
	waitForSize(t, base, before.Checkpoint+1)
	px.Tell(liar.Bundle)
	if err := c.UpdateIndex(ctx); err == nil {
		t.Fatal("indexing doctored bundles: no error")
	}
	st := c.index.Status()["access-zurich"]
	if st.Problem == "" || st.Indexed != before.Indexed {
		t.Errorf("after doctored bundles: %+v, want a problem and %d entries", st, before.Indexed)
	}
	if _, body := get(t, base+"/center/accesses", ""); strings.Contains(body, "evil") || !strings.Contains(body, `data-verified="false"`) {
		t.Errorf("the page after doctored bundles shows them, or not the problem: %s", body)
	}
	px.Tell(liar.Honest)
	if err := c.UpdateIndex(ctx); err != nil {
		t.Fatal(err)
	}
	st = c.index.Status()["access-zurich"]
	var rows uint64
	if err := c.index.db.QueryRow(`SELECT count(*) FROM entries JOIN logs ON logs.id = entries.log WHERE logs.name = 'access-zurich'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if st.Problem != "" || st.Indexed <= before.Indexed || rows != st.Indexed {
		t.Errorf("honest again: %+v, %d rows", st, rows)
	}
	if got := accessesPage(t, base, "justification=THIRD_PARTY_DATA_REQUEST").Entries; len(got) != 2 {
		t.Errorf("after the second read: %d third-party reads, want 2", len(got))
	}
}

// waitForSize waits until the Center sees the access log at size n.
func waitForSize(t *testing.T, base string, n uint64) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var page LogPage
		if code, body := get(t, base+"/center/logs/access-zurich/", "application/json"); code == 200 && json.Unmarshal([]byte(body), &page) == nil && page.Size >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log did not reach %d entries", n)
		}
	}
}

// searchFor asks the Center's search for q and returns the answer's
// status and Location.
func searchFor(t *testing.T, base, q string) (int, string) {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(base + "/center/search?q=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

// TestReceiptOriginPinned: a receipt names its log by origin; a platform
// whose discovery document claims that another log (the release log) has
// the access log's origin does not send the reader to that log's entry:
// the origin is read from the pinned key's name.
func TestReceiptOriginPinned(t *testing.T) {
	p, _ := startPlatform(t)
	target, _ := url.Parse(p.URL())
	var zurichOrigin string
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(r *http.Response) error {
		if r.Request.URL.Path != client.DiscoveryPath {
			return nil
		}
		b, _ := io.ReadAll(r.Body)
		var d map[string]any
		if err := json.Unmarshal(b, &d); err != nil {
			return err
		}
		var rel map[string]any
		var rest []any
		for _, l := range d["logs"].([]any) {
			m := l.(map[string]any)
			if m["name"] == "access-zurich" {
				zurichOrigin = m["origin"].(string)
			}
			if m["name"] == "release" {
				rel = m
			} else {
				rest = append(rest, m)
			}
		}
		rel["origin"] = zurichOrigin // the lie: nothing signs it
		d["logs"] = append([]any{rel}, rest...)
		nb, _ := json.Marshal(d)
		r.Body = io.NopCloser(bytes.NewReader(nb))
		r.ContentLength = int64(len(nb))
		r.Header.Set("Content-Length", strconv.Itoa(len(nb)))
		return nil
	}
	px := httptest.NewServer(rp)
	t.Cleanup(px.Close)
	c, err := New(Config{Platform: px.URL, Dir: t.TempDir(), CacheFor: time.Nanosecond, IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	base := newServer(t, c)
	get(t, base+"/center/logs/access-zurich/", "application/json")
	if code, loc := searchFor(t, base, zurichOrigin+" 0"); code != http.StatusSeeOther || loc != "/center/logs/access-zurich/0" {
		t.Errorf("an access receipt of %s: %d %s, want access-zurich's entry 0", zurichOrigin, code, loc)
	}
}
