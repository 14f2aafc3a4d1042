package rebuilder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	vclient "github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/conveyer"
	"github.com/vitrine-dev/vitrine/rebuild"
	"github.com/vitrine-dev/vitrine/release"
)

// Rebuilder rebuilds the releases of one platform and signs verdicts.
// Set the fields before first use and do not change them; the methods may
// be called concurrently (rebuilds run one at a time).
type Rebuilder struct {
	// Platform is the platform's base URL: its discovery document is
	// Platform + "/.well-known/vitrine.json".
	Platform string
	// Key signs the verdicts: the rebuilder's own key, never the vendor's
	// (release.LoadOrCreateKey reads one from a file).
	Key release.Signer
	// Dir holds the state, the verdicts and the index.
	Dir string
	// Builder runs the rebuilds. nil means a Builder with a module cache
	// under Dir/modcache and the machine's GOPROXY.
	Builder *conveyer.Builder
	// WorkDir is where each rebuild gets a fresh directory, removed
	// afterwards. It must not be inside a git work tree. Empty means the
	// system's temporary directory.
	WorkDir string
	// ID names the rebuilder in its verdicts, e.g. its public URL. Empty
	// means "urn:vitrine:rebuilder:" and the key's id.
	ID string
	// Client fetches from the platform; nil means a client with a
	// five-minute timeout.
	Client *http.Client
	// GiveUp is how long release files may stay unpublished (404), or
	// the recorded toolchain or the source's modules unavailable, before
	// the entry gets a verdict that says so, instead of being retried.
	// Zero means an hour.
	GiveUp time.Duration
	// Logger receives one record per rebuild and per failed pass; nil
	// discards them.
	Logger *slog.Logger

	mu      sync.Mutex           // one rebuild at a time; guards missing and unfetched
	missing map[uint64]time.Time // entries whose files were 404, since
	// unfetched holds the entries whose toolchain or modules could not
	// be fetched, since when.
	unfetched map[uint64]time.Time
}

// errSkip means a log entry gets no verdict: it is not a release.
var errSkip = errors.New("not a release entry")

// ErrKeyChanged means the platform's discovery document names another
// release-log key or release key than the one pinned in the state. The
// rebuilder stops: a person must decide whether to trust the new key.
var ErrKeyChanged = errors.New("the platform's keys changed since the rebuilder pinned them")

func (r *Rebuilder) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

func (r *Rebuilder) id() string {
	if r.ID != "" {
		return r.ID
	}
	id, err := r.Key.KeyID()
	if err != nil {
		return "urn:vitrine:rebuilder"
	}
	return "urn:vitrine:rebuilder:" + id
}

func (r *Rebuilder) client() *http.Client {
	if r.Client != nil {
		return r.Client
	}
	return defaultClient
}

var defaultClient = &http.Client{Timeout: 5 * time.Minute}

func (r *Rebuilder) builder() *conveyer.Builder {
	if r.Builder != nil {
		return r.Builder
	}
	return &conveyer.Builder{ModCache: filepath.Join(r.Dir, "modcache"), Logger: r.Logger}
}

// trust is what a pass trusts, read from the discovery document.
type trust struct {
	logKey      string // the release log's verifier key, as published
	releasePEM  string // the release key, as published
	log         *vclient.Log
	releaseKey  release.PublicKey
	releasesURL string
}

func (r *Rebuilder) resolve(ctx context.Context) (*trust, error) {
	d, err := vclient.FetchDiscovery(ctx, r.client(), r.Platform)
	if err != nil {
		return nil, err
	}
	t := &trust{releasePEM: d.Releases.Key, releasesURL: strings.TrimSuffix(d.Releases.URL, "/") + "/"}
	l, _ := d.Log("release")
	t.logKey = l.VKey
	logURL := l.URL
	if logURL == "" || d.Releases.URL == "" {
		return nil, errors.New("the discovery document names no release log or no releases")
	}
	policy := d.WitnessPolicy
	if policy == "" {
		policy = "quorum none\n"
	}
	if t.releaseKey, err = release.ParsePublicKey([]byte(d.Releases.Key)); err != nil {
		return nil, fmt.Errorf("the release key: %w", err)
	}
	// A policy of quorum none is taken here and refused where a check
	// needs witnesses ([Rebuilder.LoggedEntry]).
	if t.log, err = vclient.NewLog(logURL, t.logKey, []byte(policy), r.client(), true); err != nil {
		return nil, fmt.Errorf("the release log: %w", err)
	}
	return t, nil
}

// get fetches u, at most limit bytes of it; an answer other than 200 is
// a *vclient.StatusError.
func (r *Rebuilder) get(ctx context.Context, u string, limit int64) ([]byte, error) {
	return vclient.Get(ctx, r.client(), u, limit)
}

