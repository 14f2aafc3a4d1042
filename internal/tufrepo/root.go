package tufrepo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/internal/fault"
)

// ErrRootChain means a root does not follow the current one: wrong
// version, or not signed by a threshold of both the current and its own
// root keys.
var ErrRootChain = fault.New(fault.ErrForbidden, "root does not chain from the current root")

// ErrBadRoot means a body is not a usable TUF root: it does not parse,
// has expired, or turns consistent snapshots off.
var ErrBadRoot = fault.New(fault.ErrInvalid, "not a usable TUF root")

// Online names the keys of the three roles the platform signs with: the
// targets key (the release key unless replaced) and the snapshot and
// timestamp keys, which the platform creates under its data directory.
type Online struct {
	Targets, Snapshot, Timestamp ed25519.PublicKey
}

// InitConfig configures [Init].
type InitConfig struct {
	// Dir receives the root keys (root-<keyid>.key, mode 0600) and
	// 1.root.json. Move it offline afterwards.
	Dir string
	// Keys is how many root keys to make (default 3); Threshold how many of
	// them must sign a root (default 2).
	Keys, Threshold int
	Online
	// Expires is when the root expires (default a year from now).
	Expires time.Time
}

// Init makes a TUF root of version 1 with consistent snapshots: it
// generates the offline root keys into cfg.Dir, names the online keys for
// the other roles, signs the root with every root key and writes it to
// cfg.Dir/1.root.json. It returns the signed root. It refuses a directory
// that already holds a root or root keys.
func Init(cfg InitConfig) ([]byte, error) {
	if cfg.Keys == 0 {
		cfg.Keys = 3
	}
	if cfg.Threshold == 0 {
		cfg.Threshold = min(2, cfg.Keys)
	}
	if cfg.Keys < 1 || cfg.Threshold < 1 || cfg.Threshold > cfg.Keys {
		return nil, fmt.Errorf("making a TUF root: %d keys with threshold %d; want 1 <= threshold <= keys", cfg.Keys, cfg.Threshold)
	}
	if cfg.Expires.IsZero() {
		cfg.Expires = time.Now().AddDate(1, 0, 0)
	}
	if old, _ := filepath.Glob(filepath.Join(cfg.Dir, "root-*.key")); len(old) > 0 {
		return nil, fmt.Errorf("making a TUF root: %s already holds root keys", cfg.Dir)
	}
	if _, err := os.Lstat(filepath.Join(cfg.Dir, "1.root.json")); err == nil {
		return nil, fmt.Errorf("making a TUF root: %s already holds 1.root.json", cfg.Dir)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("making a TUF root: %w", err)
	}
	keys, err := newRootKeys(cfg.Dir, cfg.Keys)
	if err != nil {
		return nil, fmt.Errorf("making a TUF root: %w", err)
	}
	root := metadata.Root(cfg.Expires.UTC().Truncate(time.Second))
	root.Signed.ConsistentSnapshot = true
	if err := setRoles(root, publics(keys), cfg.Threshold, cfg.Online); err != nil {
		return nil, fmt.Errorf("making a TUF root: %w", err)
	}
	b, err := signRoot(root, keys)
	if err != nil {
		return nil, fmt.Errorf("making a TUF root: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(cfg.Dir, "1.root.json"), b, 0o644); err != nil {
		return nil, fmt.Errorf("making a TUF root: %w", err)
	}
	return b, nil
}

// Rotation configures [Rotate].
type Rotation struct {
	// Current is the current signed root.
	Current []byte
	// Keys are the private root keys at hand: at least the current root's
	// threshold of those it names must be among them. Without NewKeys they
	// stay the root keys.
	Keys []ed25519.PrivateKey
	// NewKeys, when set, replace the root keys. Threshold, when set, is
	// how many root keys must sign (default: unchanged).
	NewKeys   []ed25519.PrivateKey
	Threshold int
	// Targets, Snapshot and Timestamp, when set, replace the key of that
	// role. A new Targets key is how a compromised targets key is revoked.
	Online
	// Expires is when the new root expires (default a year from now).
	Expires time.Time
}

// Rotate makes the root that follows r.Current: version + 1, signed by a
// threshold of the current root keys and by every new root key, as a TUF
// client requires to move from one root to the next. It checks the result
// chains from r.Current (go-tuf's VerifyDelegate) before returning it.
func Rotate(r Rotation) ([]byte, error) {
	cur, err := parseRoot(r.Current)
	if err != nil {
		return nil, fmt.Errorf("rotating the TUF root: current root: %w", err)
	}
	next, err := metadata.Root().FromBytes(r.Current)
	if err != nil {
		return nil, fmt.Errorf("rotating the TUF root: current root: %w", err)
	}
	next.ClearSignatures()
	next.Signed.Version++
	if r.Expires.IsZero() {
		r.Expires = time.Now().AddDate(1, 0, 0)
	}
	next.Signed.Expires = r.Expires.UTC().Truncate(time.Second)
	next.Signed.ConsistentSnapshot = true

	// The keys that sign for the current root.
	curRole := cur.Signed.Roles[metadata.ROOT]
	var signers []ed25519.PrivateKey
	for _, k := range r.Keys {
		if slices.Contains(curRole.KeyIDs, KeyID(k.Public().(ed25519.PublicKey))) {
			signers = append(signers, k)
		}
	}
	if len(signers) < curRole.Threshold {
		return nil, fmt.Errorf("rotating the TUF root: %d of the current root's keys at hand, its threshold is %d", len(signers), curRole.Threshold)
	}
	var rootKeys []ed25519.PrivateKey
	threshold := curRole.Threshold
	if r.NewKeys != nil {
		rootKeys = r.NewKeys
	} else {
		rootKeys = signers
	}
	if r.Threshold != 0 {
		threshold = r.Threshold
	}
	online := Online{
		Targets:   pick(r.Targets, roleKey(cur, metadata.TARGETS)),
		Snapshot:  pick(r.Snapshot, roleKey(cur, metadata.SNAPSHOT)),
		Timestamp: pick(r.Timestamp, roleKey(cur, metadata.TIMESTAMP)),
	}
	var newPub []ed25519.PublicKey
	if r.NewKeys != nil {
		newPub = publics(r.NewKeys)
	} else {
		// Keep the current root key ids, those at hand or not.
		for _, id := range curRole.KeyIDs {
			pub, err := cur.Signed.Keys[id].ToPublicKey()
			if err != nil {
				return nil, fmt.Errorf("rotating the TUF root: root key %s: %w", id, err)
			}
			edPub, ok := pub.(ed25519.PublicKey)
			if !ok {
				return nil, fmt.Errorf("rotating the TUF root: root key %s is not Ed25519", id)
			}
			newPub = append(newPub, edPub)
		}
	}
	if threshold < 1 || threshold > len(newPub) {
		return nil, fmt.Errorf("rotating the TUF root: threshold %d with %d root keys", threshold, len(newPub))
	}
	if err := setRoles(next, newPub, threshold, online); err != nil {
		return nil, fmt.Errorf("rotating the TUF root: %w", err)
	}
	// Sign with the current keys, then with each new key not among them.
	all := slices.Clone(signers)
	for _, k := range rootKeys {
		if !slices.ContainsFunc(all, func(a ed25519.PrivateKey) bool { return a.Equal(k) }) {
			all = append(all, k)
		}
	}
	b, err := signRoot(next, all)
	if err != nil {
		return nil, fmt.Errorf("rotating the TUF root: %w", err)
	}
	if _, err := checkNextRoot(cur, b, time.Now()); err != nil {
		return nil, fmt.Errorf("rotating the TUF root: %w", err)
	}
	return b, nil
}

func pick(a, b ed25519.PublicKey) ed25519.PublicKey {
	if a != nil {
		return a
	}
	return b
}

// roleKey returns the first key of role in root, or nil.
func roleKey(root *metadata.Metadata[metadata.RootType], role string) ed25519.PublicKey {
	r := root.Signed.Roles[role]
	if r == nil || len(r.KeyIDs) == 0 {
		return nil
	}
	k := root.Signed.Keys[r.KeyIDs[0]]
	if k == nil {
		return nil
	}
	pub, err := k.ToPublicKey()
	if err != nil {
		return nil
	}
	ed, _ := pub.(ed25519.PublicKey)
	return ed
}

// setRoles sets every role of root: rootKeys with threshold for root, one
// key each for the others. Keys no role names are dropped.
func setRoles(root *metadata.Metadata[metadata.RootType], rootKeys []ed25519.PublicKey, threshold int, online Online) error {
	if online.Targets == nil || online.Snapshot == nil || online.Timestamp == nil {
		return errors.New("the targets, snapshot and timestamp keys are all needed")
	}
	root.Signed.Keys = map[string]*metadata.Key{}
	root.Signed.Roles = map[string]*metadata.Role{}
	add := func(role string, keys []ed25519.PublicKey, threshold int) error {
		r := &metadata.Role{KeyIDs: []string{}, Threshold: threshold}
		for _, pub := range keys {
			k, id, err := tufKey(pub)
			if err != nil {
				return err
			}
			if slices.Contains(r.KeyIDs, id) {
				return fmt.Errorf("key %s appears twice in role %s", id, role)
			}
			root.Signed.Keys[id] = k
			r.KeyIDs = append(r.KeyIDs, id)
		}
		root.Signed.Roles[role] = r
		return nil
	}
	if err := add(metadata.ROOT, rootKeys, threshold); err != nil {
		return err
	}
	for role, k := range map[string]ed25519.PublicKey{metadata.TARGETS: online.Targets, metadata.SNAPSHOT: online.Snapshot, metadata.TIMESTAMP: online.Timestamp} {
		if err := add(role, []ed25519.PublicKey{k}, 1); err != nil {
			return err
		}
	}
	return nil
}

func signRoot(root *metadata.Metadata[metadata.RootType], keys []ed25519.PrivateKey) ([]byte, error) {
	for _, k := range keys {
		if _, err := root.Sign(tufSigner{context.Background(), KeySigner(k)}); err != nil {
			return nil, err
		}
	}
	b, err := root.ToBytes(true)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func newRootKeys(dir string, n int) ([]ed25519.PrivateKey, error) {
	var keys []ed25519.PrivateKey
	for range n {
		tmp := filepath.Join(dir, ".root-new.key")
		k, err := NewKey(tmp)
		if err != nil {
			return nil, err
		}
		id := KeyID(k.Public().(ed25519.PublicKey))
		if err := os.Rename(tmp, filepath.Join(dir, "root-"+id[:16]+".key")); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, atomicfile.SyncDir(dir)
}

// NewRootKeys generates n root keys into dir as root-<keyid>.key (mode
// 0600), for a rotation that replaces the root keys.
func NewRootKeys(dir string, n int) ([]ed25519.PrivateKey, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return newRootKeys(dir, n)
}

// LoadRootKeys reads every root-*.key in dir.
func LoadRootKeys(dir string) ([]ed25519.PrivateKey, error) {
	names, err := filepath.Glob(filepath.Join(dir, "root-*.key"))
	if err != nil {
		return nil, err
	}
	var keys []ed25519.PrivateKey
	for _, n := range names {
		k, err := LoadKey(n)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func publics(keys []ed25519.PrivateKey) []ed25519.PublicKey {
	var pubs []ed25519.PublicKey
	for _, k := range keys {
		pubs = append(pubs, k.Public().(ed25519.PublicKey))
	}
	return pubs
}

// MaxRootSize bounds a root.json, as go-tuf's client does.
const MaxRootSize = 512000

// CheckRoot checks that b is a signed TUF root that a threshold of its
// own root keys signed: what a repository may offer its clients as their
// first trusted root.
func CheckRoot(b []byte) error {
	_, err := parseRoot(b)
	return err
}

// parseRoot reads a signed root and checks that a threshold of its own
// root keys signed it.
func parseRoot(b []byte) (*metadata.Metadata[metadata.RootType], error) {
	if len(b) > MaxRootSize {
		return nil, fmt.Errorf("root is %d bytes, more than %d", len(b), MaxRootSize)
	}
	root, err := metadata.Root().FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("not a TUF root: %w", err)
	}
	if root.Signed.Version < 1 {
		return nil, fmt.Errorf("root version %d", root.Signed.Version)
	}
	if err := root.VerifyDelegate(metadata.ROOT, root); err != nil {
		return nil, fmt.Errorf("root version %d is not signed by a threshold of its own root keys: %w", root.Signed.Version, err)
	}
	return root, nil
}

// checkNextRoot checks that b is the root that follows cur, the way a TUF
// client does (version + 1, a threshold of cur's root keys and of its own
// signed it), and also that it has not expired and keeps consistent
// snapshots.
func checkNextRoot(cur *metadata.Metadata[metadata.RootType], b []byte, now time.Time) (*metadata.Metadata[metadata.RootType], error) {
	next, err := metadata.Root().FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRoot, err)
	}
	if next.Signed.Version != cur.Signed.Version+1 {
		return nil, fmt.Errorf("root version %d, want %d: %w", next.Signed.Version, cur.Signed.Version+1, ErrRootChain)
	}
	if err := cur.VerifyDelegate(metadata.ROOT, next); err != nil {
		return nil, fmt.Errorf("root version %d is not signed by a threshold of the keys of version %d (%v): %w", next.Signed.Version, cur.Signed.Version, err, ErrRootChain)
	}
	if err := next.VerifyDelegate(metadata.ROOT, next); err != nil {
		return nil, fmt.Errorf("root version %d is not signed by a threshold of its own root keys (%v): %w", next.Signed.Version, err, ErrRootChain)
	}
	if next.Signed.IsExpired(now) {
		return nil, fmt.Errorf("root version %d expired at %s: %w", next.Signed.Version, next.Signed.Expires.Format(time.RFC3339), ErrBadRoot)
	}
	if !next.Signed.ConsistentSnapshot {
		return nil, fmt.Errorf("root version %d turns consistent snapshots off; this repository serves only consistent snapshots: %w", next.Signed.Version, ErrBadRoot)
	}
	return next, nil
}

// sameRoot reports whether a and b hold the same signed root, whatever
// their formatting.
func sameRoot(a, b *metadata.Metadata[metadata.RootType]) bool {
	ca, err1 := cjson.EncodeCanonical(a.Signed)
	cb, err2 := cjson.EncodeCanonical(b.Signed)
	return err1 == nil && err2 == nil && bytes.Equal(ca, cb)
}

// rootFileVersion returns N for a file named N.root.json.
func rootFileVersion(name string) (int64, bool) {
	v, ok := strings.CutSuffix(name, ".root.json")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || strconv.FormatInt(n, 10) != v {
		return 0, false
	}
	return n, true
}
