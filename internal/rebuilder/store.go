package rebuilder

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/rebuild"
	"github.com/vitrine-dev/vitrine/release"
)

// Listed is one verdict in the index.
type Listed struct {
	Name       string `json:"name"`
	Version    string `json:"version"`
	LogIndex   uint64 `json:"log_index"`
	Reproduced bool   `json:"reproduced"`
	// URL is the verdict's address relative to /rebuilds/.
	URL string `json:"url"`
	// file is the verdict's path relative to the verdicts directory.
	file string
}

// Index is what GET /rebuilds/ answers and index.json holds.
type Index struct {
	// Rebuilder is the rebuilder's id, as its verdicts name it.
	Rebuilder string `json:"rebuilder"`
	// Key is where the public key that verifies the verdicts is,
	// relative to /rebuilds/.
	Key string `json:"key"`
	// Verdicts are sorted by log index.
	Verdicts []Listed `json:"verdicts"`
}

// verdictFile is where the verdict of entry index of name and version
// lives, relative to the verdicts directory, and its URL relative to
// /rebuilds/: <name>/<version>.json, unless an earlier entry of the log
// already holds that name and version (a platform that logged a release
// twice); then .log/<index>.json, which no name can take since names
// never start with a dot.
func verdictFile(idx *Index, name, version string, index uint64) (file, u string) {
	file, u = name+"/"+version+".json", url.PathEscape(name)+"/"+url.PathEscape(version)+".json"
	for _, l := range idx.Verdicts {
		if l.file == file && l.LogIndex != index {
			n := strconv.FormatUint(index, 10)
			return ".log/" + n + ".json", ".log/" + n + ".json"
		}
	}
	return file, u
}

// validFile reports whether s can be one path element of a verdict's
// file: what the platform's release store accepts too.
func validFile(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00") && !strings.HasPrefix(s, ".")
}

func (r *Rebuilder) indexPath() string   { return filepath.Join(r.Dir, "index.json") }
func (r *Rebuilder) verdictsDir() string { return filepath.Join(r.Dir, "verdicts") }
func (r *Rebuilder) statePath() string   { return filepath.Join(r.Dir, "state.json") }
func (r *Rebuilder) publicKey() []byte {
	return release.PublicKey(r.Key.Public().(ed25519.PublicKey)).PEM()
}
func (l *Listed) path(dir string) string { return filepath.Join(dir, filepath.FromSlash(l.file)) }
func (idx *Index) find(i uint64) *Listed { return findIndex(idx.Verdicts, i) }

func findIndex(ls []Listed, i uint64) *Listed {
	for k := range ls {
		if ls[k].LogIndex == i {
			return &ls[k]
		}
	}
	return nil
}

// loadIndex reads index.json; a missing one is an empty index.
func (r *Rebuilder) loadIndex() (*Index, error) {
	idx := &Index{Rebuilder: r.id(), Key: "key", Verdicts: []Listed{}}
	b, err := os.ReadFile(r.indexPath())
	if errors.Is(err, fs.ErrNotExist) {
		return idx, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the verdict index: %w", fault.Mark(fault.ErrUnavailable, err))
	}
	var onDisk struct {
		Index
		Files []string `json:"files"`
	}
	if err := httpapi.DecodeStrict(b, &onDisk); err != nil {
		return nil, fmt.Errorf("reading the verdict index %s: corrupt: %w", r.indexPath(), err)
	}
	if len(onDisk.Files) != len(onDisk.Verdicts) {
		return nil, fmt.Errorf("reading the verdict index %s: corrupt: %d files for %d verdicts", r.indexPath(), len(onDisk.Files), len(onDisk.Verdicts))
	}
	idx.Verdicts = onDisk.Verdicts
	for i := range idx.Verdicts {
		idx.Verdicts[i].file = onDisk.Files[i]
	}
	return idx, nil
}

// saveIndex replaces index.json. The files of the verdicts are kept beside
// the public listing, which does not show them.
func (r *Rebuilder) saveIndex(idx *Index) error {
	files := make([]string, len(idx.Verdicts))
	for i, l := range idx.Verdicts {
		files[i] = l.file
	}
	b, err := jsonIndent(struct {
		*Index
		Files []string `json:"files"`
	}{idx, files})
	if err != nil {
		return err
	}
	return atomicfile.Write(r.indexPath(), b, 0o644)
}

func jsonIndent(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	return append(b, '\n'), err
}

