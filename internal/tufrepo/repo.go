// Package updates is Vitrine's TUF update repository: go-tuf/v2 metadata
// with consistent snapshots, served under /updates/, whose targets are the
// published releases, each bound to its release-log entry.
//
// # Roles and keys
//
// The root keys are offline: `vitrine tuf init` makes them ([Init]) and
// `vitrine tuf rotate` signs each next root ([Rotate]); the server only
// ever holds signed roots. The targets role's key is the release key, or
// <dir>/targets.key once a rotation replaced it. The snapshot and
// timestamp keys are online keys kept in <dir> (snapshot.key,
// timestamp.key, mode 0600); [Repo.Run] re-signs their metadata before it
// expires.
//
// # Layout
//
// On disk under the directory, and in URLs under /updates/:
//
//	metadata/<N>.root.json      /updates/<N>.root.json (and the latest at /updates/root.json)
//	metadata/timestamp.json     /updates/timestamp.json
//	metadata/<N>.snapshot.json  /updates/<N>.snapshot.json
//	metadata/<N>.targets.json   /updates/<N>.targets.json
//	targets/<release>/<version>/<sha256>.<file>
//	                            /updates/targets/<release>/<version>/<sha256>.<file>
//
// Target names are <release>/<version>/<file>; the hash-prefixed paths are
// go-tuf's default for consistent snapshots. Every file is written through
// a temporary file and a rename, and timestamp.json last, so a crash leaves
// the previous repository served whole.
//
// # Custom metadata
//
// Each target's custom metadata binds it to the release log; package
// update (public) defines and parses it.
package tufrepo

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/tlog"
	"github.com/vitrine-dev/vitrine/update"
)

// ErrExists means a release's targets are already in the repository.
var ErrExists = fault.New(fault.ErrConflict, "release already in the update repository")

// ErrKeyNotHeld means a root names a key for an online role (targets,
// snapshot, timestamp) that the repository does not hold.
var ErrKeyNotHeld = fault.New(fault.ErrConflict, "the root names a key the platform does not hold")

// Expiry is how long each role's metadata stays valid once signed. The
// repository re-signs a role when less than half of its lifetime is left.
type Expiry struct {
	Targets, Snapshot, Timestamp time.Duration
}

// DefaultExpiry is a year for targets, a week for snapshot and a day for
// timestamp.
var DefaultExpiry = Expiry{Targets: 365 * 24 * time.Hour, Snapshot: 7 * 24 * time.Hour, Timestamp: 24 * time.Hour}

// Config configures [Open].
type Config struct {
	// Dir holds the repository and the online keys; it is created.
	Dir string
	// Root is the initial trusted root.json. Without it, a Dir that holds
	// no root yet is set up with a new root whose keys are written to
	// OfflineDir (see [Init]); with neither, Open fails. Given with a Dir
	// that holds roots, it must be one of them.
	Root []byte
	// OfflineDir receives the root keys when Open makes the root; they
	// must then be moved off the serving machine. RootKeys and
	// RootThreshold are passed to [Init].
	OfflineDir              string
	RootKeys, RootThreshold int
	// TargetsKey signs targets (the release key) unless Dir/targets.key
	// exists: of the two, the repository signs with the one the current
	// root names.
	TargetsKey Signer
	// Expiry defaults to DefaultExpiry, field by field.
	Expiry Expiry
	Logger *slog.Logger
}

// Repo is a TUF repository on disk. Its methods are safe for concurrent
// use; changes are serialised and durable once they return.
type Repo struct {
	dir    string
	exp    Expiry
	logger *slog.Logger

	snapshotKey, timestampKey Signer
	// configured is the targets key given in Config (the release key);
	// targetsKeys are the candidates, <dir>/targets.key first.
	configured  Signer
	targetsKeys []Signer

	mu         sync.Mutex
	initial    []byte // the earliest root stored: what discovery hands out
	rootBytes  []byte // the latest root
	root       *metadata.Metadata[metadata.RootType]
	targetsKey Signer
	targets    *metadata.Metadata[metadata.TargetsType]
	snapshot   *metadata.Metadata[metadata.SnapshotType]
	timestamp  *metadata.Metadata[metadata.TimestampType]
	rootWarned time.Time
}

