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
