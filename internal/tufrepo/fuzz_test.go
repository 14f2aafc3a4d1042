package tufrepo

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// FuzzRootPost posts arbitrary bodies to /updates/root with the operator's
// token: each is refused with a 4xx and leaves the repository as it was.
func FuzzRootPost(f *testing.F) {
	tr := newTestRepo(f, Expiry{})
	cur := tr.repo.LatestRoot()
	keys, err := LoadRootKeys(tr.offline)
	if err != nil {
		f.Fatal(err)
	}
	// Seeds: roots that parse but must not be taken.
	strangers, err := NewRootKeys(f.TempDir(), 2)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(cur)
	v2, err := Rotate(Rotation{Current: cur, Keys: keys})
	if err != nil {
		f.Fatal(err)
	}
	v3, err := Rotate(Rotation{Current: v2, Keys: keys})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(v3)
	f.Add(bytes.Replace(v2, []byte(`"version": 2`), []byte(`"version": 3`), 1))
	f.Add(bytes.Replace(v2, []byte(`"consistent_snapshot": true`), []byte(`"consistent_snapshot": false`), 1))
	f.Add([]byte(`{"signed":{"_type":"root"},"signatures":[]}`))
	f.Add([]byte(`{}`))
	other, err := Rotate(Rotation{Current: cur, Keys: keys, NewKeys: strangers})
	if err != nil {
		f.Fatal(err)
	}
	// Signed by the new keys only: the old threshold is missing.
	f.Add(stripTo(other, 2))
	before := tr.repo.LatestRoot()
	h := tr.routes()
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/updates/root", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code < 400 || rec.Code > 499 {
			t.Fatalf("POST %q: %d %s", body, rec.Code, rec.Body)
		}
		if !bytes.Equal(tr.repo.LatestRoot(), before) {
			t.Fatal("a refused root changed the repository")
		}
	})
}

// stripTo keeps the last n signatures of a root.
func stripTo(b []byte, n int) []byte {
	root, err := metadata.Root().FromBytes(b)
	if err != nil {
		panic(err)
	}
	root.Signatures = root.Signatures[len(root.Signatures)-n:]
	out, err := root.ToBytes(true)
	if err != nil {
		panic(err)
	}
	return out
}