// keepVersions is how many versions of snapshot and targets metadata stay
// on disk: a client that read a timestamp just before a change still finds
// the snapshot it names.
const keepVersions = 16

// Open opens (or creates) the repository in cfg.Dir. A repository that
// lacks metadata or whose metadata is not signed as the current root
// requires (after a crash during a root change) is re-signed.
func Open(ctx context.Context, cfg Config) (*Repo, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	exp := cfg.Expiry
	if exp.Targets <= 0 {
		exp.Targets = DefaultExpiry.Targets
	}
	if exp.Snapshot <= 0 {
		exp.Snapshot = DefaultExpiry.Snapshot
	}
	if exp.Timestamp <= 0 {
		exp.Timestamp = DefaultExpiry.Timestamp
	}
	r := &Repo{dir: cfg.Dir, exp: exp, logger: cfg.Logger, configured: cfg.TargetsKey}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "metadata"), 0o755); err != nil {
		return nil, fmt.Errorf("opening update repository: %w", err)
	}
	snap, err := LoadOrCreateKey(filepath.Join(cfg.Dir, "snapshot.key"), filepath.Join(cfg.Dir, "snapshot.pub"))
	if err != nil {
		return nil, fmt.Errorf("opening update repository: snapshot key: %w", err)
	}
	ts, err := LoadOrCreateKey(filepath.Join(cfg.Dir, "timestamp.key"), filepath.Join(cfg.Dir, "timestamp.pub"))
	if err != nil {
		return nil, fmt.Errorf("opening update repository: timestamp key: %w", err)
	}
	r.snapshotKey, r.timestampKey = KeySigner(snap), KeySigner(ts)
	if err := r.loadTargetsKeys(); err != nil {
		return nil, fmt.Errorf("opening update repository: %w", err)
	}

	if err := r.loadRoots(cfg); err != nil {
		return nil, fmt.Errorf("opening update repository: %w", err)
	}
	if err := r.useRoot(r.root); err != nil {
		return nil, fmt.Errorf("opening update repository: %w", err)
	}
	if err := r.loadMetadata(); err != nil {
		return nil, fmt.Errorf("opening update repository: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refresh(ctx, time.Now()); err != nil {
		return nil, fmt.Errorf("opening update repository: %w", err)
	}
	return r, nil
}

// loadTargetsKeys gathers the candidate targets keys: Dir/targets.key if
// present, then the configured one.
func (r *Repo) loadTargetsKeys() error {
	var keys []Signer
	k, err := LoadKey(filepath.Join(r.dir, "targets.key"))
	switch {
	case err == nil:
		keys = append(keys, KeySigner(k))
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("targets key: %w", err)
	}
	if r.configured != nil {
		keys = append(keys, r.configured)
	}
	if len(keys) == 0 {
		return errors.New("no targets key: give the release key or put one in targets.key")
	}
	r.targetsKeys = keys
	return nil
}

// Online returns the public keys the repository signs with for targets
// (the first candidate), snapshot and timestamp: what a root must name.
func (r *Repo) Online() Online {
	return Online{
		Targets:   r.targetsKeys[0].Public().(ed25519.PublicKey),
		Snapshot:  r.snapshotKey.Public().(ed25519.PublicKey),
		Timestamp: r.timestampKey.Public().(ed25519.PublicKey),
	}
}

func (r *Repo) metaPath(name string) string { return filepath.Join(r.dir, "metadata", name) }

