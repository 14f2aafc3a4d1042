package center

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/aymanbagabas/go-udiff"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/conveyer"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/ruledb"
)

// Bounds on a diff page: past them it lists what changed without showing
// how, and says so.
const (
	// maxDiffFileBytes bounds each side of a file diffed.
	maxDiffFileBytes = 256 << 10
	// maxDiffLines bounds the lines of diff one page shows, and
	// maxDiffBytes the bytes of files it diffs.
	maxDiffLines = 10_000
	maxDiffBytes = 16 << 20
	// maxRuleDBBytes bounds a rule database read to list its signatures.
	maxRuleDBBytes = 64 << 20
	// maxSignaturesShown bounds the signatures listed as added, and as
	// removed, per database.
	maxSignaturesShown = 1_000
)

// DiffPage is what changed in a release's source, and in its rule
// databases' signatures, from one version to another.
type DiffPage struct {
	Platform string   `json:"platform"`
	Name     string   `json:"name"`
	From     DiffSide `json:"from"`
	To       DiffSide `json:"to"`
	// Verified: both sources are the archives their provenances name.
	// Problem says otherwise, and nothing of either is shown.
	Verified bool   `json:"verified"`
	Problem  string `json:"problem,omitempty"`
	// Files are the files added, removed and changed, by path.
	Files     []FileChange `json:"files"`
	Added     int          `json:"added"`
	Removed   int          `json:"removed"`
	Changed   int          `json:"changed"`
	Unchanged int          `json:"unchanged"`
	// Omitted says why some changes are listed without their diff.
	Omitted string `json:"omitted,omitempty"`
	// RuleDBs are the signatures added and removed in each rule
	// database the two versions' recipes compile.
	RuleDBs []RuleDBChange `json:"rule_databases,omitempty"`
	// Versions are every version of the release, newest first, for the
	// page's form.
	Versions []string `json:"versions"`
	Action   string   `json:"-"` // the form's
}

// DiffSide is one version of a diff.
type DiffSide struct {
	Version string `json:"version"`
	Index   uint64 `json:"index"` // of its release-log entry
	Archive string `json:"archive_sha256,omitempty"`
	Href    string `json:"-"` // its release page
}

// FileChange is one file added, removed or changed. Unified is its diff
// in the unified format, when it is text and within the page's bounds;
// NotShown says why not otherwise.
type FileChange struct {
	Path      string `json:"path"`
	Status    string `json:"status"` // "added", "removed" or "changed"
	OldSize   int64  `json:"old_size"`
	NewSize   int64  `json:"new_size"`
	OldSHA256 string `json:"old_sha256,omitempty"`
	NewSHA256 string `json:"new_sha256,omitempty"`
	OldKind   string `json:"old_kind,omitempty"`
	NewKind   string `json:"new_kind,omitempty"`
	Binary    bool   `json:"binary,omitempty"`
	Plus      int    `json:"lines_added"`
	Minus     int    `json:"lines_removed"`
	NotShown  string `json:"not_shown,omitempty"`
	Unified   string `json:"unified,omitempty"`

	ID      string     `json:"-"` // the anchor of its diff
	OldFile string     `json:"-"` // its pages in either version
	NewFile string     `json:"-"`
	Hunks   []DiffHunk `json:"-"`
}

// DiffHunk is a hunk of a file's diff.
type DiffHunk struct {
	Header string
	Lines  []DiffLine
}

// DiffLine is a line of a hunk: its number in the old file, the new file,
// or both, each linked to that version's file.
type DiffLine struct {
	Class            string // "add", "del" or "ctx"
	Sign             string
	Old, New         int
	OldHref, NewHref string
	Text             string
}

// RuleDBChange is a rule database's signatures added and removed between
// the two versions, from the compiled databases released, each the
// artifact the release-log entry names by digest.
type RuleDBChange struct {
	Name        string          `json:"name"`
	OldSHA256   string          `json:"old_sha256,omitempty"`
	NewSHA256   string          `json:"new_sha256,omitempty"`
	OldVersion  uint64          `json:"old_version,omitempty"`
	NewVersion  uint64          `json:"new_version,omitempty"`
	Verified    bool            `json:"verified"`
	Problem     string          `json:"problem,omitempty"` // what did not verify
	Absent      string          `json:"absent,omitempty"`  // the version without it
	Added       []SignatureLine `json:"added"`
	Removed     []SignatureLine `json:"removed"`
	AddedTotal  int             `json:"added_total"`
	RemovedTot  int             `json:"removed_total"`
	Unchanged   int             `json:"unchanged"`
	NotAllShown bool            `json:"not_all_shown,omitempty"`
}

