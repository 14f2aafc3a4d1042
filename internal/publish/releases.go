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
package publish

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/internal/fault"
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
var ErrExists = fault.New(fault.ErrConflict, "release already published")

// Publish writes r. The entry must parse and name exactly r's artifacts
// with their digests, and bind r's envelope. A staged release of the same
// name and version (see [Store.Stage]) is removed once r is published.
func (s *Store) Publish(r *Release) error {
	e, err := check(r)
	if err != nil {
		return err
	}
	final := filepath.Join(s.dir, e.Name, e.Version)
	if _, err := os.Stat(final); err == nil {
		return fmt.Errorf("%w: %s %s", ErrExists, e.Name, e.Version)
	}
	if err := writeRelease(final, r, true); err != nil {
		return err
	}
	return s.Unstage(e.Name, e.Version)
}

// check checks that r's entry parses and names exactly r's artifacts with
// their digests, binds r's envelope, and that names and versions can be
// file names.
func check(r *Release) (*release.Entry, error) {
	e, err := release.ParseEntry(r.Entry)
	if err != nil {
		return nil, err
	}
	if e.Envelope != release.Digest(r.Envelope) {
		return nil, errors.New("the entry does not bind this envelope")
	}
	if len(e.Artifacts) != len(r.Artifacts) {
		return nil, fmt.Errorf("the entry names %d artifacts, the release has %d", len(e.Artifacts), len(r.Artifacts))
	}
	for _, a := range e.Artifacts {
		b, ok := r.Artifacts[a.Name]
		if !ok || release.Digest(b) != "sha256:"+a.SHA256 {
			return nil, fmt.Errorf("artifact %s is missing or differs from the entry", a.Name)
		}
		if !validFile(a.Name) {
			return nil, fmt.Errorf("artifact name %q cannot be a file name", a.Name)
		}
	}
	if !validFile(e.Name) || !validFile(e.Version) {
		return nil, fmt.Errorf("release %q %q cannot be file names", e.Name, e.Version)
	}
	return e, nil
}

// writeRelease writes r's files (and, if withIndex, log_index.json) to a
// temporary directory beside final, syncs them, and renames it to final,
// which must not exist.
func writeRelease(final string, r *Release, withIndex bool) error {
	if err := atomicfile.MkdirAll(filepath.Dir(final)); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(final), ".publish-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	files := map[string][]byte{"release.json": r.Entry, "provenance.json": r.Envelope, "source.tar.gz": r.Source}
	if withIndex {
		files["log_index.json"] = indexJSON(r.Index)
	}
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
	if err := atomicfile.SyncDir(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(final))
}

func indexJSON(i uint64) []byte {
	b, _ := json.Marshal(struct {
		Index uint64 `json:"log_index"`
	}{i})
	return b
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
	r, logged, err := readRelease(filepath.Join(s.dir, name, version), name, version)
	if err == nil && !logged {
		err = errors.New("log_index.json holds no log index")
	}
	if err != nil {
		return nil, fmt.Errorf("loading %s %s: %w", name, version, err)
	}
	return r, nil
}

// readRelease reads the release of name and version written to dir by
// writeRelease, checking it as Publish does, and reports whether it has
// its log index.
func readRelease(dir, name, version string) (*Release, bool, error) {
	r := &Release{Artifacts: map[string][]byte{}}
	for n, dst := range map[string]*[]byte{"release.json": &r.Entry, "provenance.json": &r.Envelope, "source.tar.gz": &r.Source} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, false, err
		}
		*dst = b
	}
	e, err := release.ParseEntry(r.Entry)
	if err != nil {
		return nil, false, err
	}
	if e.Name != name || e.Version != version {
		return nil, false, fmt.Errorf("its entry is of %s %s", e.Name, e.Version)
	}
	for _, a := range e.Artifacts {
		if !validFile(a.Name) {
			return nil, false, fmt.Errorf("artifact name %q cannot be a file name", a.Name)
		}
		b, err := os.ReadFile(filepath.Join(dir, "artifacts", a.Name))
		if err != nil {
			return nil, false, err
		}
		r.Artifacts[a.Name] = b
	}
	if _, err := check(r); err != nil {
		return nil, false, fmt.Errorf("%w (its files changed on disk)", err)
	}
	meta, err := os.ReadFile(filepath.Join(dir, "log_index.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return r, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var m struct {
		Index *uint64 `json:"log_index"`
	}
	if err := json.Unmarshal(meta, &m); err != nil || m.Index == nil {
		return nil, false, errors.New("log_index.json holds no log index")
	}
	r.Index = *m.Index
	return r, true, nil
}

