package center

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/residency"
)

// FuzzSearch: whatever is searched for, the answer is a redirect to a
// page of this Center (a path under /center/, never another host) or a
// 4xx, or a 503 when the platform it must read is out of reach; never a
// 500 or a panic.
func FuzzSearch(f *testing.F) {
	c, err := New(Config{Platform: "http://127.0.0.1:1", Dir: f.TempDir(), IndexEvery: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { c.Close() })
	h := c.Handler()
	for _, q := range []string{"tool 1.2.3", "tool@1.2.3", "access-zurich/17", "access-zurich#17", strings.Repeat("a", 64), "sha256:" + strings.Repeat("0", 64),
		"//evil.example x", "a/../../x 1", "x 1/../../..", "\x00", "release/99999999999999999999", "analyst:jdoe", "hmac-sha256:" + strings.Repeat("0", 64), "hmac-sha256:0"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/center/search?q="+url.QueryEscape(q), nil))
		switch {
		case w.Code == http.StatusSeeOther:
			loc := w.Header().Get("Location")
			u, err := url.Parse(loc)
			if err != nil || u.Host != "" || u.Scheme != "" || !strings.HasPrefix(loc, "/center/") || strings.HasPrefix(loc, "//") {
				t.Fatalf("search %q redirects to %q", q, loc)
			}
		case w.Code/100 == 4, w.Code == http.StatusServiceUnavailable:
		default:
			t.Fatalf("search %q: %d %s", q, w.Code, w.Body)
		}
	})
}

// FuzzAccesses: whatever query /center/accesses is given, the answer is a
// page (200) or a 400 naming what is wrong; never a 500 or a panic, and
// the index is left as it was.
func FuzzAccesses(f *testing.F) {
	c, err := New(Config{Platform: "http://127.0.0.1:1", Dir: f.TempDir(), IndexEvery: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { c.Close() })
	h := c.Handler()
	for _, q := range []string{"", "log=access-zurich", "principal=analyst:jdoe&action=read", "justification=(none)", "outcome=denied",
		"subject=hmac-sha256:" + strings.Repeat("ab", 32), "from=2026-12-01&to=2026-12-07", "from=2026-12-01T10:00:00Z", "before=1700000000000.1.5",
		"before=9999999999999999999.1.1", "log=access-zurich'--", "principal=analyst:%00", "a=b&a=c", "%zz"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/center/accesses", nil)
		r.URL.RawQuery = q
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK && w.Code != http.StatusBadRequest {
			t.Fatalf("accesses?%s: %d %s", q, w.Code, w.Body)
		}
		var n int
		if err := c.index.db.QueryRow(`SELECT count(*) FROM entries`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("after accesses?%s the index holds %d entries (%v)", q, n, err)
		}
	})
}

// FuzzResidencyQuery: whatever the residency page is asked to filter by,
// the answer is a 400 that says what a filter is, or a 503 when the
// platform is out of reach; never a 500 or a panic.
func FuzzResidencyQuery(f *testing.F) {
	c, err := New(Config{Platform: "http://127.0.0.1:1", Dir: f.TempDir(), IndexEvery: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { c.Close() })
	h := c.Handler()
	for _, q := range []string{"", "de", "Côte", "zurich", strings.Repeat("x", 65), "\xff", "<script>", "%", "\x00"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/center/residency?q="+url.QueryEscape(q), nil))
		switch {
		case w.Code == http.StatusBadRequest && strings.Contains(w.Body.String(), "at most 64 bytes"):
		case w.Code == http.StatusServiceUnavailable:
		default:
			t.Fatalf("q=%q: %d %s", q, w.Code, w.Body)
		}
	})
}

