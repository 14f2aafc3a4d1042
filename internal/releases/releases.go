// Package releases keeps the published releases of a deployment on disk and
// serves them under /releases/: for each release its artifacts, the
// archived source, the signed provenance (a DSSE envelope) and its
// release-log entry, so that anyone can fetch what `vitrine release
// verify` checks.
//
// Layout under the directory:
//
//	<name>/<version>/release.json     the release-log entry, as logged
//	<name>/<version>/provenance.json  the DSSE envelope
//	<name>/<version>/source.tar.gz    the archived source
//	<name>/<version>/artifacts/<file> each artifact
//
// A release is published whole or not at all: it is written to a
// temporary directory, synced, and renamed into place.
package releases

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/release"
)

// Store is the directory of published releases.
type Store struct {
	dir string
}

// Open returns the store in dir, creating it.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("opening releases: %w", err)
	}
	return &Store{dir: dir}, nil
}

// Release is one release to publish.
type Release struct {
	// Entry is the release-log entry, exactly as logged.
	Entry []byte
	// Envelope is the signed provenance.
	Envelope []byte
	// Source is the archived source (a deterministic .tar.gz).
	Source []byte
	// Artifacts are the files, by name.
	Artifacts map[string][]byte
	// Index is the entry's index in the release log.
	Index uint64
}

// ErrExists means a release with that name and version is published.
var ErrExists = errors.New("release already published")

// Publish writes r. The entry must parse and name exactly r's artifacts
// with their digests, and bind r's envelope.
func (s *Store) Publish(r *Release) error {
	e, err := release.ParseEntry(r.Entry)
	if err != nil {
		return err
	}
	if e.Envelope != release.Digest(r.Envelope) {
		return errors.New("the entry does not bind this envelope")
	}
	if len(e.Artifacts) != len(r.Artifacts) {
		return fmt.Errorf("the entry names %d artifacts, the release has %d", len(e.Artifacts), len(r.Artifacts))
	}
	for _, a := range e.Artifacts {
		b, ok := r.Artifacts[a.Name]
		if !ok || release.Digest(b) != "sha256:"+a.SHA256 {
			return fmt.Errorf("artifact %s is missing or differs from the entry", a.Name)
		}
		if !validFile(a.Name) {
			return fmt.Errorf("artifact name %q cannot be a file name", a.Name)
		}
	}
	if !validFile(e.Name) || !validFile(e.Version) {
		return fmt.Errorf("release %q %q cannot be file names", e.Name, e.Version)
	}
	final := filepath.Join(s.dir, e.Name, e.Version)
	if _, err := os.Stat(final); err == nil {
		return fmt.Errorf("%w: %s %s", ErrExists, e.Name, e.Version)
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(final), ".publish-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	meta, _ := json.Marshal(struct {
		Index uint64 `json:"log_index"`
	}{r.Index})
	files := map[string][]byte{"release.json": r.Entry, "provenance.json": r.Envelope, "source.tar.gz": r.Source, "log_index.json": meta}
	for n, b := range r.Artifacts {
		files["artifacts/"+n] = b
	}
	for n, b := range files {
		p := filepath.Join(tmp, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := atomicfile.Write(p, b, 0o644); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(final))
}

func validFile(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00") && !strings.HasPrefix(s, ".")
}

// Exists reports whether a release with that name and version is
// published.
func (s *Store) Exists(name, version string) bool {
	if !validFile(name) || !validFile(version) {
		return false
	}
	_, err := os.Stat(filepath.Join(s.dir, name, version))
	return err == nil
}

// Load reads a published release back, as it was published.
func (s *Store) Load(name, version string) (*Release, error) {
	if !validFile(name) || !validFile(version) {
		return nil, fmt.Errorf("release %q %q cannot be file names", name, version)
	}
	dir := filepath.Join(s.dir, name, version)
	r := &Release{Artifacts: map[string][]byte{}}
	var meta []byte
	for n, dst := range map[string]*[]byte{"release.json": &r.Entry, "provenance.json": &r.Envelope, "source.tar.gz": &r.Source, "log_index.json": &meta} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, fmt.Errorf("loading %s %s: %w", name, version, err)
		}
		*dst = b
	}
	var m struct {
		Index *uint64 `json:"log_index"`
	}
	if err := json.Unmarshal(meta, &m); err != nil || m.Index == nil {
		return nil, fmt.Errorf("loading %s %s: log_index.json holds no log index", name, version)
	}
	r.Index = *m.Index
	e, err := release.ParseEntry(r.Entry)
	if err != nil {
		return nil, fmt.Errorf("loading %s %s: %w", name, version, err)
	}
	if e.Name != name || e.Version != version {
		return nil, fmt.Errorf("loading %s %s: its entry is of %s %s", name, version, e.Name, e.Version)
	}
	for _, a := range e.Artifacts {
		b, err := os.ReadFile(filepath.Join(dir, "artifacts", a.Name))
		if err != nil {
			return nil, fmt.Errorf("loading %s %s: %w", name, version, err)
		}
		if release.Digest(b) != "sha256:"+a.SHA256 {
			return nil, fmt.Errorf("loading %s %s: artifact %s differs from its entry", name, version, a.Name)
		}
		r.Artifacts[a.Name] = b
	}
	return r, nil
}

// Listed is one release in the index.
type Listed struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	URL      string `json:"url"` // relative to /releases/
	LogIndex uint64 `json:"log_index"`
}

// List returns every published release, by name and version.
func (s *Store) List() ([]Listed, error) {
	var out []Listed
	names, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if !n.IsDir() || !validFile(n.Name()) {
			continue
		}
		versions, err := os.ReadDir(filepath.Join(s.dir, n.Name()))
		if err != nil {
			return nil, err
		}
		for _, v := range versions {
			if !v.IsDir() || !validFile(v.Name()) {
				continue
			}
			l := Listed{Name: n.Name(), Version: v.Name(), URL: n.Name() + "/" + v.Name() + "/"}
			if b, err := os.ReadFile(filepath.Join(s.dir, n.Name(), v.Name(), "log_index.json")); err == nil {
				var m struct {
					Index uint64 `json:"log_index"`
				}
				if json.Unmarshal(b, &m) == nil {
					l.LogIndex = m.Index
				}
			}
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b Listed) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Version, b.Version)
	})
	return out, nil
}

// Handler serves the releases, relative to /releases: GET / lists them
// (JSON), GET /<name>/<version>/<file> serves a file. Everything is public.
func (s *Store) Handler() http.Handler {
	files := http.FileServerFS(os.DirFS(s.dir))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			httpapi.Error(w, http.StatusMethodNotAllowed, "releases are read-only")
			return
		}
		p := path.Clean("/" + r.URL.Path)
		if p == "/" {
			l, err := s.List()
			if err != nil {
				httpapi.Unavailable(w, 0, "listing releases failed")
				return
			}
			httpapi.JSON(w, struct {
				Releases []Listed `json:"releases"`
			}{l})
			return
		}
		for _, part := range strings.Split(strings.Trim(p, "/"), "/") {
			if strings.HasPrefix(part, ".") {
				httpapi.Error(w, http.StatusNotFound, "no such release file")
				return
			}
		}
		if fi, err := fs.Stat(os.DirFS(s.dir), strings.TrimPrefix(p, "/")); err != nil || fi.IsDir() {
			httpapi.Error(w, http.StatusNotFound, "no such release file; GET /releases/ lists the releases")
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=300")
		r2 := r.Clone(r.Context())
		r2.URL.Path = p
		files.ServeHTTP(w, r2)
	})
}