// loadRoots reads the stored roots, checks each chains from the one
// before, and sets the initial and current root; it stores cfg.Root or a
// new root when there is none.
func (r *Repo) loadRoots(cfg Config) error {
	entries, err := os.ReadDir(filepath.Join(r.dir, "metadata"))
	if err != nil {
		return err
	}
	var versions []int64
	for _, e := range entries {
		if v, ok := rootFileVersion(e.Name()); ok {
			versions = append(versions, v)
		}
	}
	slices.Sort(versions)
	if len(versions) == 0 {
		b := cfg.Root
		if b == nil {
			if cfg.OfflineDir == "" {
				return errors.New("no TUF root: give one (vitrine tuf init) or a directory for new offline root keys")
			}
			if b, err = Init(InitConfig{Dir: cfg.OfflineDir, Keys: cfg.RootKeys, Threshold: cfg.RootThreshold, Online: r.Online()}); err != nil {
				return err
			}
			abs, _ := filepath.Abs(cfg.OfflineDir)
			r.logger.Warn("made a new TUF root: its root keys are on this machine; move them offline and keep them safe", "dir", abs)
		}
		root, err := parseRoot(b)
		if err != nil {
			return fmt.Errorf("initial root: %w", err)
		}
		if !root.Signed.ConsistentSnapshot {
			return errors.New("initial root: consistent snapshots are off; this repository serves only consistent snapshots")
		}
		if err := atomicfile.Write(r.metaPath(fmt.Sprintf("%d.root.json", root.Signed.Version)), b, 0o644); err != nil {
			return err
		}
		r.initial, r.rootBytes, r.root = b, b, root
		return nil
	}
	var prev *metadata.Metadata[metadata.RootType]
	var given *metadata.Metadata[metadata.RootType]
	if cfg.Root != nil {
		if given, err = parseRoot(cfg.Root); err != nil {
			return fmt.Errorf("given root: %w", err)
		}
	}
	matched := given == nil
	for i, v := range versions {
		b, err := os.ReadFile(r.metaPath(fmt.Sprintf("%d.root.json", v)))
		if err != nil {
			return err
		}
		var root *metadata.Metadata[metadata.RootType]
		if prev == nil {
			root, err = parseRoot(b)
		} else {
			root, err = checkNextRoot(prev, b, time.Time{})
		}
		if err != nil {
			return fmt.Errorf("stored root %d: %w", v, err)
		}
		if root.Signed.Version != v {
			return fmt.Errorf("stored %d.root.json holds version %d", v, root.Signed.Version)
		}
		if i == 0 {
			r.initial = b
		}
		if given != nil && sameRoot(given, root) {
			matched = true
		}
		prev, r.rootBytes, r.root = root, b, root
	}
	if !matched {
		return fmt.Errorf("the given root (version %d) is none of the roots in %s: this directory belongs to another repository", given.Signed.Version, r.dir)
	}
	return nil
}

// names reports whether root names pub as the key of role, with a
// threshold of 1.
func names(root *metadata.Metadata[metadata.RootType], role string, pub ed25519.PublicKey) bool {
	ro := root.Signed.Roles[role]
	return ro != nil && ro.Threshold == 1 && slices.Contains(ro.KeyIDs, KeyID(pub))
}

// useRoot picks the targets key root names among the candidates and
// checks root names the snapshot and timestamp keys held, each with a
// threshold of 1.
func (r *Repo) useRoot(root *metadata.Metadata[metadata.RootType]) error {
	named := func(role string, pub ed25519.PublicKey) bool { return names(root, role, pub) }
	for role, k := range map[string]Signer{metadata.SNAPSHOT: r.snapshotKey, metadata.TIMESTAMP: r.timestampKey} {
		if !named(role, k.Public().(ed25519.PublicKey)) {
			return fmt.Errorf("root version %d does not name the %s key in <data>/updates (or its threshold is not 1): %w", root.Signed.Version, role, ErrKeyNotHeld)
		}
	}
	for _, k := range r.targetsKeys {
		if named(metadata.TARGETS, k.Public().(ed25519.PublicKey)) {
			r.targetsKey = k
			return nil
		}
	}
	return fmt.Errorf("root version %d names a targets key that is neither <data>/updates/targets.key nor the release key (or its threshold is not 1): %w", root.Signed.Version, ErrKeyNotHeld)
}

