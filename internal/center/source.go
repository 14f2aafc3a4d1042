package center

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/release"
)

// Bounds on a release's source: what the Center downloads, unpacks, keeps
// and shows. Past them a page says what is too large instead of showing
// it.
const (
	// maxArchiveBytes is the largest source.tar.gz the Center downloads.
	maxArchiveBytes = 64 << 20
	// maxTreeFiles and maxTreeBytes bound an archive unpacked (in
	// memory): its entries and the bytes of its files.
	maxTreeFiles = 20_000
	maxTreeBytes = 128 << 20
	// maxPathBytes bounds an entry's name and symlink target (Linux's
	// PATH_MAX), maxTreeMeta all of them together, and maxTrailer what
	// may follow the tar's end inside the gzip stream.
	maxPathBytes = 4096
	maxTreeMeta  = 16 << 20
	maxTrailer   = 1 << 20
	// maxShowBytes and maxShowLines bound a file shown whole.
	maxShowBytes = 1 << 20
	maxShowLines = 20_000
	// maxCacheBytes bounds the unpacked sources (and rule databases)
	// kept in memory, by digest; two trees at their largest fit, for a
	// diff.
	maxCacheBytes = 2 * maxTreeBytes
)

// errTooLarge is wrapped by the error of a source past the bounds above.
var errTooLarge = errors.New("too large for this Center to show")

// sourceTree is a release's source archive, unpacked in memory: no path
// from the archive ever reaches the file system. It is immutable.
type sourceTree struct {
	digest string // hex SHA-256 of the archive
	files  map[string]*sourceFile
	paths  []string // sorted
	bytes  int64    // of every file
	// meta is the bytes of every name and symlink target, which are
	// kept too (bounded by maxTreeMeta).
	meta int64
}

// sourceFile is one entry of an archive: a regular file or a symlink.
type sourceFile struct {
	path   string
	mode   string // "file", "executable" or "symlink"
	link   string // a symlink's target, as written
	data   []byte
	sha256 string
}

// text reports whether f is shown as text: valid UTF-8 without NUL bytes.
func (f *sourceFile) text() bool {
	return f.mode != "symlink" && utf8.Valid(f.data) && bytes.IndexByte(f.data, 0) < 0
}

// cleanPath reports whether p is a clean, relative, slash-separated path
// that stays inside its root, as the conveyer writes them.
func cleanPath(p string) bool {
	return p != "" && p != "." && path.Clean(p) == p && !path.IsAbs(p) &&
		p != ".." && !strings.HasPrefix(p, "../") && !strings.ContainsAny(p, "\\\x00")
}

// readArchive unpacks a source archive (a gzipped tar of regular files
// and symlinks, as conveyer.Archive writes; directory entries are
// allowed and skipped) into memory, within the bounds above. Every name
// must be a clean relative path, named once, and no file may stand where
// another one's directory is.
func readArchive(digest string, archive []byte) (*sourceTree, error) {
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		return nil, fmt.Errorf("the source archive: %w", err)
	}
	t := &sourceTree{digest: digest, files: map[string]*sourceFile{}}
	dirs := map[string]bool{}
	tr := tar.NewReader(gz)
	for n := 0; ; n++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("the source archive: %w", err)
		}
		if n >= maxTreeFiles {
			return nil, fmt.Errorf("the source archive has more than %d entries: %w", maxTreeFiles, errTooLarge)
		}
		name := h.Name
		if h.Typeflag == tar.TypeDir {
			name = strings.TrimSuffix(name, "/")
		}
		if len(name) > maxPathBytes || len(h.Linkname) > maxPathBytes {
			return nil, fmt.Errorf("the source archive: an entry's name or link is longer than %d bytes", maxPathBytes)
		}
		if t.meta += int64(len(name) + len(h.Linkname)); t.meta > maxTreeMeta {
			return nil, fmt.Errorf("the source archive's names and links are more than %d MiB: %w", maxTreeMeta>>20, errTooLarge)
		}
		if !cleanPath(name) {
			return nil, fmt.Errorf("the source archive: entry %q is not a clean relative path", h.Name)
		}
		if t.files[name] != nil || dirs[name] {
			return nil, fmt.Errorf("the source archive: %s is named twice", name)
		}
		// Up to the first directory already known: its own were checked
		// then (so a deep name costs its depth once).
		for d := path.Dir(name); d != "." && !dirs[d]; d = path.Dir(d) {
			if t.files[d] != nil {
				return nil, fmt.Errorf("the source archive: %s is a file and a directory", d)
			}
			dirs[d] = true
		}
		f := &sourceFile{path: name, mode: "file"}
		switch h.Typeflag {
		case tar.TypeDir:
			dirs[name] = true
			continue
		case tar.TypeReg:
			if h.Size < 0 || h.Size > maxTreeBytes-t.bytes {
				return nil, fmt.Errorf("the source archive unpacks to more than %d MiB: %w", maxTreeBytes>>20, errTooLarge)
			}
			f.data = make([]byte, h.Size)
			if _, err := io.ReadFull(tr, f.data); err != nil {
				return nil, fmt.Errorf("the source archive: %s: %w", name, err)
			}
			t.bytes += h.Size
			if h.Mode&0o111 != 0 {
				f.mode = "executable"
			}
		case tar.TypeSymlink:
			f.mode, f.link = "symlink", h.Linkname
		default:
			return nil, fmt.Errorf("the source archive: entry %q is neither a file nor a symlink", h.Name)
		}
		sum := sha256.Sum256(f.data)
		f.sha256 = hex.EncodeToString(sum[:])
		t.files[name] = f
		t.paths = append(t.paths, name)
	}
	// The gzip trailer: its checksum covers what was read. What follows
	// the tar's end is padding, a little of it: not a gzip bomb to
	// inflate.
	if n, err := io.Copy(io.Discard, io.LimitReader(gz, maxTrailer+1)); err != nil {
		return nil, fmt.Errorf("the source archive: %w", err)
	} else if n > maxTrailer {
		return nil, fmt.Errorf("the source archive has more than %d bytes after its end", maxTrailer)
	}
	slices.Sort(t.paths)
	return t, nil
}