// SignatureLine is a signature as its ClamAV line.
type SignatureLine struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	Line string `json:"line"`
}

// serveDiff is /center/releases/{name}/{version}/diff?from=V: what changed
// from version V to this one.
func (c *Center) serveDiff(w http.ResponseWriter, r *http.Request) {
	name, version := r.PathValue("name"), r.PathValue("version")
	from := r.URL.Query().Get("from")
	if from == "" || len(from) > 256 {
		httpapi.Error(w, http.StatusBadRequest, "from must name the version to compare with: ?from=1.2.3")
		return
	}
	ctx := r.Context()
	to, err := c.findVersion(ctx, name, version)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	old, err := c.findVersion(ctx, name, from)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	page := &DiffPage{Platform: c.cfg.Platform, Name: name, Versions: to.versions, Files: []FileChange{},
		From:   DiffSide{Version: from, Index: old.index, Href: releaseHref(name, from)},
		To:     DiffSide{Version: version, Index: to.index, Href: releaseHref(name, version)},
		Action: releaseHref(name, version) + "/diff"}
	var oldTree, newTree *sourceTree
	page.From.Archive, oldTree, err = c.source(ctx, old)
	if err == nil {
		page.To.Archive, newTree, err = c.source(ctx, to)
	}
	if err != nil {
		if errors.Is(err, errPlatform) || errors.Is(err, context.Canceled) {
			c.fail(w, r, err)
			return
		}
		page.Problem = err.Error()
		c.renderStatus(w, r, http.StatusBadGateway, "diff.html", page)
		return
	}
	page.Verified = true
	// A diff is kept as the trees are: by what it is made of, the two
	// archives' digests, and the versions its links name.
	key := strings.Join([]string{"diff", name, from, version, oldTree.digest, newTree.digest}, "\x00")
	v, err := c.cache.get(ctx, key, func(context.Context) (any, int64, error) {
		d := &DiffPage{Name: name, From: page.From, To: page.To, Files: []FileChange{}}
		diffTrees(d, oldTree, newTree)
		size := int64(1024)
		for _, f := range d.Files {
			size += 512 + 4*int64(len(f.Unified))
		}
		return d, size, nil
	})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d := v.(*DiffPage)
	page.Files, page.Added, page.Removed, page.Changed, page.Unchanged, page.Omitted = d.Files, d.Added, d.Removed, d.Changed, d.Unchanged, d.Omitted
	page.RuleDBs = c.ruleDBChanges(ctx, old, to)
	c.render(w, r, "diff.html", page)
}

func releaseHref(name, version string) string {
	return "/center/releases/" + url.PathEscape(name) + "/" + url.PathEscape(version)
}

// diffTrees lists the files added, removed and changed from a to b, with
// the diff of each text file within the bounds.
func diffTrees(page *DiffPage, a, b *sourceTree) {
	budget, bytesLeft := maxDiffLines, int64(maxDiffBytes)
	i, j := 0, 0
	for i < len(a.paths) || j < len(b.paths) {
		var fc FileChange
		var old, new *sourceFile
		switch {
		case j == len(b.paths) || i < len(a.paths) && a.paths[i] < b.paths[j]:
			old = a.files[a.paths[i]]
			fc = FileChange{Path: old.path, Status: "removed"}
			page.Removed++
			i++
		case i == len(a.paths) || b.paths[j] < a.paths[i]:
			new = b.files[b.paths[j]]
			fc = FileChange{Path: new.path, Status: "added"}
			page.Added++
			j++
		default:
			old, new = a.files[a.paths[i]], b.files[b.paths[j]]
			i++
			j++
			if old.sha256 == new.sha256 && old.mode == new.mode && old.link == new.link {
				page.Unchanged++
				continue
			}
			fc = FileChange{Path: new.path, Status: "changed"}
			page.Changed++
		}
		sum := sha256.Sum256([]byte(fc.Path))
		fc.ID = "diff-" + hex.EncodeToString(sum[:8])
		oldText, newText := "", ""
		if old != nil {
			fc.OldSize, fc.OldSHA256, fc.OldKind, oldText = int64(len(old.data)), old.sha256, old.mode, showable(old)
			fc.OldFile = sourceHref(page.Name, page.From.Version, old.path)
		}
		if new != nil {
			fc.NewSize, fc.NewSHA256, fc.NewKind, newText = int64(len(new.data)), new.sha256, new.mode, showable(new)
			fc.NewFile = sourceHref(page.Name, page.To.Version, new.path)
		}
		switch {
		case old != nil && !old.text() && old.mode != "symlink", new != nil && !new.text() && new.mode != "symlink":
			fc.Binary = true
			fc.NotShown = "binary file: compare the sizes and SHA-256 digests"
		case fc.OldSize > maxDiffFileBytes || fc.NewSize > maxDiffFileBytes:
			fc.NotShown = fmt.Sprintf("too large to diff here: this Center diffs files of up to %d KiB", maxDiffFileBytes>>10)
		case budget <= 0 || fc.OldSize+fc.NewSize > bytesLeft:
			fc.NotShown = fmt.Sprintf("not shown: this page shows at most %d lines of diff, of files of %d MiB in all", maxDiffLines, maxDiffBytes>>20)
			page.Omitted = fmt.Sprintf("some files are listed without their diff: this page shows at most %d lines of diff, of files of %d MiB in all; their own pages show them", maxDiffLines, maxDiffBytes>>20)
		default:
			bytesLeft -= fc.OldSize + fc.NewSize
			diffFile(&fc, page, oldText, newText)
			lines := 0
			for _, h := range fc.Hunks {
				lines += len(h.Lines) + 1
			}
			if lines > budget {
				fc.Hunks, fc.Unified = nil, ""
				fc.NotShown = fmt.Sprintf("not shown: its diff has %d lines, more than the %d this page still shows", lines, budget)
				page.Omitted = fmt.Sprintf("some files are listed without their diff: this page shows at most %d lines of diff, of files of %d MiB in all; their own pages show them", maxDiffLines, maxDiffBytes>>20)
			} else {
				budget -= lines
			}
		}
		page.Files = append(page.Files, fc)
	}
}