// loadMetadata reads the served timestamp and the snapshot and targets it
// names; a fresh repository has none.
func (r *Repo) loadMetadata() error {
	b, err := os.ReadFile(r.metaPath("timestamp.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if r.timestamp, err = metadata.Timestamp().FromBytes(b); err != nil {
		return fmt.Errorf("timestamp.json: %w", err)
	}
	sm := r.timestamp.Signed.Meta["snapshot.json"]
	if sm == nil {
		return errors.New("timestamp.json names no snapshot")
	}
	if b, err = os.ReadFile(r.metaPath(fmt.Sprintf("%d.snapshot.json", sm.Version))); err != nil {
		return err
	}
	if r.snapshot, err = metadata.Snapshot().FromBytes(b); err != nil {
		return fmt.Errorf("snapshot %d: %w", sm.Version, err)
	}
	tm := r.snapshot.Signed.Meta["targets.json"]
	if tm == nil {
		return errors.New("snapshot names no targets")
	}
	if b, err = os.ReadFile(r.metaPath(fmt.Sprintf("%d.targets.json", tm.Version))); err != nil {
		return err
	}
	if r.targets, err = metadata.Targets().FromBytes(b); err != nil {
		return fmt.Errorf("targets %d: %w", tm.Version, err)
	}
	return nil
}

// Root returns the initial trusted root: the earliest root.json the
// repository holds, which a client starts from and updates past.
func (r *Repo) Root() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.initial
}

// LatestRoot returns the current root.json.
func (r *Repo) LatestRoot() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rootBytes
}

// Release is one published release to add to the repository.
type Release struct {
	Name, Version string
	// Files are the artifacts, by name.
	Files map[string][]byte
	// Envelope is the signed provenance, Entry the release-log entry as
	// logged (it must bind Files and Envelope), at LogIndex; Proof is the
	// entry's C2SP tlog-proof.
	Envelope, Entry []byte
	LogIndex        uint64
	Proof           []byte
	// Deltas are rule-database deltas from earlier versions.
	Deltas []Delta
}

// Delta is the delta from the full database of an earlier version to the
// artifact of this release named Artifact.
type Delta struct {
	Artifact string
	From     string
	Data     []byte
}

func (r *Release) target(file string) string { return r.Name + "/" + r.Version + "/" + file }