// verifiedRelease is a release found in the release log, its entry
// proven in a verified checkpoint.
type verifiedRelease struct {
	index uint64
	entry *release.Entry
	pins  *client.Pins
	prov  *Provenance // once verified (verifiedProvenance)
	// versions are every version of the release's name in the log,
	// newest first.
	versions []string
}

// findVersion reads the release log, every entry proven, and returns the
// newest entry of name at version: a 404 if there is none.
func (c *Center) findVersion(ctx context.Context, name, version string) (*verifiedRelease, error) {
	l, _, pins, err := c.openLog(ctx, "release")
	if err != nil {
		return nil, err
	}
	entries, err := c.entries(ctx, "release", l)
	if err != nil {
		return nil, err
	}
	var rel *verifiedRelease
	var versions []string
	for i := len(entries) - 1; i >= 0; i-- {
		e, err := release.ParseEntry(entries[i])
		if err != nil || e.Name != name {
			continue
		}
		if !slices.Contains(versions, e.Version) {
			versions = append(versions, e.Version)
		}
		if rel == nil && e.Version == version {
			rel = &verifiedRelease{index: uint64(i), entry: e, pins: pins}
		}
	}
	if rel == nil {
		return nil, fault.New(fault.ErrNotFound, fmt.Sprintf("no release %s %s in the release log", name, version))
	}
	rel.versions = versions
	return rel, nil
}

// releaseFile is the URL of a release's file on the platform.
func (c *Center) releaseFile(ctx context.Context, e *release.Entry, file string) (string, error) {
	d, err := client.FetchDiscovery(ctx, c.cfg.HTTPClient, c.cfg.Platform)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errPlatform, err)
	}
	return strings.TrimSuffix(d.Releases.URL, "/") + "/" + url.PathEscape(e.Name) + "/" + url.PathEscape(e.Version) + "/" + file, nil
}

// verifiedProvenance returns the release's provenance once its envelope
// is the one the release-log entry binds and verifies under the pinned
// release key.
func (c *Center) verifiedProvenance(ctx context.Context, rel *verifiedRelease) (*Provenance, error) {
	if rel.prov == nil {
		p, _, err := c.provenance(ctx, rel.pins, rel.entry)
		if err != nil {
			return nil, fmt.Errorf("checking the provenance of %s %s: %w", rel.entry.Name, rel.entry.Version, err)
		}
		rel.prov = p
	}
	return rel.prov, nil
}