// showable is what a file's diff shows of it: its text, or a symlink's
// target.
func showable(f *sourceFile) string {
	if f.mode == "symlink" {
		return "→ " + f.link + "\n"
	}
	return string(f.data)
}

// diffFile fills in fc's diff of a to b, with go-udiff's Myers diff.
func diffFile(fc *FileChange, page *DiffPage, a, b string) {
	edits := udiff.Lines(a, b)
	u, err := udiff.ToUnifiedDiff("a/"+fc.Path, "b/"+fc.Path, a, edits, udiff.DefaultContextLines)
	if err != nil {
		fc.NotShown = "the diff could not be made: " + err.Error()
		return
	}
	fc.Unified = u.String()
	for _, h := range u.Hunks {
		oldN, newN := h.FromLine, h.ToLine
		var minus, plus int
		dh := DiffHunk{}
		for _, l := range h.Lines {
			dl := DiffLine{Text: strings.TrimSuffix(l.Content, "\n")}
			switch l.Kind {
			case udiff.Delete:
				dl.Class, dl.Sign, dl.Old = "del", "-", oldN
				oldN++
				minus++
			case udiff.Insert:
				dl.Class, dl.Sign, dl.New = "add", "+", newN
				newN++
				plus++
			default:
				dl.Class, dl.Sign, dl.Old, dl.New = "ctx", " ", oldN, newN
				oldN++
				newN++
			}
			if dl.Old > 0 && fc.OldKind != "symlink" {
				dl.OldHref = fc.OldFile + "#L" + strconv.Itoa(dl.Old)
			}
			if dl.New > 0 && fc.NewKind != "symlink" {
				dl.NewHref = fc.NewFile + "#L" + strconv.Itoa(dl.New)
			}
			dh.Lines = append(dh.Lines, dl)
		}
		fc.Plus, fc.Minus = fc.Plus+plus, fc.Minus+minus
		dh.Header = fmt.Sprintf("@@ -%s +%s @@", hunkRange(h.FromLine, oldN-h.FromLine), hunkRange(h.ToLine, newN-h.ToLine))
		fc.Hunks = append(fc.Hunks, dh)
	}
}

// hunkRange is a hunk's range as the unified format writes it.
func hunkRange(start, n int) string {
	switch {
	case n == 0:
		return strconv.Itoa(start-1) + ",0"
	case n == 1:
		return strconv.Itoa(start)
	}
	return strconv.Itoa(start) + "," + strconv.Itoa(n)
}