// judged is the outcome of one entry: the verdict's subjects and
// predicate.
type judged struct {
	subjects []release.Artifact
	pred     *rebuild.Predicate
}

// rebuildEntry rebuilds the release-log entry at index, whose bytes come
// from the log. A release that cannot be verified or rebuilt gives a
// verdict with its error set; an error return means nothing was learnt
// about the release (the platform or the network failed) and the entry
// should be tried again later, or, with errSkip, that it is no release.
func (r *Rebuilder) rebuildEntry(ctx context.Context, t *trust, index uint64, entry []byte) (*judged, error) {
	log := r.logger().With("log_index", index)
	e, err := release.ParseEntry(entry)
	if err != nil {
		log.WarnContext(ctx, "release-log entry is not a release; no verdict", "err", err)
		return nil, errSkip
	}
	if !validFile(e.Name) || !validFile(e.Version) {
		log.WarnContext(ctx, "release name or version cannot be a file name; no verdict", "name", e.Name, "version", e.Version)
		return nil, errSkip
	}
	log = log.With("name", e.Name, "version", e.Version)
	j := &judged{subjects: e.Artifacts, pred: &rebuild.Predicate{
		Release: rebuild.Release{Name: e.Name, Version: e.Version, LogIndex: index,
			Entry: release.Digest(entry), Envelope: e.Envelope},
		Rebuilder: r.id(),
		Started:   time.Now().UTC(),
	}}
	p := j.pred
	fail := func(format string, a ...any) (*judged, error) {
		p.Error = fmt.Sprintf(format, a...)
		p.Finished = time.Now().UTC()
		p.Compare(nil, nil) // nothing to compare: not reproduced
		log.WarnContext(ctx, "release not rebuilt", "reason", p.Error)
		return j, nil
	}
	base := t.releasesURL + url.PathEscape(e.Name) + "/" + url.PathEscape(e.Version) + "/"

	// The provenance: signed by the release key, bound by the entry.
	envelope, err := r.get(ctx, base+"provenance.json", 16<<20)
	if err != nil {
		gaveUp, err := r.notPublished(index, err)
		if gaveUp {
			return fail("release files: %v", err)
		}
		return nil, err
	}
	v, err := release.Verify(ctx, envelope, t.releaseKey)
	if err != nil {
		return fail("refused: the served provenance does not verify under the release key: %v", err)
	}
	if got := release.Digest(envelope); got != e.Envelope {
		return fail("refused: the served provenance is %s, the release-log entry binds %s", got, e.Envelope)
	}
	if !release.SameArtifacts(v.Subjects, e.Artifacts) {
		return fail("refused: the provenance's subjects are not the artifacts the release-log entry names")
	}
	bd, err := v.Build()
	if err != nil {
		return fail("%v", err)
	}
	p.Toolchain.Original = bd.Toolchain
	if bd.BuildType != release.BuildType {
		return fail("provenance: build type %q, this rebuilder rebuilds %q", bd.BuildType, release.BuildType)
	}
	if !hexDigest(bd.SourceSHA256) {
		return fail("provenance: no source archive with a sha256 digest among the resolved dependencies")
	}
	archive := bd.SourceSHA256
	recipe, err := conveyer.ParseRecipe(bd.Recipe)
	if err != nil {
		return fail("provenance: the recipe: %v", err)
	}
	if recipe.Name != e.Name || recipe.Version != e.Version {
		return fail("provenance: the recipe builds %s %s, the release-log entry names %s %s", recipe.Name, recipe.Version, e.Name, e.Version)
	}

	// The source, as the provenance names it.
	source, err := r.get(ctx, base+"source.tar.gz", maxSourceBytes)
	if err != nil {
		gaveUp, err := r.notPublished(index, err)
		if gaveUp {
			return fail("release files: %v", err)
		}
		return nil, err
	}
	if got := release.Digest(source); got != "sha256:"+archive {
		return fail("source: the served source.tar.gz is %s, the provenance names sha256:%s", got, archive)
	}
	p.Source = "sha256:" + archive
	r.published(index)

	// The rebuild, in a fresh directory.
	work, err := os.MkdirTemp(r.WorkDir, "vitrine-rebuild-")
	if err != nil {
		return nil, fmt.Errorf("creating the rebuild directory: %w", err)
	}
	defer conveyer.RemoveWorkDir(work)
	if err := checkOutsideGit(ctx, work); err != nil {
		return nil, err
	}
	srcDir := filepath.Join(work, "source")
	if err := unpack(bytes.NewReader(source), srcDir); err != nil {
		return fail("%v", err)
	}
	recipe.Source = conveyer.Source{Dir: srcDir}
	log.InfoContext(ctx, "rebuilding", "source", p.Source, "toolchain", p.Toolchain.Original)
	// With the toolchain the original build recorded, fetched if it is
	// not the rebuilder's own; a record that names no Go release leaves
	// the rebuilder's own, and the verdict shows both.
	b := *r.builder()
	if conveyer.IsToolchain(p.Toolchain.Original) {
		b.Toolchain = p.Toolchain.Original
	}
	res, err := b.Build(ctx, recipe, filepath.Join(work, "build"))
	if (errors.Is(err, conveyer.ErrToolchain) || errors.Is(err, conveyer.ErrDownload)) && ctx.Err() == nil {
		// Perhaps the proxy is down; perhaps the provenance names a
		// toolchain, or go.sum a module, that no proxy serves. Retried
		// until GiveUp, then reported, so that one entry cannot stop
		// the rebuilder.
		gaveUp, err := r.giveUpAfter(&r.unfetched, index, err)
		if gaveUp {
			return fail("build: %v", err)
		}
		return nil, fmt.Errorf("rebuilding %s %s: %w", e.Name, e.Version, err)
	}
	if err != nil {
		// A go.sum that lacks lines, a compile error or bad rules say
		// something about the release; anything else does not.
		if ctx.Err() != nil || !errors.Is(err, conveyer.ErrBuild) {
			return nil, fmt.Errorf("rebuilding %s %s: %w", e.Name, e.Version, err)
		}
		return fail("build: %v", err)
	}
	p.Toolchain.Rebuild = res.Record.Toolchain
	if p.Toolchain.Rebuild != "" && p.Toolchain.Original != "" && p.Toolchain.Rebuild != p.Toolchain.Original {
		log.WarnContext(ctx, "rebuilding with another toolchain than the original build", "original", p.Toolchain.Original, "rebuild", p.Toolchain.Rebuild)
	}
	if res.Source.SHA256 != archive {
		p.Error = fmt.Sprintf("source: archiving the unpacked source gives sha256:%s, not the original sha256:%s", res.Source.SHA256, archive)
	}
	expected, rebuilt := map[string]string{}, map[string]string{}
	for _, a := range e.Artifacts {
		expected[a.Name] = "sha256:" + a.SHA256
	}
	for _, a := range res.Artifacts {
		rebuilt[a.Name] = "sha256:" + a.SHA256
	}
	for _, d := range res.RuleDBs {
		rebuilt[d.File.Name] = "sha256:" + d.File.SHA256
	}
	p.Compare(expected, rebuilt)
	p.Finished = time.Now().UTC()
	log.InfoContext(ctx, "rebuilt", "reproduced", p.Reproduced, "differ", p.Differ, "seconds", p.Finished.Sub(p.Started).Seconds())
	return j, nil
}

