package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/internal/cli"
	"github.com/vitrine-dev/vitrine/residency"
)

// loggedPolicies reads every residency policy that a witnessed checkpoint
// of the platform's policy log covers, verified with the platform's policy
// key, in log order. An entry that is not such a policy does not stop the
// reading, as it does not stop the platform: a warning naming its index
// goes to warn, and it comes back among the skipped entries.
func loggedPolicies(ctx context.Context, platformURL string, warn io.Writer) ([]*residency.Policy, []skippedPolicy, error) {
	d, err := fetchDiscovery(ctx, platformURL)
	if err != nil {
		return nil, nil, err
	}
	if d.PolicyKey == "" {
		return nil, nil, errors.New("the platform publishes no policy key")
	}
	pv, err := note.NewVerifier(d.PolicyKey)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing the policy key: %w", err)
	}
	t := target{platform: platformURL, log: "policy"}
	r, err := t.resolve(ctx, true)
	if err != nil {
		return nil, nil, err
	}
	// Every entry proven in the witnessed checkpoint, and handed out as
	// proven: no second, unverified read.
	l, err := r.log()
	if err != nil {
		return nil, nil, err
	}
	entries, _, err := l.Entries(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("policy log: %w", err)
	}
	var out []*residency.Policy
	var skipped []skippedPolicy
	for i, e := range entries {
		s := skippedPolicy{index: uint64(i)}
		if !residency.IsPolicyEntry(e) {
			s.err = errors.New("not a residency policy (no policy header)")
		} else if p, err := residency.Open(e, pv); err != nil {
			s.err, s.claims = err, claimedVersion(e)
		} else {
			out = append(out, p)
			continue
		}
		fmt.Fprintf(warn, "warning: skipping policy log entry %d: %v\n", s.index, s.err)
		skipped = append(skipped, s)
	}
	if len(out) == 0 {
		return nil, skipped, errors.New("the policy log holds no valid policy yet")
	}
	return out, skipped, nil
}

// skippedPolicy is an entry of the policy log that is not a residency
// policy signed with the platform's policy key.
type skippedPolicy struct {
	index  uint64
	claims uint64 // the version its unverified text names, 0 if none
	err    error
}

// claimedVersion reads the version an unverified policy note names, so that
// asking for that version names the entry rather than saying there is none.
// It returns 0 if the note names none.
func claimedVersion(entry []byte) uint64 {
	i := bytes.LastIndex(entry, []byte("\n\n"))
	if i < 0 {
		return 0
	}
	_, body, _ := bytes.Cut(entry[:i+1], []byte("\n")) // the header line
	// Token by token, so that a policy cut short after its version still
	// names it.
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return 0
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return 0
		}
		if key != "version" {
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return 0
			}
			continue
		}
		tok, err := dec.Token()
		if n, ok := tok.(json.Number); err == nil && ok {
			v, _ := strconv.ParseUint(n.String(), 10, 64)
			return v
		}
		return 0
	}
	return 0
}

// findVersion returns version v. When no valid policy has it but a skipped
// entry claims it, the error names that entry and why it was skipped.
func findVersion(ps []*residency.Policy, skipped []skippedPolicy, v uint64) (*residency.Policy, error) {
	for i := len(ps) - 1; i >= 0; i-- {
		if ps[i].Version == v {
			return ps[i], nil
		}
	}
	for _, s := range skipped {
		if s.claims == v {
			return nil, fmt.Errorf("policy log entry %d claims version %d but is not a valid policy: %w", s.index, v, s.err)
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
	fs := newFlags(e, "policy show", "[--platform URL] [--version N]")
	platformURL := fs.String("platform", cli.DefaultPlatform(), "base URL of the platform")
	version := fs.Uint64("version", 0, "show this version instead of the active one")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	ps, skipped, err := loggedPolicies(ctx, *platformURL, e.Stderr)
	if err != nil {
		return err
	}
	p := latest(ps)
	if *version != 0 {
		if p, err = findVersion(ps, skipped, *version); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.Stdout, "residency policy version %d (from the policy log, signature verified)\n", p.Version)
	fmt.Fprintf(e.Stdout, "default region: %s\n", p.Default)
	regs := append([]residency.Region(nil), p.Regions...)
	sort.Slice(regs, func(i, j int) bool { return regs[i].Name < regs[j].Name })
	for _, r := range regs {
		cs := p.Countries(r.Name)
		fmt.Fprintf(e.Stdout, "\n%s  %s\n  %d countries: %s\n", r.Name, r.URL, len(cs), strings.Join(cs, " "))
	}
	return nil
}

func runPolicyDiff(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "policy diff", "[--platform URL] [--from N] [--to M]")
	platformURL := fs.String("platform", cli.DefaultPlatform(), "base URL of the platform")
	from := fs.Uint64("from", 0, "older version (default: the one before --to)")
	to := fs.Uint64("to", 0, "newer version (default: the active one)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	ps, skipped, err := loggedPolicies(ctx, *platformURL, e.Stderr)
	if err != nil {
		return err
	}
	b := latest(ps)
	if *to != 0 {
		if b, err = findVersion(ps, skipped, *to); err != nil {
			return err
		}
	}
	var a *residency.Policy
	if *from != 0 {
		if a, err = findVersion(ps, skipped, *from); err != nil {
			return err
		}
	} else {
		for _, p := range ps {
			if p.Version < b.Version && (a == nil || p.Version > a.Version) {
				a = p
			}
		}
		if a == nil {
			fmt.Fprintf(e.Stdout, "version %d is the first in the policy log; nothing to compare\n", b.Version)
			return nil
		}
	}
	changes := residency.Diff(a, b)
	fmt.Fprintf(e.Stdout, "residency policy version %d -> %d: %d changes\n", a.Version, b.Version, len(changes))
	for _, c := range changes {
		fmt.Fprintf(e.Stdout, "  %s\n", c)
	}
	return nil
}