// ruleDBChanges lists, for each rule database the two versions' recipes
// compile (by the conveyer's own reading of the recipe in their verified
// provenances), the signatures added and removed. Each database is the
// artifact whose digest its release-log entry names, opened with package
// ruledb.
func (c *Center) ruleDBChanges(ctx context.Context, old, new *verifiedRelease) []RuleDBChange {
	oldDBs, newDBs := ruleDBNames(old), ruleDBNames(new)
	var out []RuleDBChange
	for _, name := range newDBs {
		ch := RuleDBChange{Name: name, Added: []SignatureLine{}, Removed: []SignatureLine{}}
		if !slices.Contains(oldDBs, name) {
			ch.Absent = old.entry.Version
			out = append(out, ch)
			continue
		}
		var a, b *ruledb.DB
		var err error
		ch.OldSHA256, a, err = c.ruleDB(ctx, old, name)
		if err == nil {
			ch.NewSHA256, b, err = c.ruleDB(ctx, new, name)
		}
		if err != nil {
			ch.Problem = err.Error()
			out = append(out, ch)
			continue
		}
		ch.Verified, ch.OldVersion, ch.NewVersion = true, a.Version(), b.Version()
		d := ruledb.Diff(a, b)
		ch.AddedTotal, ch.RemovedTot, ch.Unchanged = len(d.Added), len(d.Removed), d.Unchanged
		for _, s := range d.Added[:min(len(d.Added), maxSignaturesShown)] {
			ch.Added = append(ch.Added, SignatureLine{Kind: s.Kind.String(), Name: s.Name, Line: s.String()})
		}
		for _, s := range d.Removed[:min(len(d.Removed), maxSignaturesShown)] {
			ch.Removed = append(ch.Removed, SignatureLine{Kind: s.Kind.String(), Name: s.Name, Line: s.String()})
		}
		ch.NotAllShown = len(d.Added) > maxSignaturesShown || len(d.Removed) > maxSignaturesShown
		out = append(out, ch)
	}
	for _, name := range oldDBs {
		if !slices.Contains(newDBs, name) {
			out = append(out, RuleDBChange{Name: name, Added: []SignatureLine{}, Removed: []SignatureLine{}, Absent: new.entry.Version})
		}
	}
	return out
}

// ruleDBNames are the rule databases the release's recipe compiles, as
// the conveyer reads its recipe (in the provenance verified before the
// source was shown); none for a recipe it does not read.
func ruleDBNames(rel *verifiedRelease) []string {
	if rel.prov == nil {
		return nil
	}
	r, err := conveyer.ParseRecipe([]byte(rel.prov.Recipe))
	if err != nil || r.Name != rel.entry.Name || r.Version != rel.entry.Version {
		return nil
	}
	var names []string
	for _, t := range r.Targets {
		if t.RuleDB != nil {
			names = append(names, t.RuleDB.Name)
		}
	}
	return names
}

// ruleDB reads the release's artifact name, checks that its digest is the
// one the release-log entry names, and opens it as a rule database.
func (c *Center) ruleDB(ctx context.Context, rel *verifiedRelease, name string) (string, *ruledb.DB, error) {
	var digest string
	for _, a := range rel.entry.Artifacts {
		if a.Name == name {
			digest = a.SHA256
		}
	}
	if digest == "" {
		return "", nil, fmt.Errorf("the release-log entry of %s %s names no artifact %s", rel.entry.Name, rel.entry.Version, name)
	}
	v, err := c.cache.get(ctx, "ruledb "+digest, func(ctx context.Context) (any, int64, error) {
		u, err := c.releaseFile(ctx, rel.entry, "artifacts/"+url.PathEscape(name))
		if err != nil {
			return nil, 0, err
		}
		b, err := client.Get(ctx, c.cfg.HTTPClient, u, maxRuleDBBytes)
		if errors.Is(err, client.ErrTooLarge) {
			return nil, 0, fmt.Errorf("%s of %s %s is larger than %d MiB: %w", name, rel.entry.Name, rel.entry.Version, maxRuleDBBytes>>20, errTooLarge)
		}
		if err != nil {
			return nil, 0, fmt.Errorf("reading %s of %s %s: %w", name, rel.entry.Name, rel.entry.Version, err)
		}
		if got := release.Digest(b); got != "sha256:"+digest {
			return nil, 0, fmt.Errorf("refused: %s of %s %s served is %s, the release-log entry names sha256:%s", name, rel.entry.Name, rel.entry.Version, got, digest)
		}
		db, err := ruledb.Open(b)
		if err != nil {
			return nil, 0, fmt.Errorf("%s of %s %s: %w", name, rel.entry.Name, rel.entry.Version, err)
		}
		return db, 2 * int64(len(b)), nil
	})
	if err != nil {
		return digest, nil, err
	}
	return digest, v.(*ruledb.DB), nil
}
