package publish

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestBadReleasePathsAre404: a version name too long for the file system
// is 404 like an absent one, not 503 (found by a review).
func TestBadReleasePathsAre404(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(testRelease(t, "1.0.0")); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.StripPrefix("/releases", s.Handler(nil)))
	defer srv.Close()
	for p, want := range map[string]int{
		"/releases/vitrine/1.0.0":                       http.StatusOK,
		"/releases/vitrine/2.0.0":                       http.StatusNotFound,
		"/releases/vitrine/" + strings.Repeat("9", 300): http.StatusNotFound,
	} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || strings.Contains(string(b), dir) {
			t.Errorf("GET %.60s: %d %s; want %d without the store's path", p, resp.StatusCode, b, want)
		}
	}
}
