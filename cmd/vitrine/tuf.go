package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/vitrine-dev/vitrine/internal/cli"
	"github.com/vitrine-dev/vitrine/internal/tufrepo"
	"github.com/vitrine-dev/vitrine/update"
)

// runTUFInit makes the update repository's root: offline root keys and a
// signed 1.root.json, naming the platform's online keys.
func runTUFInit(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "tuf init", "--out DIR (--data DIR | --targets-key PEM --snapshot-key PEM --timestamp-key PEM) [--keys N --threshold M]")
	out := fs.String("out", newOfflineDir("tuf-init"), "directory for the root keys and 1.root.json; keep it offline (default: a new directory under ~/.config/vitrine/tuf-offline/)")
	keys := fs.Int("keys", 3, "number of root keys")
	threshold := fs.Int("threshold", 2, "how many root keys must sign a root")
	data := fs.String("data", "", "the platform's data directory, on the platform's machine: take the targets key from <data>/updates/targets.key or <data>/release.key and the snapshot and timestamp keys from <data>/updates (created if missing)")
	targets := fs.String("targets-key", "", "PEM file of the targets key (public, or the private key itself): the release key")
	snapshot := fs.String("snapshot-key", "", "PEM file of the snapshot key (<data>/updates/snapshot.pub)")
	timestamp := fs.String("timestamp-key", "", "PEM file of the timestamp key (<data>/updates/timestamp.pub)")
	expires := fs.Duration("expires", 365*24*time.Hour, "how long the root stays valid")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	var online tufrepo.Online
	var err error
	switch {
	case *data != "" && (*targets != "" || *snapshot != "" || *timestamp != ""):
		return errors.New("give either --data or the three key files, not both")
	case *data != "":
		online, err = onlineKeysFromData(*data)
	case *targets == "" || *snapshot == "" || *timestamp == "":
		return errors.New("give --data DIR, or all of --targets-key, --snapshot-key and --timestamp-key")
	default:
		online.Targets, err = readPublicKey(*targets)
		if err == nil {
			online.Snapshot, err = readPublicKey(*snapshot)
		}
		if err == nil {
			online.Timestamp, err = readPublicKey(*timestamp)
		}
	}
	if err != nil {
		return err
	}
	if _, err := tufrepo.Init(tufrepo.InitConfig{Dir: *out, Keys: *keys, Threshold: *threshold, Online: online, Expires: time.Now().Add(*expires)}); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "wrote %d root keys (threshold %d) and 1.root.json to %s\n", *keys, *threshold, *out)
	fmt.Fprintf(e.Stdout, "start the platform with --tuf-root %s, then move %s off this machine\n", filepath.Join(*out, "1.root.json"), *out)
	return nil
}

// onlineKeysFromData reads (or creates) the online keys in a platform's
// data directory, as the platform itself would.
func onlineKeysFromData(data string) (tufrepo.Online, error) {
	var o tufrepo.Online
	dir := filepath.Join(data, "updates")
	tk, err := tufrepo.LoadKey(filepath.Join(dir, "targets.key"))
	if errors.Is(err, fs.ErrNotExist) {
		tk, err = tufrepo.LoadOrCreateKey(filepath.Join(data, "release.key"), "")
	}
	if err != nil {
		return o, err
	}
	sk, err := tufrepo.LoadOrCreateKey(filepath.Join(dir, "snapshot.key"), filepath.Join(dir, "snapshot.pub"))
	if err != nil {
		return o, err
	}
	tsk, err := tufrepo.LoadOrCreateKey(filepath.Join(dir, "timestamp.key"), filepath.Join(dir, "timestamp.pub"))
	if err != nil {
		return o, err
	}
	return tufrepo.Online{Targets: tk.Public().(ed25519.PublicKey), Snapshot: sk.Public().(ed25519.PublicKey), Timestamp: tsk.Public().(ed25519.PublicKey)}, nil
}

func readPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := tufrepo.ParsePublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// runTUFRotate signs the root that follows the current one.
func runTUFRotate(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "tuf rotate", "--out DIR --root CURRENT.json [--new-root-keys N] [--threshold M] [--targets-key PEM | --new-targets-key] [--snapshot-key PEM] [--timestamp-key PEM]")
	out := fs.String("out", "", "the offline directory (required): its root-*.key sign, and <N+1>.root.json (and new keys) are written to it; 'vitrine up' logs where it wrote them")
	current := fs.String("root", "", "the current root.json (GET <platform>/updates/root.json)")
	newRootKeys := fs.Int("new-root-keys", 0, "replace the root keys with this many new ones (0 keeps them)")
	threshold := fs.Int("threshold", 0, "root threshold of the new root (0 keeps it)")
	targets := fs.String("targets-key", "", "PEM file of a new targets key (public or private): revokes the current one")
	newTargets := fs.Bool("new-targets-key", false, "generate a new targets key into <out>/targets.key (revoking the current one); copy it to the platform's <data>/updates/targets.key before posting the root")
	snapshot := fs.String("snapshot-key", "", "PEM file of a new snapshot key (public or private), e.g. the platform's new <data>/updates/snapshot.pub")
	timestamp := fs.String("timestamp-key", "", "PEM file of a new timestamp key (public or private): revokes a compromised one and ends a fast-forward attack")
	expires := fs.Duration("expires", 365*24*time.Hour, "how long the new root stays valid")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *current == "" {
		return errors.New("--root CURRENT.json is needed")
	}
	if *out == "" {
		return errors.New("--out DIR is needed: the offline directory holding the root keys")
	}
	if *targets != "" && *newTargets {
		return errors.New("give --targets-key or --new-targets-key, not both")
	}
	cur, err := os.ReadFile(*current)
	if err != nil {
		return err
	}
	held, err := tufrepo.LoadRootKeys(*out)
	if err != nil {
		return err
	}
	r := tufrepo.Rotation{Current: cur, Keys: held, Threshold: *threshold, Expires: time.Now().Add(*expires)}
	if *newRootKeys > 0 {
		if r.NewKeys, err = tufrepo.NewRootKeys(*out, *newRootKeys); err != nil {
			return err
		}
	}
	switch {
	case *targets != "":
		if r.Targets, err = readPublicKey(*targets); err != nil {
			return err
		}
	case *newTargets:
		k, err := tufrepo.NewKey(filepath.Join(*out, "targets.key"))
		if err != nil {
			return err
		}
		r.Targets = k.Public().(ed25519.PublicKey)
	}
	for _, k := range []struct {
		file string
		dst  *ed25519.PublicKey
	}{{*snapshot, &r.Snapshot}, {*timestamp, &r.Timestamp}} {
		if k.file == "" {
			continue
		}
		if *k.dst, err = readPublicKey(k.file); err != nil {
			return err
		}
	}
	next, err := tufrepo.Rotate(r)
	if err != nil {
		return err
	}
	root, err := metadata.Root().FromBytes(next)
	if err != nil {
		return err
	}
	name := filepath.Join(*out, fmt.Sprintf("%d.root.json", root.Signed.Version))
	if err := os.WriteFile(name, next, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "wrote %s\n", name)
	if *newRootKeys > 0 {
		fmt.Fprintf(e.Stdout, "the new root keys are in %s; the old ones no longer sign: retire them\n", *out)
	}
	if *newTargets || *targets != "" {
		fmt.Fprintf(e.Stdout, "put the new targets key in the platform's <data>/updates/targets.key (mode 0600) before posting the root\n")
	}
	if *snapshot != "" || *timestamp != "" {
		fmt.Fprintf(e.Stdout, "put the new snapshot or timestamp key in the platform's <data>/updates/ (mode 0600) before posting the root, without restarting between\n")
	}
	fmt.Fprintf(e.Stdout, "then: vitrine tuf push-root --platform URL %s\n", name)
	return nil
}

// runTUFPushRoot posts a new root to the platform.
func runTUFPushRoot(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "tuf push-root", "[--platform URL] [--token FILE] ROOT.json")
	platformURL := fs.String("platform", cli.DefaultPlatform(), "the platform's base URL")
	tokenFile := fs.String("token", cli.DefaultOperatorToken, "file holding the operator token")
	if err := parseFlags(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("name the root.json to post")
	}
	body, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	token, err := cli.ReadToken(*tokenFile, "the operator token")
	if err != nil {
		return err
	}
	var got struct {
		Version int64 `json:"version"`
	}
	if err := call(ctx, http.MethodPost, strings.TrimSuffix(*platformURL, "/")+"/updates/root", token, body, &got); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "the platform serves root version %d\n", got.Version)
	return nil
}

// runTUFVerify runs go-tuf's client against a platform from its discovery
// document alone and downloads every target.
func runTUFVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "tuf verify", "[--platform URL] [--cache DIR]")
	platformURL := fs.String("platform", cli.DefaultPlatform(), "the platform whose discovery document names the update repository and its root")
	cache := fs.String("cache", "", "go-tuf's metadata and targets cache; it keeps the latest trusted root between runs (default: a temporary directory)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	d, err := fetchDiscovery(ctx, *platformURL)
	if err != nil {
		return err
	}
	if d.Updates.URL == "" || len(d.Updates.Root) == 0 {
		return errors.New("the discovery document lists no update repository")
	}
	dir := *cache
	if dir == "" {
		tmp, err := os.MkdirTemp("", "vitrine-tuf-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	// The discovered root on first use; afterwards the latest root go-tuf
	// stored, so that a rotation is followed from the root trusted before.
	root := []byte(d.Updates.Root)
	if b, err := os.ReadFile(filepath.Join(dir, "metadata", "root.json")); err == nil {
		root = b
	}
	cfg, err := config.New(d.Updates.URL, root)
	if err != nil {
		return err
	}
	cfg.LocalMetadataDir, cfg.LocalTargetsDir = filepath.Join(dir, "metadata"), filepath.Join(dir, "targets")
	u, err := updater.New(cfg)
	if err != nil {
		return err
	}
	if err := u.Refresh(); err != nil {
		return fmt.Errorf("TUF: %w", err)
	}
	targets := u.GetTopLevelTargets()
	names := slices.Sorted(maps.Keys(targets))
	for _, n := range names {
		info, err := u.GetTargetInfo(n)
		if err != nil {
			return fmt.Errorf("TUF: target %s: %w", n, err)
		}
		if _, _, err := u.DownloadTarget(info, "", ""); err != nil {
			return fmt.Errorf("TUF: target %s: %w", n, err)
		}
		what := "no custom metadata"
		if info.Custom != nil {
			c, err := update.ParseCustom(*info.Custom)
			if err != nil {
				return fmt.Errorf("target %s: %w", n, err)
			}
			what = fmt.Sprintf("release-log entry %d", c.LogIndex)
			if c.IsDelta() {
				what = "delta from version " + c.DeltaFrom + " to " + c.Full
			}
		}
		fmt.Fprintf(e.Stdout, "OK: %s (%d bytes, %s)\n", n, info.Length, what)
	}
	tm := u.GetTrustedMetadataSet()
	fmt.Fprintf(e.Stdout, "%d targets verified by go-tuf under root version %d (targets version %d)\n", len(names), tm.Root.Signed.Version, tm.Targets[metadata.TARGETS].Signed.Version)
	return nil
}