// store writes a verdict envelope, then the index that lists it. A verdict
// for a log index already listed replaces it.
func (r *Rebuilder) store(p *rebuild.Predicate, envelope []byte) (*Listed, error) {
	idx, err := r.loadIndex()
	if err != nil {
		return nil, err
	}
	rel := p.Release
	l := Listed{Name: rel.Name, Version: rel.Version, LogIndex: rel.LogIndex, Reproduced: p.Reproduced}
	if old := idx.find(rel.LogIndex); old != nil {
		l.file, l.URL = old.file, old.URL
	} else {
		l.file, l.URL = verdictFile(idx, rel.Name, rel.Version, rel.LogIndex)
	}
	if err := atomicfile.Write(l.path(r.verdictsDir()), envelope, 0o644); err != nil {
		return nil, fmt.Errorf("writing the verdict: %w", err)
	}
	idx.Verdicts = slices.DeleteFunc(idx.Verdicts, func(x Listed) bool { return x.LogIndex == rel.LogIndex })
	idx.Verdicts = append(idx.Verdicts, l)
	slices.SortFunc(idx.Verdicts, func(a, b Listed) int { return cmpUint(a.LogIndex, b.LogIndex) })
	if err := r.saveIndex(idx); err != nil {
		return nil, fmt.Errorf("writing the verdict index: %w", err)
	}
	return &l, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Handler serves the verdicts under /rebuilds/: GET /rebuilds/ is the
// [Index] (JSON), GET /rebuilds/key the rebuilder's public key (PEM
// "PUBLIC KEY", as cosign and openssl read it), and the index's URLs the
// verdicts (DSSE envelopes). It reads the disk on every request, so it
// may run beside [Rebuilder.Follow].
func (r *Rebuilder) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			httpapi.Error(w, http.StatusMethodNotAllowed, "rebuild verdicts are read-only")
			return
		}
		p := path.Clean(req.URL.Path)
		switch {
		case p == "/rebuilds" || p == "/rebuilds/":
			idx, err := r.loadIndex()
			if err != nil {
				if fault.Kind(err) != nil { // one of no kind is Fail's incident, logged there
					r.logger().Error("serving the verdict index", "err", err)
				}
				httpapi.Fail(w, r.logger(), err, "reading the verdict index failed")
				return
			}
			w.Header().Set("Cache-Control", "no-cache")
			httpapi.JSON(w, idx)
			return
		case p == "/rebuilds/key":
			w.Header().Set("Content-Type", "application/x-pem-file")
			_, _ = w.Write(r.publicKey())
			return
		case !strings.HasPrefix(p, "/rebuilds/"):
			httpapi.Error(w, http.StatusNotFound, "not found; GET /rebuilds/ lists the verdicts")
			return
		}
		rel := strings.TrimPrefix(p, "/rebuilds/")
		idx, err := r.loadIndex()
		if err != nil {
			httpapi.Fail(w, r.logger(), err, "reading the verdict index failed")
			return
		}
		for _, l := range idx.Verdicts {
			if u, err := url.PathUnescape(l.URL); err != nil || u != rel {
				continue
			}
			b, err := os.ReadFile(l.path(r.verdictsDir()))
			if err != nil {
				httpapi.Fail(w, r.logger(), fault.Mark(fault.ErrUnavailable, err), "reading the verdict failed")
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-cache")
			_, _ = w.Write(b)
			return
		}
		httpapi.Error(w, http.StatusNotFound, "no verdict for "+rel+"; GET /rebuilds/ lists the verdicts")
	})
}

// VerdictURL resolves ref, a verdict's URL as an [Index] lists it, against
// the rebuilder whose base URL (the prefix of /rebuilds/) is base. A ref
// that leaves the rebuilder's /rebuilds/ (another host, an absolute URL,
// a path outside it) is an error: a rebuilder's verdicts come from it.
func VerdictURL(base, ref string) (string, error) {
	root, err := url.Parse(strings.TrimSuffix(base, "/") + "/rebuilds/")
	if err != nil {
		return "", fmt.Errorf("rebuilder %s: %w", base, err)
	}
	r, err := url.Parse(ref)
	var u *url.URL
	if err == nil {
		u = root.ResolveReference(r)
	}
	if err != nil || r.IsAbs() || r.Host != "" || u.Host != root.Host || !strings.HasPrefix(u.Path, root.Path) {
		return "", fmt.Errorf("rebuilder %s: verdict URL %q is not under its /rebuilds/", base, ref)
	}
	return u.String(), nil
}