// source returns a release's source: the archive its provenance names,
// once the provenance is the one the release-log entry binds and verifies
// under the pinned release key, and the archive served has the digest it
// names. It returns the provenance's digest even when the archive is
// refused.
func (c *Center) source(ctx context.Context, rel *verifiedRelease) (string, *sourceTree, error) {
	prov, err := c.verifiedProvenance(ctx, rel)
	if err != nil {
		return "", nil, err
	}
	digest := prov.SourceSHA256
	if len(digest) != 64 || !isHex(digest) {
		return "", nil, errors.New("the provenance names no source archive with a SHA-256 digest")
	}
	v, err := c.cache.get(ctx, "source "+digest, func(ctx context.Context) (any, int64, error) {
		u, err := c.releaseFile(ctx, rel.entry, "source.tar.gz")
		if err != nil {
			return nil, 0, err
		}
		archive, err := client.Get(ctx, c.cfg.HTTPClient, u, maxArchiveBytes)
		if errors.Is(err, client.ErrTooLarge) {
			return nil, 0, fmt.Errorf("the source archive is larger than %d MiB: %w", maxArchiveBytes>>20, errTooLarge)
		}
		if err != nil {
			return nil, 0, fmt.Errorf("reading the source archive: %w", err)
		}
		if got := release.Digest(archive); got != "sha256:"+digest {
			return nil, 0, fmt.Errorf("refused: the source.tar.gz of %s %s served is %s, its provenance names sha256:%s", rel.entry.Name, rel.entry.Version, got, digest)
		}
		t, err := readArchive(digest, archive)
		if err != nil {
			return nil, 0, err
		}
		return t, t.bytes + t.meta + int64(len(t.paths))*256, nil
	})
	if err != nil {
		return digest, nil, err
	}
	return digest, v.(*sourceTree), nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// SourcePage is a directory or a file of a release's source.
type SourcePage struct {
	Platform string `json:"platform"`
	Name     string `json:"name"`
	Version  string `json:"version"`
	Index    uint64 `json:"index"` // of the release-log entry
	// Archive is the hex SHA-256 of the source archive the provenance
	// names. Verified: the archive served has it (and the provenance
	// verified); Problem says otherwise, and nothing of the archive is
	// shown.
	Archive  string `json:"archive_sha256"`
	Verified bool   `json:"verified"`
	Problem  string `json:"problem,omitempty"`
	// Path is the directory ("" for the root, else ending in "/") or the
	// file shown.
	Path    string        `json:"path"`
	Entries []SourceEntry `json:"entries,omitempty"`
	File    *SourceFile   `json:"file,omitempty"`
	// Files and Bytes are the whole archive's.
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`

	Crumbs  []Crumb `json:"-"`
	Release string  `json:"-"` // the release page's path
}

// Crumb is one step of the path from the source's root.
type Crumb struct {
	Name string
	Href string
}

// SourceEntry is a file or directory in a directory.
type SourceEntry struct {
	Name string `json:"name"`
	Path string `json:"path"`
	Kind string `json:"kind"` // "dir", "file", "executable" or "symlink"
	Size int64  `json:"size,omitempty"`
	Link string `json:"link,omitempty"`
	Href string `json:"-"`
}

// SourceFile is a file of the source: its text when it is text and small
// enough, else only its size and digest.
type SourceFile struct {
	Path   string `json:"path"`
	Kind   string `json:"kind"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Link   string `json:"link,omitempty"`
	Binary bool   `json:"binary,omitempty"`
	// TooLarge says why the text is not shown.
	TooLarge string       `json:"too_large,omitempty"`
	Text     string       `json:"text,omitempty"`
	Lines    []SourceLine `json:"-"`
}

// SourceLine is a numbered line of a file.
type SourceLine struct {
	N    int
	Text string
}

// sourceHref is the Center's path of a file or directory of a release's
// source, each segment escaped.
func sourceHref(name, version, p string) string {
	var b strings.Builder
	b.WriteString("/center/releases/" + url.PathEscape(name) + "/" + url.PathEscape(version) + "/source/")
	for i, seg := range strings.Split(p, "/") {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(url.PathEscape(seg))
	}
	return b.String()
}

// listDir lists the directory dir ("" or ending in "/") of t: directories
// first, then files, each by name. ok is false if there is no such
// directory.
func (t *sourceTree) listDir(dir string) (entries []SourceEntry, ok bool) {
	seen := map[string]bool{}
	var files []SourceEntry
	i, _ := slices.BinarySearch(t.paths, dir)
	for ; i < len(t.paths) && strings.HasPrefix(t.paths[i], dir); i++ {
		rest := t.paths[i][len(dir):]
		if sub, _, isDir := strings.Cut(rest, "/"); isDir {
			if !seen[sub] {
				seen[sub] = true
				entries = append(entries, SourceEntry{Name: sub, Path: dir + sub + "/", Kind: "dir"})
			}
			continue
		}
		f := t.files[t.paths[i]]
		files = append(files, SourceEntry{Name: rest, Path: f.path, Kind: f.mode, Size: int64(len(f.data)), Link: f.link})
	}
	return append(entries, files...), len(entries)+len(files) > 0 || dir == ""
}

// crumbs are the steps from the source's root to p, each linked but the
// last.
func crumbs(name, version, p string) []Crumb {
	cs := []Crumb{{Name: name + " " + version, Href: sourceHref(name, version, "")}}
	if p = strings.TrimSuffix(p, "/"); p != "" {
		segs := strings.Split(p, "/")
		for i := range segs {
			cs = append(cs, Crumb{Name: segs[i], Href: sourceHref(name, version, strings.Join(segs[:i+1], "/")) + "/"})
		}
	}
	cs[len(cs)-1].Href = ""
	return cs
}

// splitLines splits text into lines without their newlines; a final
// newline ends the last line instead of starting another.
func splitLines(text string) []string {
	if text == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(text, "\n"), "\n")
}

