// Package rebuildertest serves a rebuilder's public side for the tests of
// its readers (the monitor, the Transparency Center): GET /rebuilds/ lists
// the verdicts and each is a signed DSSE envelope, as internal/rebuilder
// serves them, but the verdicts are ones the test signs with rebuild.Sign.
// The rebuilds themselves are internal/rebuilder's tests.
package rebuildertest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/rebuilder"
	"github.com/vitrine-dev/vitrine/rebuild"
	"github.com/vitrine-dev/vitrine/release"
)

// Server is a rebuilder's /rebuilds/, closed when the test ends. It is
// safe for concurrent use.
type Server struct {
	*httptest.Server
	id    string
	mu    sync.Mutex
	index rebuilder.Index
	files map[string][]byte
}

// New serves the verdicts of the rebuilder whose id is id.
func New(t testing.TB, id string) *Server {
	t.Helper()
	s := &Server{id: id, files: map[string][]byte{}, index: rebuilder.Index{Rebuilder: id, Key: "key", Verdicts: []rebuilder.Listed{}}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
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
}

// Judge signs with key, and lists as the latest, a verdict on the
// release-log entry logged at index: the rebuilt artifacts are the
// entry's, but for those named in differ.
func (s *Server) Judge(t testing.TB, key release.Signer, entry []byte, index uint64, differ ...string) {
	t.Helper()
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
	p := &rebuild.Predicate{Release: rebuild.Release{Name: e.Name, Version: e.Version, LogIndex: index, Entry: release.Digest(entry), Envelope: e.Envelope},
		Source: "sha256:" + strings.Repeat("5", 64), Toolchain: rebuild.Toolchain{Original: "go1.26.8", Rebuild: "go1.26.8"},
		Rebuilder: s.id, Started: time.Now().Add(-time.Minute).UTC().Truncate(time.Second), Finished: time.Now().UTC().Truncate(time.Second)}
	p.Compare(expected, rebuilt)
	env, err := rebuild.Sign(context.Background(), key, e.Artifacts, p)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	file := e.Name + "/" + e.Version + ".json"
	s.files[file] = env
	s.index.Verdicts = append(s.index.Verdicts, rebuilder.Listed{Name: e.Name, Version: e.Version, LogIndex: index, Reproduced: p.Reproduced, URL: file})
}
