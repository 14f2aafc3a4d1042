package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/residency"
	"github.com/vitrine-dev/vitrine/tlog"
)

// loggedPolicies reads every residency policy that a witnessed checkpoint
// of the platform's policy log covers, verified with the platform's policy
// key, in log order.
func loggedPolicies(ctx context.Context, platformURL string) ([]*residency.Policy, error) {
	d, err := fetchDiscovery(ctx, platformURL)
	if err != nil {
		return nil, err
	}
	if d.PolicyKey == "" {
		return nil, errors.New("the platform publishes no policy key")
	}
	pv, err := note.NewVerifier(d.PolicyKey)
	if err != nil {
		return nil, fmt.Errorf("parsing the policy key: %w", err)
	}
	t := target{platform: platformURL, log: "policy"}
	r, err := t.resolve(ctx, true)
	if err != nil {
		return nil, err
	}
	raw, err := r.fetcher.ReadCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetching the policy log's checkpoint: %w", err)
	}
	cp, err := r.policy.VerifyCheckpoint(raw, r.verifier)
	if err != nil {
		return nil, fmt.Errorf("policy log checkpoint: %w", err)
	}
	// The policy log is small: recompute its whole tree, which proves every
	// entry read below is in the witnessed checkpoint.
	if _, err := tlog.VerifyTree(ctx, r.fetcher, cp.Size, cp.Hash); err != nil {
		return nil, fmt.Errorf("policy log: %w", err)
	}
	var out []*residency.Policy
	for bi := uint64(0); bi*256 < cp.Size; bi++ {
		b, err := client.GetEntryBundle(ctx, r.fetcher.ReadEntryBundle, bi, cp.Size)
		if err != nil {
			return nil, fmt.Errorf("reading the policy log: %w", err)
		}
		for i, e := range b.Entries {
			if !residency.IsPolicyEntry(e) {
				continue
			}
			p, err := residency.Open(e, pv)
			if err != nil {
				return nil, fmt.Errorf("policy log entry %d: %w", bi*256+uint64(i), err)
			}
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("the policy log holds no policy yet")
	}
	return out, nil
}

func findVersion(ps []*residency.Policy, v uint64) (*residency.Policy, error) {
	for i := len(ps) - 1; i >= 0; i-- {
		if ps[i].Version == v {
			return ps[i], nil
		}
	}
	return nil, fmt.Errorf("the policy log holds no version %d", v)
}

func latest(ps []*residency.Policy) *residency.Policy {
	var l *residency.Policy
	for _, p := range ps {
		if l == nil || p.Version > l.Version {
			l = p
		}
	}
	return l
}

func runPolicyShow(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "policy show", "--platform URL [--version N]")
	platformURL := fs.String("platform", "http://127.0.0.1:8080", "base URL of the platform")
	version := fs.Uint64("version", 0, "show this version instead of the active one")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	ps, err := loggedPolicies(ctx, *platformURL)
	if err != nil {
		return err
	}
	p := latest(ps)
	if *version != 0 {
		if p, err = findVersion(ps, *version); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stdout, "residency policy version %d (from the policy log, signature verified)\n", p.Version)
	fmt.Fprintf(e.stdout, "default region: %s\n", p.Default)
	regs := append([]residency.Region(nil), p.Regions...)
	sort.Slice(regs, func(i, j int) bool { return regs[i].Name < regs[j].Name })
	for _, r := range regs {
		cs := p.Countries(r.Name)
		fmt.Fprintf(e.stdout, "\n%s  %s\n  %d countries: %s\n", r.Name, r.URL, len(cs), strings.Join(cs, " "))
	}
	return nil
}

func runPolicyDiff(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "policy diff", "--platform URL [--from N] [--to M]")
	platformURL := fs.String("platform", "http://127.0.0.1:8080", "base URL of the platform")
	from := fs.Uint64("from", 0, "older version (default: the one before --to)")
	to := fs.Uint64("to", 0, "newer version (default: the active one)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	ps, err := loggedPolicies(ctx, *platformURL)
	if err != nil {
		return err
	}
	b := latest(ps)
	if *to != 0 {
		if b, err = findVersion(ps, *to); err != nil {
			return err
		}
	}
	var a *residency.Policy
	if *from != 0 {
		if a, err = findVersion(ps, *from); err != nil {
			return err
		}
	} else {
		for _, p := range ps {
			if p.Version < b.Version && (a == nil || p.Version > a.Version) {
				a = p
			}
		}
		if a == nil {
			fmt.Fprintf(e.stdout, "version %d is the first in the policy log; nothing to compare\n", b.Version)
			return nil
		}
	}
	changes := residency.Diff(a, b)
	fmt.Fprintf(e.stdout, "residency policy version %d -> %d: %d changes\n", a.Version, b.Version, len(changes))
	for _, c := range changes {
		fmt.Fprintf(e.stdout, "  %s\n", c)
	}
	return nil
}