// files returns each target's bytes and custom metadata, after checking
// that the entry binds the files and envelope and the proof is the
// entry's.
func (r *Release) files() (map[string][]byte, map[string][]byte, error) {
	e, err := release.ParseEntry(r.Entry)
	if err != nil {
		return nil, nil, err
	}
	if e.Name != r.Name || e.Version != r.Version {
		return nil, nil, fmt.Errorf("the entry is for %s %s", e.Name, e.Version)
	}
	if e.Envelope != release.Digest(r.Envelope) {
		return nil, nil, errors.New("the entry does not bind the envelope")
	}
	if len(e.Artifacts) != len(r.Files) {
		return nil, nil, fmt.Errorf("the entry names %d artifacts, the release has %d", len(e.Artifacts), len(r.Files))
	}
	for _, a := range e.Artifacts {
		b, ok := r.Files[a.Name]
		if !ok || release.Digest(b) != "sha256:"+a.SHA256 {
			return nil, nil, fmt.Errorf("artifact %s is not the one the entry names", a.Name)
		}
		if a.Name == "provenance.json" || a.Name == "release.json" || strings.Contains(a.Name, "/") {
			return nil, nil, fmt.Errorf("artifact name %q is reserved or has a slash", a.Name)
		}
	}
	p, err := tlog.ParseProof(r.Proof)
	if err != nil {
		return nil, nil, fmt.Errorf("proof: %w", err)
	}
	if p.Index != r.LogIndex {
		return nil, nil, fmt.Errorf("the proof is for index %d, the entry is at %d", p.Index, r.LogIndex)
	}
	c := update.Custom{Release: r.Name, Version: r.Version, LogIndex: r.LogIndex, Proof: string(r.Proof), Provenance: release.Digest(r.Envelope)}
	rc, err := c.Marshal()
	if err != nil {
		return nil, nil, err
	}
	data, custom := map[string][]byte{}, map[string][]byte{}
	add := func(name string, b, cust []byte) error {
		if _, dup := data[name]; dup {
			return fmt.Errorf("target %s appears twice", name)
		}
		data[name], custom[name] = b, cust
		return nil
	}
	for a, b := range r.Files {
		if err := add(r.target(a), b, rc); err != nil {
			return nil, nil, err
		}
	}
	if err := add(r.target("provenance.json"), r.Envelope, rc); err != nil {
		return nil, nil, err
	}
	if err := add(r.target("release.json"), r.Entry, rc); err != nil {
		return nil, nil, err
	}
	for _, d := range r.Deltas {
		full, ok := r.Files[d.Artifact]
		if !ok {
			return nil, nil, fmt.Errorf("delta for %s: no such artifact", d.Artifact)
		}
		sum := sha256.Sum256(full)
		dc := update.Custom{Release: r.Name, Version: r.Version, DeltaFrom: d.From, Full: r.target(d.Artifact), FullSHA256: hex.EncodeToString(sum[:])}
		b, err := dc.Marshal()
		if err != nil {
			return nil, nil, fmt.Errorf("delta for %s from %s: %w", d.Artifact, d.From, err)
		}
		if err := add(r.target(d.Artifact+".delta-"+d.From), d.Data, b); err != nil {
			return nil, nil, err
		}
	}
	return data, custom, nil
}

