package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
	"golang.org/x/mod/semver"

	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/ruledb"
	"github.com/vitrine-dev/vitrine/tlog"
	"github.com/vitrine-dev/vitrine/update"
)

// Errors of [Agent.Update] that callers act on; each is wrapped with the
// details.
var (
	// ErrTUF is a failure of the TUF client workflow: metadata that is
	// expired, rolled back, badly signed, mismatched or too large, or a
	// target whose length or hashes do not match.
	ErrTUF = errors.New("tuf")
	// ErrRejected is a release TUF accepted that a Vitrine check refused:
	// the provenance signature, the release-log entry, its inclusion under
	// the witness policy, or a delta's result.
	ErrRejected = errors.New("release rejected")
	// ErrRollback is a repository that offers only versions below the one
	// installed.
	ErrRollback = errors.New("version rollback refused")
)

// Installed is one installed release.
type Installed struct {
	Release string
	Version string
	// Files are the installed files' paths, by artifact name.
	Files map[string]string
	// LogIndex is the release's entry in the release log.
	LogIndex uint64
	// Delta names the artifacts that came as a delta.
	Delta []string
	// Monitors are what the platform's monitors said of the release-log
	// checkpoint the release was verified in.
	Monitors []MonitorReport
}

// release is what the targets metadata offers of one release version.
type offer struct {
	name, version string
	custom        *update.Custom // of an artifact: log index and proof
	artifacts     []*metadata.TargetFiles
	provenance    *metadata.TargetFiles
	entry         *metadata.TargetFiles
	deltas        map[string]*metadata.TargetFiles // by "<artifact>@<from>"
}

// Update refreshes the TUF metadata and installs, for every release the
// repository offers, its highest version if it is above the installed
// one. It returns what it installed. Only a release every check accepts
// is installed; a release refused leaves the others to be installed, and
// the error returned joins every refusal, each wrapping [ErrTUF],
// [ErrRejected] or [ErrRollback] and saying which check failed. A
// failure of the TUF refresh itself installs nothing.
func (a *Agent) Update(ctx context.Context) ([]Installed, error) {
	up, err := a.updater(ctx)
	if err != nil {
		return nil, err
	}
	if err := up.Refresh(); err != nil {
		return nil, fmt.Errorf("%w: refreshing metadata: %w", ErrTUF, err)
	}
	targets := up.GetTopLevelTargets()
	cands, err := candidates(targets)
	if err != nil {
		return nil, err
	}
	var done []Installed
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(cands)) {
		versions := cands[name]
		best := ""
		for v := range versions {
			if best == "" || compareVersions(v, best) > 0 {
				best = v
			}
		}
		cur := a.current(name)
		if cur != "" {
			switch c := compareVersions(best, cur); {
			case c == 0:
				continue
			case c < 0:
				errs = append(errs, fmt.Errorf("%w: %s: the repository's newest version is %s, %s is installed", ErrRollback, name, best, cur))
				continue
			}
		}
		// A release refused does not hold the others back: each is
		// checked on its own, and every refusal is returned. Only the
		// version to install has its custom metadata read.
		o, err := offerOf(targets, name, best, versions[best])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		inst, err := a.install(ctx, up, o, cur)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, *inst)
	}
	return done, errors.Join(errs...)
}

// updater is go-tuf's client, trusting the newest root it verified before
// (go-tuf keeps it in <dir>/tuf/root.json), or the pinned one. Its
// downloads carry ctx.
func (a *Agent) updater(ctx context.Context) (*updater.Updater, error) {
	mdDir := filepath.Join(a.dir, "tuf")
	root, err := os.ReadFile(filepath.Join(mdDir, "root.json"))
	if errors.Is(err, os.ErrNotExist) {
		root = a.pinned.TUFRoot
	} else if err != nil {
		return nil, err
	}
	cfg, err := config.New(a.pinned.UpdatesURL, root)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTUF, err)
	}
	cfg.LocalMetadataDir = mdDir
	// go-tuf makes both directories; no target is kept (see install).
	cfg.LocalTargetsDir = mdDir
	hc := a.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	cfg.Fetcher = fetcher{ctx: ctx, hc: hc}
	up, err := updater.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTUF, err)
	}
	return up, nil
}

// candidates groups the target names by the release and version their
// paths name: <release>/<version>/<file>.
func candidates(targets map[string]*metadata.TargetFiles) (map[string]map[string][]string, error) {
	out := map[string]map[string][]string{}
	for p := range targets {
		parts := strings.Split(p, "/")
		if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
			return nil, fmt.Errorf("%w: target %q is not <release>/<version>/<file>", ErrRejected, p)
		}
		if out[parts[0]] == nil {
			out[parts[0]] = map[string][]string{}
		}
		out[parts[0]][parts[1]] = append(out[parts[0]][parts[1]], p)
	}
	return out, nil
}

