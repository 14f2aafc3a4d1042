package tufrepo

import (
	"cmp"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
)

var metadataName = regexp.MustCompile(`^(timestamp|[1-9][0-9]{0,17}\.(root|snapshot|targets))\.json$`)

// Handler serves the repository, read-only, with paths relative to its
// base URL (mount it under /updates/ with http.StripPrefix): the metadata
// at /<name>.json, the latest root at /root.json, and targets under
// /targets/. It serves nothing else from the directory (not the keys).
func (r *Repo) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			httpapi.Error(w, http.StatusMethodNotAllowed, "the update repository is read-only; a new root is POSTed to /updates/root")
			return
		}
		name := strings.TrimPrefix(req.URL.Path, "/")
		switch {
		case name == "":
			r.serveIndex(w)
		case name == "root.json":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-cache")
			_, _ = w.Write(r.LatestRoot())
		case metadataName.MatchString(name):
			cache := "public, max-age=31536000, immutable"
			if name == "timestamp.json" {
				cache = "no-cache"
			}
			r.serveFile(w, req, r.metaPath(name), "application/json", cache)
		case strings.HasPrefix(name, "targets/"):
			segs := strings.Split(strings.TrimPrefix(name, "targets/"), "/")
			for _, s := range segs {
				// Every segment is a release name, a version or a
				// hash-prefixed file: no dot files (temporary files
				// start with a dot), no "..".
				if s == "" || s[0] == '.' || strings.ContainsAny(s, "\\\x00") {
					httpapi.Error(w, http.StatusNotFound, "no such target: "+name)
					return
				}
			}
			r.serveFile(w, req, filepath.Join(r.dir, "targets", filepath.Join(segs...)), "application/octet-stream", "public, max-age=31536000, immutable")
		default:
			httpapi.Error(w, http.StatusNotFound, "no such file in the update repository: "+name+"; metadata is at <N>.root.json, timestamp.json, <N>.snapshot.json, <N>.targets.json, targets under targets/")
		}
	})
}

// Index is the answer to GET /updates/: what a person finds in the
// repository. TUF clients need none of it: they start from a trusted root
// and fetch timestamp.json.
type Index struct {
	About     string   `json:"about"`
	Root      string   `json:"root"`
	Timestamp string   `json:"timestamp"`
	Metadata  []string `json:"metadata"`
	Targets   string   `json:"targets"`
}

// serveIndex lists the metadata files, newest version of each role last.
func (r *Repo) serveIndex(w http.ResponseWriter) {
	entries, err := os.ReadDir(filepath.Join(r.dir, "metadata"))
	if err != nil {
		httpapi.Fail(w, r.logger, fault.Mark(fault.ErrUnavailable, err), "listing the update repository failed")
		return
	}
	idx := Index{
		About:     "a TUF repository with consistent snapshots: clients start from the root in the discovery document, then fetch timestamp.json, the snapshot and the targets it names, and targets/NAME/VERSION/SHA256.FILE; vitrine agent update and go-tuf's client do this",
		Root:      "root.json",
		Timestamp: "timestamp.json",
		Metadata:  []string{},
		Targets:   "targets/",
	}
	for _, e := range entries {
		if metadataName.MatchString(e.Name()) {
			idx.Metadata = append(idx.Metadata, e.Name())
		}
	}
	slices.SortFunc(idx.Metadata, func(a, b string) int {
		ra, va := metadataOrder(a)
		rb, vb := metadataOrder(b)
		if c := strings.Compare(ra, rb); c != 0 {
			return c
		}
		return cmp.Compare(va, vb)
	})
	w.Header().Set("Cache-Control", "no-cache")
	httpapi.JSON(w, idx)
}

// metadataOrder splits "12.targets.json" into its role and version.
func metadataOrder(name string) (string, uint64) {
	v, role, ok := strings.Cut(strings.TrimSuffix(name, ".json"), ".")
	if !ok {
		return v, 0
	}
	n, _ := strconv.ParseUint(v, 10, 64)
	return role, n
}

func (r *Repo) serveFile(w http.ResponseWriter, req *http.Request, path, contentType, cache string) {
	f, err := os.Open(path)
	if err != nil {
		httpapi.Fail(w, r.logger, fault.File(err, "no such file in the update repository"), "reading "+strings.TrimPrefix(req.URL.Path, "/"))
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		httpapi.Error(w, http.StatusNotFound, "no such file in the update repository: "+strings.TrimPrefix(req.URL.Path, "/"))
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
	w.Header().Set("Cache-Control", cache)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if req.Method == http.MethodHead {
		return
	}
	_, _ = io.Copy(w, f)
}

// RootHandler takes a new root: POST with the signed root.json as body,
// authorized (the operator) only. It answers 200 with the new version;
// 401 without authorization; 400 for a body that is not a TUF root; 403
// for a root that does not chain from the current one; 409 for a root
// that names a key the platform does not hold. On any error nothing
// changed.
func (r *Repo) RootHandler(authorized func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !authorized(req) {
			httpapi.Unauthorized(w, "posting a TUF root needs the operator's bearer token")
			return
		}
		body, ok := httpapi.ReadLimited(w, req, MaxRootSize)
		if !ok {
			return
		}
		v, err := r.SetRoot(req.Context(), body)
		switch {
		case errors.Is(err, ErrKeyNotHeld):
			httpapi.Fail(w, r.logger, err, "the root was not taken (put a new targets key in <data>/updates/targets.key before posting the root that names it)")
		case err != nil:
			// Not chaining 403, not a root 400; anything else 500,
			// logged, not told.
			httpapi.Fail(w, r.logger, err, "the root was not taken")
		default:
			httpapi.JSON(w, struct {
				Version int64 `json:"version"`
			}{v})
		}
	})
}
