package tufrepo

import (
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadPathsAre404: a path the repository cannot hold (under a file, a
// name too long, absent) is 404, not a 503 that clients and caches would
// read as an outage (found by a review).
func TestBadPathsAre404(t *testing.T) {
	tr := newTestRepo(t, Expiry{})
	if err := tr.addRelease("vitrine", "1.0.0", 3, map[string][]byte{"bin": []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	var file string
	filepath.WalkDir(filepath.Join(tr.dir, "targets"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && file == "" {
			file, _ = filepath.Rel(filepath.Join(tr.dir, "targets"), p)
		}
		return nil
	})
	if file == "" {
		t.Fatal("no target file")
	}
	get := func(p string) (int, string) {
		resp, err := http.Get(tr.url() + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	if status, _ := get("/targets/" + filepath.ToSlash(file)); status != http.StatusOK {
		t.Fatalf("the target itself: %d", status)
	}
	for _, p := range []string{"/targets/" + filepath.ToSlash(file) + "/x", "/targets/" + strings.Repeat("a", 300), "/targets/vitrine/nonexistent"} {
		if status, body := get(p); status != http.StatusNotFound || strings.Contains(body, tr.dir) {
			t.Errorf("GET %.60s: %d %s; want 404 without the repository's path", p, status, body)
		}
	}
}
