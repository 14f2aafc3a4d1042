package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vitrine-dev/vitrine/internal/cli"
	"github.com/vitrine-dev/vitrine/internal/conveyer"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/rebuilder"
	"github.com/vitrine-dev/vitrine/rebuild"
	"github.com/vitrine-dev/vitrine/release"
)

// runRebuild is `vitrine rebuild`, and `vitrine rebuild verify`.
func runRebuild(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "rebuild", "[--platform URL] [--data DIR] [--listen ADDR | --once] [--interval D] [--tls-cert FILE --tls-key FILE] [--metrics-listen ADDR]")
	platformURL := fs.String("platform", cli.DefaultPlatform(), "the platform whose release log to follow; everything is read from its discovery document")
	data := fs.String("data", userDir("rebuilder"), "state directory: rebuilder.key (the verdict signing key, created on first use), state.json, index.json, verdicts/, modcache/")
	listen := fs.String("listen", "127.0.0.1:8090", "address to serve /rebuilds/ on (not with --once)")
	once := fs.Bool("once", false, "rebuild every release not rebuilt yet, print one line each, and exit; the exit status is 1 if one did not reproduce")
	interval := fs.Duration("interval", 30*time.Second, "how often to look for new releases")
	id := fs.String("id", "", "the rebuilder's id in its verdicts, e.g. its public URL (default: urn:vitrine:rebuilder: and the key's id)")
	work := fs.String("work", "", "where rebuilds run, outside any git work tree (default: the system's temporary directory)")
	sf := cli.AddServeFlags(fs)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	key, err := release.LoadOrCreateKey(filepath.Join(*data, "rebuilder.key"))
	if err != nil {
		return fmt.Errorf("the rebuilder's key: %w", err)
	}
	r := &rebuilder.Rebuilder{
		Platform: *platformURL, Key: key, Dir: *data, ID: *id, WorkDir: *work, Logger: e.Logger,
		Builder: &conveyer.Builder{ModCache: filepath.Join(*data, "modcache"), Logger: e.Logger, Progress: rebuildProgress(e)},
	}
	if *once {
		done, err := r.RebuildNew(ctx)
		not := 0
		for _, d := range done {
			fmt.Fprintln(e.Stdout, d.Summary())
			if !d.Reproduced {
				not++
			}
		}
		switch {
		case err != nil:
			return err
		case len(done) == 0:
			fmt.Fprintln(e.Stdout, "nothing new to rebuild")
		case not > 0:
			return fmt.Errorf("%d of %d releases did not reproduce", not, len(done))
		}
		return nil
	}

	tlsConf, err := cli.TLS(ctx, sf.TLSCert, sf.TLSKey, e.Logger)
	if err != nil {
		return err
	}
	ln, base, err := cli.Listen(*listen, tlsConf)
	if err != nil {
		return err
	}
	if err := cli.ServeMetrics(ctx, e, sf.MetricsListen, metrics.New(), tlsConf, filepath.Join(*data, "metrics.token")); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/rebuilds/", r.Handler())
	srv := &http.Server{Handler: httpapi.WithHealth(mux), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	followed := make(chan error, 1)
	go func() { followed <- r.Follow(fctx, *interval) }()
	fmt.Fprintf(e.Stdout, "rebuilder following %s, verdicts at %s/rebuilds/\n  key %s/rebuilds/key\n", *platformURL, base, base)
	var runErr error
	select {
	case <-ctx.Done():
	case err := <-served:
		runErr = fmt.Errorf("server stopped: %w", err)
	case err := <-followed:
		runErr = fmt.Errorf("stopped following the release log: %w", err)
	}
	stop()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); runErr == nil {
		runErr = err
	}
	return runErr
}