// serveSource is a directory (path "" or ending in "/") or a file of a
// release's source. ?line=N goes to line N of a file (#LN), for readers
// without JavaScript.
func (c *Center) serveSource(w http.ResponseWriter, r *http.Request) {
	name, version, p := r.PathValue("name"), r.PathValue("version"), r.PathValue("path")
	if p != "" && !cleanPath(strings.TrimSuffix(p, "/")) {
		httpapi.Error(w, http.StatusBadRequest, "the path must be a clean relative path inside the source")
		return
	}
	ctx := r.Context()
	rel, err := c.findVersion(ctx, name, version)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	page := &SourcePage{Platform: c.cfg.Platform, Name: name, Version: version, Index: rel.index, Path: p,
		Release: "/center/releases/" + url.PathEscape(name) + "/" + url.PathEscape(version)}
	page.Crumbs = crumbs(name, version, p)
	var t *sourceTree
	page.Archive, t, err = c.source(ctx, rel)
	if err != nil {
		if errors.Is(err, errPlatform) || errors.Is(err, context.Canceled) {
			c.fail(w, r, err)
			return
		}
		page.Problem = err.Error()
		c.renderStatus(w, r, http.StatusBadGateway, "source.html", page)
		return
	}
	page.Verified, page.Files, page.Bytes = true, len(t.paths), t.bytes
	if p == "" || strings.HasSuffix(p, "/") {
		entries, ok := t.listDir(p)
		if !ok {
			httpapi.Error(w, http.StatusNotFound, fmt.Sprintf("the source of %s %s has no directory %s", name, version, p))
			return
		}
		for i := range entries {
			entries[i].Href = sourceHref(name, version, entries[i].Path)
			if entries[i].Kind == "dir" {
				entries[i].Href += "/"
			}
		}
		page.Entries = entries
		c.render(w, r, "source.html", page)
		return
	}
	f := t.files[p]
	if f == nil {
		if _, ok := t.listDir(p + "/"); ok {
			http.Redirect(w, r, sourceHref(name, version, p)+"/", http.StatusMovedPermanently)
			return
		}
		httpapi.Error(w, http.StatusNotFound, fmt.Sprintf("the source of %s %s has no file %s", name, version, p))
		return
	}
	if s := r.URL.Query().Get("line"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxShowLines {
			httpapi.Error(w, http.StatusBadRequest, "line must be a line number")
			return
		}
		http.Redirect(w, r, sourceHref(name, version, p)+"#L"+strconv.Itoa(n), http.StatusSeeOther)
		return
	}
	page.File = showFile(f)
	c.render(w, r, "source.html", page)
}

// showFile is f as its page shows it.
func showFile(f *sourceFile) *SourceFile {
	sf := &SourceFile{Path: f.path, Kind: f.mode, Size: int64(len(f.data)), SHA256: f.sha256, Link: f.link}
	switch {
	case f.mode == "symlink":
	case !f.text():
		sf.Binary = true
	case len(f.data) > maxShowBytes:
		sf.TooLarge = fmt.Sprintf("%d bytes: this Center shows files of up to %d KiB", len(f.data), maxShowBytes>>10)
	default:
		lines := splitLines(string(f.data))
		if len(lines) > maxShowLines {
			sf.TooLarge = fmt.Sprintf("%d lines: this Center shows files of up to %d lines", len(lines), maxShowLines)
			break
		}
		sf.Text = string(f.data)
		for i, l := range lines {
			sf.Lines = append(sf.Lines, SourceLine{N: i + 1, Text: l})
		}
	}
	return sf
}

// otherVersions lists the versions of e's name in the release log other
// than e's, newest first, and the newest one logged before index.
func (c *Center) otherVersions(ctx context.Context, l *client.Log, index uint64, e *release.Entry) (others []string, previous string) {
	entries, err := c.entries(ctx, "release", l)
	if err != nil {
		return []string{}, ""
	}
	others = []string{}
	for i := len(entries) - 1; i >= 0; i-- {
		o, err := release.ParseEntry(entries[i])
		if err != nil || o.Name != e.Name || o.Version == e.Version || slices.Contains(others, o.Version) {
			continue
		}
		others = append(others, o.Version)
		if previous == "" && uint64(i) < index {
			previous = o.Version
		}
	}
	return others, previous
}