// FuzzRelocations: whatever queries a platform's relocation entries
// carry, checking them does not panic, and a relocation is shown verified
// only if its entries account for every record: as many left as arrived
// and were deleted, and both summaries are there.
func FuzzRelocations(f *testing.F) {
	f.Add("relocation job=rel-1 country=DE from=zurich to=moscow policy=2 batches=1-1", "relocation job=rel-1 country=DE from=zurich to=moscow policy=2 batches=1-1 source_entry=3",
		"relocation job=rel-1 country=DE from=zurich to=moscow policy=2 summary records=1 batches=1 digest=sha256:00 deleted=1", int64(1))
	f.Add("relocation job=x batches=", "relocation summary", "relocation job= summary records=-1", int64(-1))
	pol := func(v uint64, de string) *residency.Policy {
		return &residency.Policy{Version: v, Default: "moscow", Regions: []residency.Region{{Name: "zurich", Countries: []string{"CH", de}}, {Name: "moscow"}}}
	}
	policies := []*residency.Policy{pol(1, "DE"), {Version: 2, Default: "moscow", Regions: []residency.Region{{Name: "zurich", Countries: []string{"CH"}}, {Name: "moscow"}}}}
	f.Fuzz(func(t *testing.T, src, dst, summary string, count int64) {
		rec := func(region, action, query string) relocEntry {
			r := &access.Record{Time: time.Unix(0, 0).UTC(), Region: region, Principal: access.Principal{ID: "operator:platform", Role: "operator", Location: "CH"},
				Action: action, Resource: access.Resource{Dataset: "telemetry", Query: query, Count: count, Digest: access.Digest(nil)},
				Justification: access.Justification{Code: "RELOCATION"}, Subjects: []string{}, Keys: []string{"k"}, Request: "rel-1", Outcome: "granted"}
			b, err := r.Marshal()
			if err != nil {
				return relocEntry{Entry: "{}"}
			}
			return relocEntry{Entry: string(b)}
		}
		found := map[string]*relocState{
			"access-zurich": {Entries: []relocEntry{rec("zurich", "relocate", src), rec("zurich", "delete", src), rec("zurich", "relocate", summary)}},
			"access-moscow": {Entries: []relocEntry{rec("moscow", "relocate", dst), rec("moscow", "relocate", summary)}},
		}
		for _, r := range relocations(found, policies, map[uint64]uint64{1: 0, 2: 1}) {
			if r.Verified && (!r.Complete || r.Records != r.Received || r.Records != r.Deleted || len(r.Problems) != 0) {
				t.Fatalf("shown verified: %+v", r)
			}
		}
	})
}

// FuzzReadArchive: whatever archive a platform serves (once its digest is
// the provenance's), reading it never panics, and what it reads stays
// within the bounds, every path clean and relative, no file standing
// where a directory is; an archive the conveyer wrote reads back as the
// files it archived.
func FuzzReadArchive(f *testing.F) {
	good, _ := archive(f, tool100)
	f.Add(good)
	f.Add(good[:len(good)/2])
	for _, names := range [][]string{{"../x"}, {"/etc/passwd"}, {"a", "a/b"}, {"a/b", "a"}, {"a", "a"}, {"a\\b"}, {"./a"}, {"a//b"}} {
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		tw := tar.NewWriter(gz)
		for _, n := range names {
			tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})
			tw.Write([]byte("x"))
		}
		tw.Close()
		gz.Close()
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tree, err := readArchive("", b)
		if err != nil {
			return
		}
		var total int64
		for _, p := range tree.paths {
			file := tree.files[p]
			if !cleanPath(p) || file == nil || file.path != p {
				t.Fatalf("path %q", p)
			}
			for d := path.Dir(p); d != "."; d = path.Dir(d) {
				if tree.files[d] != nil {
					t.Fatalf("%s is a file and a directory", d)
				}
			}
			total += int64(len(file.data))
		}
		if len(tree.paths) > maxTreeFiles || total != tree.bytes || total > maxTreeBytes || len(tree.files) != len(tree.paths) {
			t.Fatalf("%d files, %d bytes (%d counted)", len(tree.paths), total, tree.bytes)
		}
		if bytes.Equal(b, good) {
			for name, content := range tool100 {
				if f := tree.files[name]; f == nil || string(f.data) != content {
					t.Fatalf("%s read back as %+v", name, f)
				}
			}
		}
	})
}

