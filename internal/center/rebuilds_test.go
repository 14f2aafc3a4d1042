package center

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/internal/rebuilder"
	"github.com/vitrine-dev/vitrine/rebuild"
	"github.com/vitrine-dev/vitrine/release"
)

// standIn is a rebuilder's public side as internal/rebuilder serves it
// (GET /rebuilds/ lists the verdicts, each a signed DSSE envelope), with
// verdicts the test signs with rebuild.Sign: the rebuilds themselves are
// internal/rebuilder's tests.
type standIn struct {
	*httptest.Server
	key   *release.Ed25519Key
	mu    sync.Mutex
	index rebuilder.Index
	files map[string][]byte
}

func newRebuilder(t *testing.T) *standIn {
	t.Helper()
	key, err := release.LoadOrCreateKey(filepath.Join(t.TempDir(), "rebuilder.key"))
	if err != nil {
		t.Fatal(err)
	}
	s := &standIn{key: key, files: map[string][]byte{}, index: rebuilder.Index{Rebuilder: "https://rebuilder.example", Key: "key", Verdicts: []rebuilder.Listed{}}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if r.URL.Path == "/rebuilds/" {
			json.NewEncoder(w).Encode(s.index)
			return
		}
		b, ok := s.files[strings.TrimPrefix(r.URL.Path, "/rebuilds/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

// pin is the rebuilder as a Center is given it: its URL and its key.
func (s *standIn) pin(t *testing.T) Rebuilder {
	rb, err := ParseRebuilder(s.URL+","+"key.pem", func(string) ([]byte, error) { return release.PublicKey(s.key.Public().(ed25519.PublicKey)).PEM(), nil })
	if err != nil {
		t.Fatal(err)
	}
	return rb
}

// judge signs, with key, a verdict on the release name version, logged
// at index in p's release log: the rebuilt artifacts are the release's,
// but for those in differ.
func (s *standIn) judge(t *testing.T, p *platform.Platform, key *release.Ed25519Key, name, version string, index uint64, differ ...string) {
	t.Helper()
	_, body := get(t, fmt.Sprintf("%s/releases/%s/%s/release.json", p.URL(), name, version), "")
	entry := []byte(body)
	e, err := release.ParseEntry(entry)
	if err != nil {
		t.Fatal(err)
	}
	expected, rebuilt := map[string]string{}, map[string]string{}
	for _, a := range e.Artifacts {
		expected[a.Name], rebuilt[a.Name] = "sha256:"+a.SHA256, "sha256:"+a.SHA256
	}
	for _, d := range differ {
		rebuilt[d] = "sha256:" + strings.Repeat("e", 64)
	}
	pr := &rebuild.Predicate{Release: rebuild.Release{Name: name, Version: version, LogIndex: index, Entry: release.Digest(entry), Envelope: e.Envelope},
		Source: "sha256:" + strings.Repeat("5", 64), Toolchain: rebuild.Toolchain{Original: "go1.26.8", Rebuild: "go1.26.8"},
		Rebuilder: "https://rebuilder.example", Started: time.Now().Add(-time.Minute).UTC().Truncate(time.Second), Finished: time.Now().UTC().Truncate(time.Second)}
	pr.Compare(expected, rebuilt)
	env, err := rebuild.Sign(context.Background(), key, e.Artifacts, pr)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	file := name + "/" + version + ".json"
	s.files[file] = env
	s.index.Verdicts = append(s.index.Verdicts, rebuilder.Listed{Name: name, Version: version, LogIndex: index, Reproduced: pr.Reproduced, URL: file})
}