// runRebuildVerify is `vitrine rebuild verify`: it fetches a rebuilder's
// verdict on a release and checks its signature.
func runRebuildVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "rebuild verify", "[--rebuilder URL] [--key FILE] [--platform URL [--log-key VKEY] [--witness-policy FILE]] [--wait D] NAME VERSION")
	base := fs.String("rebuilder", "http://127.0.0.1:8090", "the rebuilder's base URL (the prefix of /rebuilds/)")
	keyFile := fs.String("key", "", "the rebuilder's public key (PEM), obtained from the rebuilder out of band (default: fetched from the rebuilder itself, which proves nothing about who signed)")
	platformURL := fs.String("platform", "", "also check that the verdict is about the entry the platform's release log holds at its index, under a checkpoint that meets the witness policy (default: the verdict is checked on its own)")
	logKey := fs.String("log-key", "", "with --platform: the release log's verifier key to trust (default: the one the platform's discovery document names)")
	policyFile := fs.String("witness-policy", "", "with --platform: a file holding the C2SP tlog-policy the checkpoint must meet (default: the one the platform's discovery document names)")
	wait := fs.Duration("wait", 0, "wait up to this long for the rebuilder to publish its verdict (a Go program takes minutes to rebuild)")
	if err := parseFlags(fs, args, 2); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errors.New("give the release's NAME and VERSION")
	}
	name, version := fs.Arg(0), fs.Arg(1)
	root := strings.TrimSuffix(*base, "/") + "/rebuilds/"
	var keyPEM []byte
	var err error
	if *keyFile != "" {
		keyPEM, err = os.ReadFile(*keyFile)
	} else {
		keyPEM, err = get(ctx, root+"key")
	}
	if err != nil {
		return fmt.Errorf("the rebuilder's key: %w", err)
	}
	key, err := release.ParsePublicKey(keyPEM)
	if err != nil {
		return fmt.Errorf("the rebuilder's key: %w", err)
	}
	u, err := findVerdict(ctx, e, root, name, version, *wait)
	if err != nil {
		return err
	}
	ref, err := url.Parse(u)
	if err != nil {
		return err
	}
	rootURL, err := url.Parse(root)
	if err != nil {
		return err
	}
	envelope, err := get(ctx, rootURL.ResolveReference(ref).String())
	if err != nil {
		return err
	}
	v, err := rebuild.VerifyVerdict(ctx, envelope, key)
	if err != nil {
		return err
	}
	if v.Release.Name != name || v.Release.Version != version {
		return fmt.Errorf("the verdict at %s is about %s %s, not %s %s", u, v.Release.Name, v.Release.Version, name, version)
	}
	id, _ := key.KeyID()
	fmt.Fprintf(e.Stdout, "%s\n  signed by %s (key %s%s)\n", v.Summary(), v.Rebuilder, id, map[bool]string{true: ", fetched from the rebuilder: pin it with --key"}[*keyFile == ""])
	if *platformURL != "" {
		pins := rebuilder.Pins{LogKey: *logKey}
		if *policyFile != "" {
			if pins.WitnessPolicy, err = os.ReadFile(*policyFile); err != nil {
				return err
			}
		}
		if err := verdictInLog(ctx, *platformURL, pins, v); err != nil {
			return err
		}
		trusted := "the log key and witness policy its discovery document names (pin them with --log-key and --witness-policy)"
		if *logKey != "" && *policyFile != "" {
			trusted = "the pinned log key and witness policy"
		}
		fmt.Fprintf(e.Stdout, "  about release-log entry %d of %s, proved included in a checkpoint cosigned under %s\n", v.Release.LogIndex, *platformURL, trusted)
	}
	if v.Toolchain.Original != v.Toolchain.Rebuild {
		fmt.Fprintf(e.Stdout, "  toolchains differ: original %s, rebuild %s\n", v.Toolchain.Original, v.Toolchain.Rebuild)
	}
	if !v.Reproduced {
		b, _ := json.MarshalIndent(v.Artifacts, "  ", "  ")
		fmt.Fprintf(e.Stdout, "  artifacts: %s\n", b)
		return fmt.Errorf("%s %s did not reproduce", name, version)
	}
	return nil
}

// findVerdict returns the URL of the rebuilder's latest verdict on name
// and version, listed at root, waiting up to wait for it to appear.
func findVerdict(ctx context.Context, e *env, root, name, version string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	told := false
	for {
		var index rebuilder.Index
		err := getJSON(ctx, root, &index)
		u := ""
		if err == nil {
			// The latest verdict on that name and version.
			for _, l := range index.Verdicts {
				if l.Name == name && l.Version == version {
					u = l.URL
				}
			}
			if u != "" {
				return u, nil
			}
			err = fmt.Errorf("the rebuilder has no verdict on %s %s", name, version)
		}
		if time.Now().After(deadline) {
			return "", err
		}
		if !told {
			fmt.Fprintf(e.Stderr, "waiting up to %s for the verdict on %s %s (%v)\n", wait, name, version, err)
			told = true
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// verdictInLog checks that v is about the entry the platform's release
// log holds at the verdict's index: the same bytes (by digest), hence the
// same name, version and artifacts.
func verdictInLog(ctx context.Context, platformURL string, pins rebuilder.Pins, v *rebuild.Verdict) error {
	entry, err := (&rebuilder.Rebuilder{Platform: platformURL}).LoggedEntry(ctx, v.Release.LogIndex, pins)
	if err != nil {
		return fmt.Errorf("the release log: %w", err)
	}
	if got := release.Digest(entry); got != v.Release.Entry {
		return fmt.Errorf("the release log: entry %d is %s, the verdict is about %s", v.Release.LogIndex, got, v.Release.Entry)
	}
	e, err := release.ParseEntry(entry)
	if err != nil {
		return fmt.Errorf("the release log: entry %d: %w", v.Release.LogIndex, err)
	}
	if e.Name != v.Release.Name || e.Version != v.Release.Version || !slices.Equal(e.Artifacts, v.Subjects) {
		return fmt.Errorf("the release log: entry %d is %s %s with other artifacts than the verdict's subjects", v.Release.LogIndex, e.Name, e.Version)
	}
	return nil
}

// rebuildProgress shows a person what a rebuild is doing: a line on
// e.Stderr as each step begins, with the time since that release's
// rebuild began (a Go program takes minutes).
func rebuildProgress(e *env) func(r *conveyer.Recipe, step string) {
	var mu sync.Mutex
	started := map[string]time.Time{}
	return func(r *conveyer.Recipe, step string) {
		mu.Lock()
		defer mu.Unlock()
		k := r.Name + " " + r.Version
		if _, ok := started[k]; !ok || step == conveyer.FirstStep {
			started[k] = time.Now()
			fmt.Fprintf(e.Stderr, "rebuilding %s\n", k)
		}
		fmt.Fprintf(e.Stderr, "  %s  %s\n", elapsed(time.Since(started[k])), step)
	}
}