// offerOf reads what the targets metadata offers of one release version:
// its artifacts, provenance.json, release.json and deltas, each target's
// custom metadata checked against its path.
func offerOf(targets map[string]*metadata.TargetFiles, name, version string, paths []string) (*offer, error) {
	if reservedVersion(version) {
		// <release>/<version> would be the link current or previous, or
		// a temporary directory: installing it would lose the installed
		// version, and with it the rollback floor.
		return nil, fmt.Errorf("%w: %s: version %q is a name the install layout keeps for itself", ErrRejected, name, version)
	}
	o := &offer{name: name, version: version, deltas: map[string]*metadata.TargetFiles{}}
	slices.Sort(paths)
	for _, p := range paths {
		tf := targets[p]
		if tf.Custom == nil {
			return nil, fmt.Errorf("%w: target %s has no custom metadata", ErrRejected, p)
		}
		c, err := update.ParseCustom(*tf.Custom)
		if err != nil {
			return nil, fmt.Errorf("%w: target %s: %w", ErrRejected, p, err)
		}
		if c.Release != name || c.Version != version {
			return nil, fmt.Errorf("%w: target %s claims to belong to %s %s", ErrRejected, p, c.Release, c.Version)
		}
		switch file := path.Base(p); {
		case c.IsDelta():
			o.deltas[path.Base(c.Full)+"@"+c.DeltaFrom] = tf
		case file == "provenance.json":
			o.provenance = tf
		case file == "release.json":
			o.entry = tf
		default:
			if o.custom != nil && (o.custom.LogIndex != c.LogIndex || o.custom.Proof != c.Proof || o.custom.Provenance != c.Provenance) {
				return nil, fmt.Errorf("%w: the artifacts of %s %s name different release-log entries", ErrRejected, c.Release, c.Version)
			}
			o.custom = c
			o.artifacts = append(o.artifacts, tf)
		}
	}
	return o, nil
}

// reservedVersion reports whether v names something in
// installed/<release>/ other than a version's directory.
func reservedVersion(v string) bool {
	return v == "current" || v == "previous" || strings.HasPrefix(v, ".")
}

var platformSuffix = regexp.MustCompile(`_([a-z0-9]+)_([a-z0-9]+)$`)

// wanted reports whether an artifact is for this agent: a program built for
// its platform, or a file built for no particular platform.
func (a *Agent) wanted(name string) bool {
	m := platformSuffix.FindStringSubmatch(name)
	if m == nil || !knownGOOS[m[1]] {
		return true
	}
	return m[1] == a.GOOS && m[2] == a.GOARCH
}

var knownGOOS = map[string]bool{"aix": true, "android": true, "darwin": true, "dragonfly": true, "freebsd": true, "illumos": true,
	"ios": true, "js": true, "linux": true, "netbsd": true, "openbsd": true, "plan9": true, "solaris": true, "wasip1": true, "windows": true}

