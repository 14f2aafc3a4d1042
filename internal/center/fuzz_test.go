package center

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
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