// notPublished tells a fetch that may succeed later from one that should
// be reported: release files that stay 404 for GiveUp are reported.
func (r *Rebuilder) notPublished(index uint64, err error) (gaveUp bool, _ error) {
	var he *vclient.StatusError
	if !errors.As(err, &he) || he.Status != http.StatusNotFound {
		return false, err
	}
	gaveUp, err = r.giveUpAfter(&r.missing, index, err)
	if !gaveUp {
		err = fmt.Errorf("%w (not published yet?)", err)
	}
	return gaveUp, err
}

// giveUpAfter tells a failure that may pass from one to report: the same
// entry failing for GiveUp since its first failure, recorded in first,
// is reported.
func (r *Rebuilder) giveUpAfter(first *map[uint64]time.Time, index uint64, err error) (gaveUp bool, _ error) {
	if *first == nil {
		*first = map[uint64]time.Time{}
	}
	since, ok := (*first)[index]
	if !ok {
		(*first)[index] = time.Now()
		since = time.Now()
	}
	giveUp := r.GiveUp
	if giveUp == 0 {
		giveUp = time.Hour
	}
	if time.Since(since) >= giveUp {
		return true, fmt.Errorf("%w; still failing %v after the first failure", err, giveUp)
	}
	return false, fmt.Errorf("%w (retrying until %v after the first failure)", err, giveUp)
}

func (r *Rebuilder) published(index uint64) { delete(r.missing, index) }

func hexDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// checkOutsideGit refuses a rebuild directory inside a git work tree: the
// conveyer would take only the files git lists there, not the unpacked
// source.
func checkOutsideGit(ctx context.Context, dir string) error {
	if _, err := exec.LookPath("git"); err != nil {
		return nil
	}
	out, err := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "--is-inside-work-tree").Output()
	if err == nil && strings.TrimSpace(string(out)) == "true" {
		return fmt.Errorf("rebuild directory %s is %w: set a work directory outside any repository", dir, errInsideGit)
	}
	return nil
}