// Staging. Publish needs the release log's entry to be witnessed before
// it writes a release, and an entry once appended cannot be taken back. So
// the platform stages a release before it appends its entry, and records
// the entry's index right after. A publish that fails after the append
// (the witness, the disk, a crash) is then finished with the same entry by
// the next publish of that release, instead of logging it a second time.
// Staged releases are under <dir>/.pending/<name>/<version>/, laid out as
// published ones, and are never served.

func (s *Store) stagePath(name, version string) string {
	return filepath.Join(s.dir, ".pending", name, version)
}

// Stage keeps r, without its index, as the staged release of its name and
// version, replacing one staged before.
func (s *Store) Stage(r *Release) error {
	e, err := check(r)
	if err != nil {
		return err
	}
	if err := s.Unstage(e.Name, e.Version); err != nil {
		return err
	}
	return writeRelease(s.stagePath(e.Name, e.Version), r, false)
}

// Logged records that the staged release with this entry is the release
// log's entry index. The stage must hold exactly that entry.
func (s *Store) Logged(entry []byte, index uint64) error {
	e, err := release.ParseEntry(entry)
	if err != nil {
		return err
	}
	if !validFile(e.Name) || !validFile(e.Version) {
		return fmt.Errorf("release %q %q cannot be file names", e.Name, e.Version)
	}
	dir := s.stagePath(e.Name, e.Version)
	staged, err := os.ReadFile(filepath.Join(dir, "release.json"))
	if err != nil {
		return fmt.Errorf("recording the log index of %s %s: %w", e.Name, e.Version, err)
	}
	if !bytes.Equal(staged, entry) {
		return fmt.Errorf("recording the log index of %s %s: the stage holds another entry", e.Name, e.Version)
	}
	return atomicfile.Write(filepath.Join(dir, "log_index.json"), indexJSON(index), 0o644)
}

// Staged returns the staged release of name and version, and whether its
// entry is logged (then its Index is the entry's); nil if none is staged.
// A stage that cannot be read and was never logged (a stage or removal
// cut short) is removed and reported as none: nothing of it was logged.
// One that was logged and cannot be read is an error: publishing it
// again would log it twice.
func (s *Store) Staged(name, version string) (*Release, bool, error) {
	if !validFile(name) || !validFile(version) {
		return nil, false, nil
	}
	dir := s.stagePath(name, version)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	r, logged, err := readRelease(dir, name, version)
	if err != nil {
		if _, ierr := os.Stat(filepath.Join(dir, "log_index.json")); errors.Is(ierr, fs.ErrNotExist) {
			return nil, false, s.Unstage(name, version)
		}
		return nil, false, fmt.Errorf("staged release %s %s: %w", name, version, err)
	}
	return r, logged, nil
}