// install fetches, checks and installs one release version.
func (a *Agent) install(ctx context.Context, up *updater.Updater, o *offer, cur string) (*Installed, error) {
	what := o.name + " " + o.version
	if o.custom == nil || o.provenance == nil || o.entry == nil {
		return nil, fmt.Errorf("%w: %s: the repository lacks its artifacts, provenance.json or release.json", ErrRejected, what)
	}
	download := func(tf *metadata.TargetFiles) ([]byte, error) {
		// go-tuf checks the length and hashes against the signed
		// metadata and then writes the bytes to the path given. The
		// agent keeps them in memory until every check has passed and
		// writes them once, at the install; a copy under the agent's
		// directory would double every update's writes and, never
		// read, grow with every version. The null device takes go-tuf's
		// copy. (DisableLocalCache would also stop go-tuf keeping the
		// metadata, and with it the rollback floor across runs.)
		_, b, err := up.DownloadTarget(tf, os.DevNull, "")
		if err != nil {
			return nil, fmt.Errorf("%w: downloading %s: %w", ErrTUF, tf.Path, err)
		}
		return b, nil
	}
	envelope, err := download(o.provenance)
	if err != nil {
		return nil, err
	}
	entry, err := download(o.entry)
	if err != nil {
		return nil, err
	}
	if got := release.Digest(envelope); got != o.custom.Provenance {
		return nil, fmt.Errorf("%w: %s: provenance.json is %s, the targets metadata names %s", ErrRejected, what, got, o.custom.Provenance)
	}
	proof, err := tlog.ParseProof([]byte(o.custom.Proof))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: inclusion: %w", ErrRejected, what, err)
	}
	if proof.Index != o.custom.LogIndex {
		return nil, fmt.Errorf("%w: %s: inclusion: the proof is of entry %d, the targets metadata names %d", ErrRejected, what, proof.Index, o.custom.LogIndex)
	}
	inst := &Installed{Release: o.name, Version: o.version, Files: map[string]string{}, LogIndex: o.custom.LogIndex}
	files := map[string][]byte{}
	for _, tf := range o.artifacts {
		name := path.Base(tf.Path)
		if !a.wanted(name) {
			continue
		}
		b, viaDelta, err := a.fetchArtifact(o, tf, cur, download)
		if err != nil {
			return nil, err
		}
		// go-tuf (or the delta check) has hashed b against the signed
		// targets metadata: its SHA-256 is the one the metadata names.
		e, err := release.VerifyArtifactDigest(ctx, name, signedSHA256(tf, b), &release.Evidence{Entry: entry, Proof: []byte(o.custom.Proof), Envelope: envelope}, &a.trust)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %s: %w", ErrRejected, what, name, err)
		}
		if e.Name != o.name || e.Version != o.version {
			return nil, fmt.Errorf("%w: %s: %s: the release-log entry is of %s %s", ErrRejected, what, name, e.Name, e.Version)
		}
		files[name] = b
		if viaDelta {
			inst.Delta = append(inst.Delta, name)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: %s ships nothing for %s/%s", ErrRejected, what, a.GOOS, a.GOARCH)
	}
	// Verified: before it is installed, the monitors hear which
	// checkpoint it was verified in, and a fork they know of stops it.
	if inst.Monitors, err = a.reportCheckpoint(ctx, proof.Checkpoint); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrRejected, what, err)
	}
	paths, err := a.put(o.name, o.version, files)
	if err != nil {
		return nil, fmt.Errorf("installing %s: %w", what, err)
	}
	inst.Files = paths
	return inst, nil
}

// fetchArtifact gets an artifact's bytes: by its delta from the installed
// version of it when the repository offers one, else whole. A delta's
// result must have the SHA-256 that the signed targets metadata gives the
// full artifact.
func (a *Agent) fetchArtifact(o *offer, tf *metadata.TargetFiles, cur string, download func(*metadata.TargetFiles) ([]byte, error)) ([]byte, bool, error) {
	name := path.Base(tf.Path)
	if d := o.deltas[name+"@"+cur]; d != nil && cur != "" {
		if old, err := os.ReadFile(filepath.Join(a.dir, "installed", o.name, cur, name)); err == nil {
			delta, err := download(d)
			if err != nil {
				return nil, false, err
			}
			b, err := ruledb.ApplyDelta(old, delta)
			if err != nil {
				return nil, false, fmt.Errorf("%w: %s %s: applying the delta from %s: %w", ErrRejected, o.name, o.version, cur, err)
			}
			if err := tf.VerifyLengthHashes(b); err != nil {
				return nil, false, fmt.Errorf("%w: %s %s: the delta from %s gives %s, not the signed full database: %w", ErrRejected, o.name, o.version, cur, sha256Hex(b), err)
			}
			return b, true, nil
		}
	}
	b, err := download(tf)
	return b, false, err
}

// signedSHA256 is the SHA-256 the targets metadata gives tf, which
// go-tuf has checked b against; b's own when the metadata gives none.
func signedSHA256(tf *metadata.TargetFiles, b []byte) string {
	if h, ok := tf.Hashes["sha256"]; ok && len(h) == sha256.Size {
		return hex.EncodeToString(h)
	}
	return sha256Hex(b)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// compareVersions orders two release versions: decimal numbers (rule
// databases) numerically, others as semantic versions; a decimal number
// sorts below any other version.
func compareVersions(a, b string) int {
	an, aerr := strconv.ParseUint(a, 10, 64)
	bn, berr := strconv.ParseUint(b, 10, 64)
	switch {
	case aerr == nil && berr == nil:
		switch {
		case an < bn:
			return -1
		case an > bn:
			return 1
		}
		return 0
	case aerr == nil:
		return -1
	case berr == nil:
		return 1
	}
	if c := semver.Compare("v"+a, "v"+b); c != 0 || (semver.IsValid("v"+a) && semver.IsValid("v"+b)) {
		return c
	}
	return bytes.Compare([]byte(a), []byte(b))
}
