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
	"unicode/utf8"
)

// FuzzSearch: whatever is searched for, the answer is a redirect to a
// page of this Center (a path under /center/, never another host) or a
// 4xx, or a 503 when the platform it must read is out of reach; never a
// 500 or a panic.
func FuzzSearch(f *testing.F) {
	c, err := New(Config{Platform: "http://127.0.0.1:1", Dir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	h := c.Handler()
	for _, q := range []string{"tool 1.2.3", "tool@1.2.3", "access-zurich/17", "access-zurich#17", strings.Repeat("a", 64), "sha256:" + strings.Repeat("0", 64),
		"//evil.example x", "a/../../x 1", "x 1/../../..", "\x00", "release/99999999999999999999"} {
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
	c, err := New(Config{Platform: "http://127.0.0.1:1", Dir: f.TempDir()})
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
