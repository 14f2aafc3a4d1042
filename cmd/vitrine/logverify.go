package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	vclient "github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/cli"
	"github.com/vitrine-dev/vitrine/tlog"
)

// target says which log a command talks to and what it trusts: either
// --url, --vkey and --policy, or --platform and --log, which read the three
// from a platform's discovery document.
type target struct {
	url, vkey, policy string
	platform, log     string
}

func (t *target) register(fs *flag.FlagSet) {
	fs.StringVar(&t.url, "url", "", "base URL of the log (the prefix of /checkpoint and /tile/)")
	fs.StringVar(&t.vkey, "vkey", "", "the log's verifier key, or a file holding it (a platform's are <data>/logs/<name>/log.vkey)")
	fs.StringVar(&t.policy, "policy", "", "C2SP tlog-policy file: the witnesses and quorum to require (default: none required)")
	fs.StringVar(&t.platform, "platform", "", "base URL of a Vitrine platform: read --url, --vkey and --policy from its discovery document, trusted on first use (pinned under ~/.config/vitrine/pins) and required to stay the same")
	fs.StringVar(&t.log, "log", "", "with --platform: the log's name, e.g. release")
}

// resolved is a target ready to use.
type resolved struct {
	vkey     string
	url      *url.URL
	verifier note.Verifier
	policy   *tlog.Policy
	fetcher  tlog.Fetcher
}

// httpClient fetches tiles and bundles: large read buffers keep the number
// of system calls per 8 KiB tile or 30 KiB bundle low, which is most of
// the client's cost when it verifies a whole tree.
var httpClient = &http.Client{
	Timeout: 60 * time.Second,
	Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConnsPerHost: 32,
		ReadBufferSize:      256 << 10,
		IdleConnTimeout:     30 * time.Second,
	},
}

func (t *target) resolve(ctx context.Context, needURL bool) (*resolved, error) {
	if t.platform == "" && t.url == "" && t.vkey == "" && needURL {
		// Neither a log nor a platform named: the default platform
		// ($VITRINE_URL, or vitrine up on its default address).
		t.platform = cli.DefaultPlatform()
	}
	if t.platform != "" {
		if t.log == "" {
			return nil, errors.New("--platform needs --log NAME")
		}
		d, err := fetchDiscovery(ctx, t.platform)
		if err != nil {
			return nil, err
		}
		l, ok := d.Log(t.log)
		if !ok {
			return nil, fmt.Errorf("platform %s has no log %q", t.platform, t.log)
		}
		t.url, t.vkey = l.URL, l.VKey
		t.policy = d.WitnessPolicy
	} else if t.policy != "" {
		b, err := os.ReadFile(t.policy)
		if err != nil {
			return nil, fmt.Errorf("reading policy: %w", err)
		}
		t.policy = string(b)
	}
	if t.vkey == "" {
		return nil, errors.New("--vkey is required (or --platform and --log)")
	}
	vkey := t.vkey
	if !strings.Contains(vkey, "+") {
		b, err := os.ReadFile(vkey)
		if err != nil {
			return nil, fmt.Errorf("reading verifier key: %w", err)
		}
		vkey = strings.TrimSpace(string(b))
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("parsing verifier key: %w", err)
	}
	policyText := t.policy
	if policyText == "" {
		policyText = "quorum none\n"
	}
	p, err := tlog.ParsePolicy([]byte(policyText))
	if err != nil {
		return nil, fmt.Errorf("parsing policy: %w", err)
	}
	r := &resolved{vkey: vkey, verifier: v, policy: p}
	if needURL {
		if t.url == "" {
			return nil, errors.New("--url is required (or --platform and --log)")
		}
		u, err := url.Parse(strings.TrimSuffix(t.url, "/") + "/")
		if err != nil {
			return nil, fmt.Errorf("parsing --url: %w", err)
		}
		// Through the client: every answer is cut at the size its
		// resource may have.
		l, err := vclient.NewLog(u.String(), vkey, []byte(policyText), httpClient, true)
		if err != nil {
			return nil, err
		}
		r.url, r.fetcher = u, l.Fetcher
	}
	return r, nil
}

// log is the resolved log, for the client package's verified reads.
func (r *resolved) log() (*vclient.Log, error) {
	return vclient.NewLogFetcher(r.fetcher, r.vkey, r.policy)
}

// fetchDiscovery reads a platform's discovery document, whose keys are
// trusted on first use and required of it ever after (pinned under
// ~/.config/vitrine/pins): a platform whose keys changed is refused, with
// what changed named. Every command reads the document through here, so
// none trusts a copy that was not checked.
func fetchDiscovery(ctx context.Context, base string) (*vclient.Discovery, error) {
	d, err := vclient.FetchDiscovery(ctx, httpClient, base)
	if err != nil {
		return nil, err
	}
	if _, _, err := vclient.TrustOnFirstUse(vclient.PinsPath(userDir("pins"), base), base, d); err != nil {
		return nil, err
	}
	return d, nil
}

func runLogVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "log verify", "(--url URL --vkey KEY [--policy FILE] | --platform URL --log NAME) [--state FILE]")
	var t target
	t.register(fs)
	state := fs.String("state", "", "monitor state file: the last verified checkpoint (default: in the user cache directory, one per log: origin and key)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	cli.TuneGC()
	r, err := t.resolve(ctx, true)
	if err != nil {
		return err
	}
	start := time.Now()
	l, err := r.log()
	if err != nil {
		return err
	}
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "checkpoint  %s size %d: log signature ok, witness quorum ok (cosigned by %s)\n", cp.Origin, cp.Size, strings.Join(cp.Cosigners, ", "))

	statePath := *state
	if statePath == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("no --state and no cache directory: %w", err)
		}
		// Named by the origin and the key: every platform installed
		// with the default name has the origin vitrine.local/logs/…, and
		// one state for all of them raised false alarms.
		statePath = vclient.StatePath(filepath.Join(dir, "vitrine", "monitor"), cp.Origin, r.vkey)
	}
	prev, err := tlog.LoadState(statePath)
	if err != nil {
		return err
	}
	if prev != nil {
		if prev.Origin != cp.Origin {
			return fmt.Errorf("state file %s is for %q, not %q", statePath, prev.Origin, cp.Origin)
		}
		// The checkpoint the state keeps must be this log's (a state made
		// for another log of the same origin is no evidence), and this
		// one consistent with it; a fork names both.
		if err := l.ConsistentState(ctx, prev, cp); err != nil {
			return fmt.Errorf("state file %s: %w", statePath, err)
		}
		fmt.Fprintf(e.Stdout, "consistency with size %d seen before: ok\n", prev.Size)
	} else {
		fmt.Fprintf(e.Stdout, "consistency: no earlier checkpoint in %s; trusting this one from now on\n", statePath)
	}
	rep, err := tlog.VerifyTree(ctx, r.fetcher, cp.Size, cp.Hash)
	if err != nil {
		return fmt.Errorf("tree: %w", err)
	}
	fmt.Fprintf(e.Stdout, "tree        %s recomputed from their bundles, %s checked: root ok\n", plural(rep.Entries, "entry", "entries"), plural(rep.Tiles, "tile", "tiles"))
	if err := tlog.SaveState(statePath, &tlog.State{Origin: cp.Origin, Size: cp.Size, Root: cp.Hash, Checkpoint: cp.Raw}); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "verified in %v; state saved to %s\n", time.Since(start).Round(time.Millisecond), statePath)
	return nil
}

func runLogProve(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "log prove", "(--url URL --vkey KEY [--policy FILE] | --platform URL --log NAME) --index N [--out FILE]")
	var t target
	t.register(fs)
	index := fs.String("index", "", "index of the entry to prove (required)")
	out := fs.String("out", "", "write the proof here (default: standard output)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	idx, err := strconv.ParseUint(*index, 10, 64)
	if err != nil {
		return errors.New("--index must be a decimal entry index")
	}
	r, err := t.resolve(ctx, true)
	if err != nil {
		return err
	}
	l, err := r.log()
	if err != nil {
		return err
	}
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		return err
	}
	// The proof is checked against the entry before it is written.
	_, proof, err := l.Entry(ctx, cp, idx)
	if err != nil {
		return err
	}
	b := proof.Marshal()
	if *out == "" {
		_, err = e.Stdout.Write(b)
		return err
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "proof of entry %d in %s at size %d (checked) written to %s\n", idx, cp.Origin, cp.Size, *out)
	return nil
}

func runLogVerifyProof(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "log verify-proof", "(--vkey KEY [--policy FILE] | --platform URL --log NAME) (--entry FILE | --leaf-hash HEX) PROOF")
	var t target
	t.register(fs)
	entry := fs.String("entry", "", "file holding the entry's exact bytes (a release's entry is <platform>/releases/<name>/<version>/release.json)")
	leafHex := fs.String("leaf-hash", "", "the entry's RFC 6962 leaf hash, hex")
	if err := parseFlags(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("name the proof file")
	}
	r, err := t.resolve(ctx, false)
	if err != nil {
		return err
	}
	var leaf []byte
	switch {
	case *entry != "" && *leafHex == "":
		b, err := os.ReadFile(*entry)
		if err != nil {
			return fmt.Errorf("reading entry: %w", err)
		}
		leaf = tlog.LeafHash(b)
	case *leafHex != "" && *entry == "":
		leaf, err = decodeHash(*leafHex)
		if err != nil {
			return err
		}
	default:
		return errors.New("give exactly one of --entry and --leaf-hash")
	}
	b, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("reading proof: %w", err)
	}
	proof, err := tlog.ParseProof(b)
	if err != nil {
		return err
	}
	cp, err := proof.Verify(leaf, r.verifier, r.policy)
	if err != nil {
		return err
	}
	cosigned := "cosigned by " + strings.Join(cp.Cosigners, ", ")
	if len(cp.Cosigners) == 0 {
		cosigned = "no witness policy given, so no cosignature was required (give --policy FILE, or --platform and --log)"
	}
	fmt.Fprintf(e.Stdout, "proof ok: entry %d is in %s at size %d, %s\n", proof.Index, cp.Origin, cp.Size, cosigned)
	return nil
}