// AddRelease adds rel's targets: its artifacts, provenance.json,
// release.json and deltas, each with its custom metadata; then it signs
// the next targets, snapshot and timestamp. It returns ErrExists if any of
// the targets exists. When it returns an error the served repository is
// unchanged; when it returns nil the change is durable.
func (r *Repo) AddRelease(ctx context.Context, rel *Release) error {
	data, custom, err := rel.files()
	if err != nil {
		return fmt.Errorf("adding %s %s to the update repository: %w", rel.Name, rel.Version, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for name := range data {
		if _, ok := r.targets.Signed.Targets[name]; ok {
			return fmt.Errorf("adding %s %s to the update repository: target %s: %w", rel.Name, rel.Version, name, ErrExists)
		}
	}
	add := map[string]*metadata.TargetFiles{}
	for _, name := range slices.Sorted(maps.Keys(data)) {
		tf, err := metadata.TargetFile().FromBytes(name, data[name], "sha256")
		if err != nil {
			return fmt.Errorf("adding %s %s to the update repository: %w", rel.Name, rel.Version, err)
		}
		c := json.RawMessage(custom[name])
		tf.Custom = &c
		if err := atomicfile.Write(r.targetPath(name, tf), data[name], 0o644); err != nil {
			return fmt.Errorf("adding %s %s to the update repository: %w", rel.Name, rel.Version, err)
		}
		add[name] = tf
	}
	if err := r.commit(ctx, time.Now(), add, true); err != nil {
		return fmt.Errorf("adding %s %s to the update repository: %w", rel.Name, rel.Version, err)
	}
	r.logger.Info("update repository: release added", "release", rel.Name, "version", rel.Version, "targets", len(add), "targets_version", r.targets.Signed.Version)
	return nil
}

// Has reports whether the repository holds the targets of release name
// at version (its release.json among them, which every release has).
func (r *Repo) Has(name, version string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.targets.Signed.Targets[name+"/"+version+"/release.json"]
	return ok
}

// targetPath is where a target's bytes are, by go-tuf's hash-prefixed
// layout: <dir>/targets/<dir of name>/<sha256>.<base of name>.
func (r *Repo) targetPath(name string, tf *metadata.TargetFiles) string {
	dir, base := path.Split(name)
	return filepath.Join(r.dir, "targets", filepath.FromSlash(dir), hex.EncodeToString(tf.Hashes["sha256"])+"."+base)
}

// commit signs and writes the next metadata under r.mu. add are new
// targets; newTargets forces a new targets version (a new release, a new
// targets key, an expiry). A new snapshot and timestamp always follow. It
// writes timestamp.json last: until then clients see the previous
// repository. It changes r only once every file is written.
func (r *Repo) commit(ctx context.Context, now time.Time, add map[string]*metadata.TargetFiles, newTargets bool) error {
	targets := r.targets
	if newTargets || targets == nil {
		t := metadata.Targets(expires(now, r.exp.Targets))
		if targets != nil {
			t.Signed.Version = targets.Signed.Version + 1
			t.Signed.Targets = maps.Clone(targets.Signed.Targets)
		}
		maps.Copy(t.Signed.Targets, add)
		if _, err := t.Sign(tufSigner{ctx, r.targetsKey}); err != nil {
			return fmt.Errorf("signing targets: %w", err)
		}
		targets = t
	}
	tb, err := targets.ToBytes(false)
	if err != nil {
		return err
	}
	snap := metadata.Snapshot(expires(now, r.exp.Snapshot))
	if r.snapshot != nil {
		snap.Signed.Version = r.snapshot.Signed.Version + 1
	}
	snap.Signed.Meta["targets.json"] = metaFile(targets.Signed.Version, tb)
	if _, err := snap.Sign(tufSigner{ctx, r.snapshotKey}); err != nil {
		return fmt.Errorf("signing snapshot: %w", err)
	}
	sb, err := snap.ToBytes(false)
	if err != nil {
		return err
	}
	ts := metadata.Timestamp(expires(now, r.exp.Timestamp))
	if r.timestamp != nil {
		ts.Signed.Version = r.timestamp.Signed.Version + 1
	}
	ts.Signed.Meta["snapshot.json"] = metaFile(snap.Signed.Version, sb)
	if _, err := ts.Sign(tufSigner{ctx, r.timestampKey}); err != nil {
		return fmt.Errorf("signing timestamp: %w", err)
	}
	tsb, err := ts.ToBytes(false)
	if err != nil {
		return err
	}
	if targets != r.targets {
		if err := atomicfile.Write(r.metaPath(fmt.Sprintf("%d.targets.json", targets.Signed.Version)), tb, 0o644); err != nil {
			return err
		}
	}
	if err := atomicfile.Write(r.metaPath(fmt.Sprintf("%d.snapshot.json", snap.Signed.Version)), sb, 0o644); err != nil {
		return err
	}
	if err := atomicfile.Write(r.metaPath("timestamp.json"), tsb, 0o644); err != nil {
		return err
	}
	r.targets, r.snapshot, r.timestamp = targets, snap, ts
	r.prune()
	return nil
}

// timestampOnly signs the next timestamp for the same snapshot.
func (r *Repo) timestampOnly(ctx context.Context, now time.Time) error {
	sb, err := os.ReadFile(r.metaPath(fmt.Sprintf("%d.snapshot.json", r.snapshot.Signed.Version)))
	if err != nil {
		return err
	}
	ts := metadata.Timestamp(expires(now, r.exp.Timestamp))
	ts.Signed.Version = r.timestamp.Signed.Version + 1
	ts.Signed.Meta["snapshot.json"] = metaFile(r.snapshot.Signed.Version, sb)
	if _, err := ts.Sign(tufSigner{ctx, r.timestampKey}); err != nil {
		return fmt.Errorf("signing timestamp: %w", err)
	}
	tsb, err := ts.ToBytes(false)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(r.metaPath("timestamp.json"), tsb, 0o644); err != nil {
		return err
	}
	r.timestamp = ts
	return nil
}

func expires(now time.Time, d time.Duration) time.Time {
	// Whole seconds: TUF's date format has none smaller.
	return now.Add(d).UTC().Truncate(time.Second)
}

func metaFile(version int64, b []byte) *metadata.MetaFiles {
	sum := sha256.Sum256(b)
	return &metadata.MetaFiles{Version: version, Length: int64(len(b)), Hashes: metadata.Hashes{"sha256": sum[:]}}
}

// prune removes snapshot and targets versions older than keepVersions
// behind the current ones. Failures are only logged: old files do no harm.
func (r *Repo) prune() {
	for role, cur := range map[string]int64{"snapshot": r.snapshot.Signed.Version, "targets": r.targets.Signed.Version} {
		v := cur - keepVersions
		for ; v > 0; v-- {
			err := os.Remove(r.metaPath(fmt.Sprintf("%d.%s.json", v, role)))
			if errors.Is(err, fs.ErrNotExist) {
				break // older ones went before
			}
			if err != nil {
				r.logger.Warn("update repository: pruning old metadata", "role", role, "version", v, "err", err)
				break
			}
		}
	}
}

// refresh re-signs, under r.mu, what needs it at now: everything when
// there is no metadata yet; targets when it is not signed by the key the
// root names or has less than half its lifetime left; snapshot and
// timestamp likewise.
func (r *Repo) refresh(ctx context.Context, now time.Time) error {
	half := func(exp time.Time, life time.Duration) bool { return exp.Sub(now) < life/2 }
	switch {
	case r.targets == nil || r.root.VerifyDelegate(metadata.TARGETS, r.targets) != nil || half(r.targets.Signed.Expires, r.exp.Targets):
		return r.commit(ctx, now, nil, true)
	case r.root.VerifyDelegate(metadata.SNAPSHOT, r.snapshot) != nil || half(r.snapshot.Signed.Expires, r.exp.Snapshot):
		return r.commit(ctx, now, nil, false)
	case r.root.VerifyDelegate(metadata.TIMESTAMP, r.timestamp) != nil || half(r.timestamp.Signed.Expires, r.exp.Timestamp):
		return r.timestampOnly(ctx, now)
	}
	return nil
}

// Run re-signs metadata before it expires until ctx is done, checking
// every eighth of the timestamp lifetime (at most every ten minutes). It
// logs a failure and tries again at the next check, and warns daily once
// the root has less than 30 days left: only the offline root keys can
// renew it (vitrine tuf rotate).
func (r *Repo) Run(ctx context.Context) {
	every := min(r.exp.Timestamp/8, 10*time.Minute)
	t := time.NewTicker(max(every, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		r.mu.Lock()
		err := r.refresh(ctx, now)
		left := r.root.Signed.Expires.Sub(now)
		warn := left < 30*24*time.Hour && now.Sub(r.rootWarned) > 24*time.Hour
		if warn {
			r.rootWarned = now
		}
		version := r.root.Signed.Version
		r.mu.Unlock()
		if err != nil {
			r.logger.Error("update repository: re-signing metadata", "err", err)
		}
		if warn {
			r.logger.Warn("update repository: the TUF root expires soon; sign the next one with the offline keys (vitrine tuf rotate) and POST it to /updates/root", "version", version, "expires", r.root.Signed.Expires)
		}
	}
}

// SetRoot makes b, the root that follows the current one, current: it
// must chain (ErrRootChain) and name keys the repository holds
// (ErrKeyNotHeld, for instance a new targets key not yet put in
// <dir>/targets.key). It re-reads <dir>/snapshot.key and timestamp.key,
// so that a root can name keys that replaced them since Open. Then it
// re-signs targets, snapshot and timestamp, so that what is served
// verifies under the new root. On error nothing changed.
func (r *Repo) SetRoot(ctx context.Context, b []byte) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next, err := checkNextRoot(r.root, b, time.Now())
	if err != nil {
		return 0, err
	}
	// A new targets, snapshot or timestamp key may have been put in place
	// since Open.
	prevKeys, prevKey, prevRoot, prevBytes := r.targetsKeys, r.targetsKey, r.root, r.rootBytes
	prevSnap, prevTS := r.snapshotKey, r.timestampKey
	undo := func() {
		r.targetsKeys, r.targetsKey, r.root, r.rootBytes = prevKeys, prevKey, prevRoot, prevBytes
		r.snapshotKey, r.timestampKey = prevSnap, prevTS
	}
	if err := r.loadTargetsKeys(); err != nil {
		undo()
		return 0, err
	}
	if err := r.takeReplacedKeys(next); err != nil {
		undo()
		return 0, err
	}
	if err := r.useRoot(next); err != nil {
		undo()
		return 0, err
	}
	// The root goes on disk first: a crash before the metadata that
	// follows is written leaves a root that Open re-signs for.
	name := r.metaPath(strconv.FormatInt(next.Signed.Version, 10) + ".root.json")
	if err := atomicfile.Write(name, b, 0o644); err != nil {
		undo()
		return 0, err
	}
	r.root, r.rootBytes = next, b
	if err := r.commit(ctx, time.Now(), nil, true); err != nil {
		undo()
		if rmErr := os.Remove(name); rmErr != nil {
			r.logger.Error("update repository: removing a root whose metadata could not be signed", "file", name, "err", rmErr)
		}
		return 0, fmt.Errorf("re-signing for root version %d: %w", next.Signed.Version, err)
	}
	for file, k := range map[string]Signer{"snapshot.pub": r.snapshotKey, "timestamp.pub": r.timestampKey} {
		if err := atomicfile.Write(filepath.Join(r.dir, file), PublicPEM(k.Public().(ed25519.PublicKey)), 0o644); err != nil {
			r.logger.Error("update repository: writing a public key", "file", file, "err", err)
		}
	}
	r.logger.Info("update repository: new root", "version", next.Signed.Version)
	return next.Signed.Version, nil
}

// takeReplacedKeys switches the snapshot or timestamp key to the one now
// in <dir>/snapshot.key or <dir>/timestamp.key when root names it: an
// operator who rotates an online key (after a compromise, or to recover
// clients from a fast-forward attack) replaces the file, then posts the
// root that names the new key. Until then the key in use, which the
// current root names, keeps signing.
func (r *Repo) takeReplacedKeys(root *metadata.Metadata[metadata.RootType]) error {
	for _, k := range []struct {
		role string
		key  *Signer
	}{{metadata.SNAPSHOT, &r.snapshotKey}, {metadata.TIMESTAMP, &r.timestampKey}} {
		priv, err := LoadKey(filepath.Join(r.dir, k.role+".key"))
		if err != nil {
			return fmt.Errorf("%s key: %w", k.role, err)
		}
		if names(root, k.role, priv.Public().(ed25519.PublicKey)) {
			*k.key = KeySigner(priv)
		}
	}
	return nil
}

// Previous returns the newest release target (by release-log index) named
// <rel>/<version>/<file>, for a delta from it to the next version: its
// version and bytes, or ok false when there is none.
func (r *Repo) Previous(rel, file string) (version string, data []byte, ok bool, err error) {
	r.mu.Lock()
	var best *metadata.TargetFiles
	var bestC *update.Custom
	for name, tf := range r.targets.Signed.Targets {
		parts := strings.Split(name, "/")
		if len(parts) != 3 || parts[0] != rel || parts[2] != file || tf.Custom == nil {
			continue
		}
		c, err := update.ParseCustom(*tf.Custom)
		if err != nil || c.IsDelta() {
			continue
		}
		if bestC == nil || c.LogIndex > bestC.LogIndex {
			best, bestC = tf, c
		}
	}
	r.mu.Unlock()
	if best == nil {
		return "", nil, false, nil
	}
	data, err = os.ReadFile(r.targetPath(best.Path, best))
	if err != nil {
		return "", nil, false, fmt.Errorf("reading target %s: %w", best.Path, err)
	}
	if err := best.VerifyLengthHashes(data); err != nil {
		return "", nil, false, fmt.Errorf("target %s on disk: %w", best.Path, err)
	}
	return bestC.Version, data, true, nil
}