// Unstage removes the staged release of name and version, if any: renamed
// out of the way first, so that a removal cut short leaves no partial
// stage under its name.
func (s *Store) Unstage(name, version string) error {
	if !validFile(name) || !validFile(version) {
		return nil
	}
	dir := s.stagePath(name, version)
	gone := filepath.Join(filepath.Dir(dir), ".removing-"+version)
	if err := os.RemoveAll(gone); err != nil {
		return err
	}
	if err := os.Rename(dir, gone); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	if err := atomicfile.SyncDir(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.RemoveAll(gone); err != nil {
		return err
	}
	// The name's folder goes with its last staged version; one that
	// still holds another stays (Remove refuses a folder that is not
	// empty).
	_ = os.Remove(filepath.Dir(dir))
	return nil
}

// StagedLogged returns the staged releases whose entries are logged (see
// Staged), in log order.
func (s *Store) StagedLogged() ([]*Release, error) {
	var out []*Release
	names, err := os.ReadDir(filepath.Join(s.dir, ".pending"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if !n.IsDir() || !validFile(n.Name()) {
			continue
		}
		versions, err := os.ReadDir(filepath.Join(s.dir, ".pending", n.Name()))
		if err != nil {
			return nil, err
		}
		for _, v := range versions {
			if !v.IsDir() {
				continue
			}
			r, logged, err := s.Staged(n.Name(), v.Name())
			if err != nil {
				return nil, err
			}
			if logged {
				out = append(out, r)
			}
		}
	}
	slices.SortFunc(out, func(a, b *Release) int { return cmp.Compare(a.Index, b.Index) })
	return out, nil
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
	out := []Listed{}
	names, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, err)
	}
	for _, n := range names {
		if !n.IsDir() || !validFile(n.Name()) {
			continue
		}
		versions, err := os.ReadDir(filepath.Join(s.dir, n.Name()))
		if err != nil {
			return nil, fault.Mark(fault.ErrUnavailable, err)
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

// ReleaseFile is one file of a published release, as GET
// /releases/<name>/<version>/ lists it.
type ReleaseFile struct {
	Path  string `json:"path"` // relative to the release, e.g. artifacts/vitrine_linux_amd64
	Size  int64  `json:"size"`
	About string `json:"about"`
}

// ReleaseIndex is the answer to GET /releases/<name>/<version>/.
type ReleaseIndex struct {
	Name     string        `json:"name"`
	Version  string        `json:"version"`
	LogIndex uint64        `json:"log_index"`
	Files    []ReleaseFile `json:"files"`
}

// serveRelease lists the files of one release.
func (s *Store) serveRelease(w http.ResponseWriter, name, version string, logger *slog.Logger) {
	if !validFile(name) || !validFile(version) {
		httpapi.Error(w, http.StatusNotFound, "no such release; GET /releases/ lists the releases")
		return
	}
	dir := filepath.Join(s.dir, name, version)
	entry, err := os.ReadFile(filepath.Join(dir, "release.json"))
	if err != nil {
		httpapi.Fail(w, logger, fault.File(err, "no such release; GET /releases/ lists the releases"), "reading release "+name+" "+version)
		return
	}
	idx := ReleaseIndex{Name: name, Version: version}
	if b, err := os.ReadFile(filepath.Join(dir, "log_index.json")); err == nil {
		var m struct {
			Index uint64 `json:"log_index"`
		}
		if json.Unmarshal(b, &m) == nil {
			idx.LogIndex = m.Index
		}
	}
	add := func(rel, about string) {
		if fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(rel))); err == nil && fi.Mode().IsRegular() {
			idx.Files = append(idx.Files, ReleaseFile{Path: rel, Size: fi.Size(), About: about})
		}
	}
	add("release.json", "the release-log entry, byte for byte as logged: prove it with vitrine log prove --log release")
	add("provenance.json", "the signed SLSA provenance (DSSE envelope)")
	add("source.tar.gz", "the archived source the release was built from")
	if e, err := release.ParseEntry(entry); err == nil {
		for _, a := range e.Artifacts {
			add("artifacts/"+a.Name, "an artifact, sha256:"+a.SHA256)
		}
	}
	httpapi.JSON(w, idx)
}

// Handler serves the releases, relative to /releases: GET / lists them
// (JSON), GET /<name>/<version>/ lists a release's files (JSON), GET
// /<name>/<version>/<file> serves a file. Everything is public.
func (s *Store) Handler(logger *slog.Logger) http.Handler {
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
				httpapi.Fail(w, logger, err, "listing releases failed")
				return
			}
			httpapi.JSON(w, struct {
				Releases []Listed `json:"releases"`
			}{l})
			return
		}
		parts := strings.Split(strings.Trim(p, "/"), "/")
		for _, part := range parts {
			if strings.HasPrefix(part, ".") {
				httpapi.Error(w, http.StatusNotFound, "no such release file")
				return
			}
		}
		if len(parts) == 2 {
			s.serveRelease(w, parts[0], parts[1], logger)
			return
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
