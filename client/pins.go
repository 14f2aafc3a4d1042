package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
)

// Pins is what a client trusts about one platform, taken from its
// discovery document the first time and required of it ever after (trust
// on first use): the logs' verifier keys, the witness policy, the key of
// the residency policies, the endpoint-token key, the release key and the
// update repository's initial TUF root. A platform that later names other values is either
// another platform at the same address or one whose keys were replaced;
// either way a person must look, so [Pins.Check] refuses it and names what
// changed.
type Pins struct {
	Platform      string            `json:"platform"`
	LogKeys       map[string]string `json:"log_keys"`
	WitnessPolicy string            `json:"witness_policy"`
	PolicyKey     string            `json:"policy_key"`
	ReleaseKey    string            `json:"release_key"`
	// EndpointKey is empty in pins saved before platforms published it;
	// it is pinned at the next check.
	EndpointKey string          `json:"endpoint_key,omitempty"`
	TUFRoot     json.RawMessage `json:"tuf_root,omitempty"`
}

// ErrPinMismatch is wrapped by the error of a discovery document that
// differs from what was pinned.
var ErrPinMismatch = errors.New("the platform's keys differ from those pinned")

// PinsFrom pins what d names, for the platform at base.
func PinsFrom(base string, d *Discovery) *Pins {
	p := &Pins{Platform: strings.TrimSuffix(base, "/"), LogKeys: map[string]string{}, WitnessPolicy: d.WitnessPolicy,
		PolicyKey: d.PolicyKey, ReleaseKey: d.Releases.Key, EndpointKey: d.EndpointKey, TUFRoot: bytes.Clone(d.Updates.Root)}
	for _, l := range d.Logs {
		p.LogKeys[l.Name] = l.VKey
	}
	return p
}

// Check returns nil if d names what p pins, and otherwise an error
// wrapping [ErrPinMismatch] that names each value that changed. A log d
// names that p does not know (a region added since) is accepted; a pinned
// log that d no longer names is a change.
func (p *Pins) Check(d *Discovery) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%s: %w", p.Platform, err)
	}
	var changed []string
	cmp := func(what, pinned, now string) {
		if pinned != now {
			changed = append(changed, fmt.Sprintf("%s: pinned %s, now %s", what, short(pinned), short(now)))
		}
	}
	now := PinsFrom(p.Platform, d)
	for _, name := range slices.Sorted(maps.Keys(p.LogKeys)) {
		k, ok := now.LogKeys[name]
		if !ok {
			changed = append(changed, fmt.Sprintf("log %s: pinned, now not named", name))
			continue
		}
		cmp("log "+name+" key", p.LogKeys[name], k)
	}
	cmp("witness policy", p.WitnessPolicy, now.WitnessPolicy)
	cmp("residency policy key", p.PolicyKey, now.PolicyKey)
	cmp("release key", p.ReleaseKey, now.ReleaseKey)
	if p.EndpointKey != "" {
		cmp("endpoint-token key", p.EndpointKey, now.EndpointKey)
	}
	if len(p.TUFRoot) > 0 && !jsonEqual(p.TUFRoot, now.TUFRoot) {
		changed = append(changed, "initial TUF root: differs")
	}
	if len(changed) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %w: %s", p.Platform, ErrPinMismatch, strings.Join(changed, "; "))
}

// short shows a key or policy in an error: its first line, cut.
func short(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	if len(line) > 72 {
		line = line[:72] + "…"
	}
	if line == "" {
		return `""`
	}
	return fmt.Sprintf("%q", line)
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// PinsPath is the file in dir for the pins of the platform at base.
func PinsPath(dir, base string) string {
	return filepath.Join(dir, url.PathEscape(strings.TrimSuffix(base, "/"))+".json")
}

// TrustOnFirstUse checks d, the discovery document of the platform at
// base, against the pins kept at path. With no pins there yet, it pins
// what d names and saves them (first is then true); after that, d must
// name what was pinned. To trust a platform anew (its keys were rotated on
// purpose), remove the file.
func TrustOnFirstUse(path, base string, d *Discovery) (p *Pins, first bool, err error) {
	if err := d.Validate(); err != nil {
		return nil, false, fmt.Errorf("%s: %w", base, err)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		p = PinsFrom(base, d)
		return p, true, p.Save(path)
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading pins: %w", err)
	}
	p = new(Pins)
	if err := httpapi.DecodeStrict(b, p); err != nil {
		return nil, false, fmt.Errorf("reading pins %s: %w", path, err)
	}
	if err := p.Check(d); err != nil {
		return nil, false, fmt.Errorf("%w (pinned in %s; remove it to trust the platform anew)", err, path)
	}
	// A log first named now (a region added), or an endpoint-token key
	// that pins saved before platforms published it lack, is pinned from
	// now on, so that it cannot change unseen either.
	added := false
	if p.EndpointKey == "" && d.EndpointKey != "" {
		p.EndpointKey, added = d.EndpointKey, true
	}
	for name, k := range PinsFrom(base, d).LogKeys {
		if _, ok := p.LogKeys[name]; !ok {
			p.LogKeys[name], added = k, true
		}
	}
	if added {
		return p, false, p.Save(path)
	}
	return p, false, nil
}

// Save writes p to path, readable by its owner only.
func (p *Pins) Save(path string) error {
	out, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, append(out, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving pins: %w", err)
	}
	return nil
}