// FuzzSourcePath: a source path and the link the Center makes of it go
// round: the link stays under the release's source and the router hands
// the handler back exactly that path, whatever characters it holds; a
// path that is not clean is a 400, never a 500.
func FuzzSourcePath(f *testing.F) {
	for _, p := range []string{"main.go", "docs/with space.md", "a#b?c", "100%/x", "ü/é", "a/../b", "..", ".", "a//b", "\x00", "a\\b", "%2e%2e"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if !cleanPath(p) || !utf8.ValidString(p) {
			return
		}
		href := sourceHref("tool", "1.0.0", p)
		u, err := url.Parse(href)
		if err != nil || u.Host != "" || u.RawQuery != "" || u.Fragment != "" || !strings.HasPrefix(u.Path, "/center/releases/tool/1.0.0/source/") {
			t.Fatalf("%q: link %q", p, href)
		}
		mux := http.NewServeMux()
		var got string
		mux.HandleFunc("GET /center/releases/{name}/{version}/source/{path...}", func(w http.ResponseWriter, r *http.Request) { got = r.PathValue("path") })
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("GET", href, nil))
		if w.Code != http.StatusOK || got != p {
			t.Fatalf("%q: link %q routes to %q (%d)", p, href, got, w.Code)
		}
	})
}

// FuzzSourceRoutes: whatever path of a release's source or diff query is
// asked for, the answer is a 4xx, a redirect to a page of this Center, or
// a 503 when the platform it must read is out of reach; never a 500 or a
// panic.
func FuzzSourceRoutes(f *testing.F) {
	c, err := New(Config{Platform: "http://127.0.0.1:1", Dir: f.TempDir(), IndexEvery: -1})
	if err != nil {
		f.Fatal(err)
	}
	h := c.Handler()
	for _, s := range []string{"main.go", "docs/", "../x", "a%2Fb", "%00", "a//b", "?line=3", "x?line=-1", "1.0.0", strings.Repeat("9", 300), "//evil.example/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, target := range []string{"/center/releases/tool/1.0.0/source/" + s, "/center/releases/tool/1.0.0/diff?from=" + url.QueryEscape(s)} {
			u, err := url.ParseRequestURI(target)
			if err != nil {
				continue
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, &http.Request{Method: "GET", URL: u, RequestURI: target, Header: http.Header{}, Host: "center.example"})
			switch {
			case w.Code/100 == 3:
				loc := w.Header().Get("Location")
				if l, err := url.Parse(loc); err != nil || l.Host != "" || !strings.HasPrefix(loc, "/center/") || strings.HasPrefix(loc, "//") {
					t.Fatalf("%s redirects to %q", target, loc)
				}
			case w.Code/100 == 4, w.Code == http.StatusServiceUnavailable:
			default:
				t.Fatalf("%s: %d %s", target, w.Code, w.Body)
			}
		}
	})
}

// FuzzReviewForm: whatever a review form holds, the Center answers a 4xx,
// or a 503 when the platform it must read is out of reach; never a 500,
// a redirect or a panic, and never the token it was given.
func FuzzReviewForm(f *testing.F) {
	c, err := New(Config{Platform: "http://127.0.0.1:1", Dir: f.TempDir(), IndexEvery: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { c.Close() })
	h := c.Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/center/releases/tool/1.2.3", nil))
	cookie := "vitrine-review-form=" + strings.Repeat("a", 43)
	form := c.formToken(strings.Repeat("a", 43))
	for _, s := range []string{"token=vp1.x&verdict=approved&notes=ok&form=" + form, "token=t0ken-s3cret&verdict=concerns&files=a%0Ab&notes=x&form=" + form,
		"token=t0ken-s3cret&verdict=rejected&files=../x&form=" + form, "verdict=%00&notes=%ff%fe", "files=" + strings.Repeat("a%0A", 200) + "&form=" + form, "&&==%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/center/releases/tool/1.2.3/reviews", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Cookie", cookie)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code/100 != 4 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("form %q: %d %s", body, w.Code, w.Body)
		}
		if v, err := url.ParseQuery(body); err == nil {
			if tok := v.Get("token"); len(tok) >= 20 && strings.Contains(w.Body.String(), tok) {
				t.Fatalf("form %q: the answer shows the token", body)
			}
		}
	})
}
