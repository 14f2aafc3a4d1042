package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// DiscoveryPath is where a platform serves its discovery document.
const DiscoveryPath = "/.well-known/vitrine.json"

// Discovery is a platform's discovery document: its regions, logs,
// witnesses and witness policy, the keys of its residency policies and of
// its endpoint tokens, its releases and its update repository. The platform writes it with this type
// and clients read it with it.
//
// Nothing in it is proof of anything: it says where to look and what keys
// to expect. A client pins what it trusts on first use and checks
// everything it reads against those pins.
type Discovery struct {
	Regions       []DiscoveryRegion  `json:"regions"`
	Logs          []DiscoveryLog     `json:"logs"`
	Witnesses     []DiscoveryWitness `json:"witnesses"`
	WitnessPolicy string             `json:"witness_policy"`
	// PolicyKey verifies the signed residency policies in the policy log.
	PolicyKey string `json:"policy_key"`
	// EndpointKey is the signed-note verifier key of the endpoint
	// tokens the platform issues: with it, an endpoint checks the token
	// it was given, and a region run apart checks the tokens it is shown.
	EndpointKey string `json:"endpoint_key,omitempty"`
	// Releases is where the published releases are and the key that
	// verifies their provenance envelopes.
	Releases DiscoveryReleases `json:"releases"`
	// Updates is the TUF update repository and its initial trusted root.
	Updates DiscoveryUpdates `json:"updates"`
	// Monitors are the supervisors' monitors that follow the platform's
	// logs: whoever verified a checkpoint of them (an endpoint during an
	// update) posts it to each, so that a split view shows (POST
	// <url>v1/checkpoints).
	Monitors []DiscoveryMonitor `json:"monitors,omitempty"`
}

// DiscoveryMonitor is one monitor of the platform's logs.
type DiscoveryMonitor struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// DiscoveryRegion is one region of the residency policy in force.
type DiscoveryRegion struct {
	Name      string   `json:"name"`
	URL       string   `json:"url"`
	Countries []string `json:"countries"`
}

// DiscoveryLog is one log: its name on the platform (release, policy,
// access-<region>), origin, verifier key and the base URL of its tiles.
type DiscoveryLog struct {
	Name   string `json:"name"`
	Origin string `json:"origin"`
	VKey   string `json:"vkey"`
	URL    string `json:"url"`
}

// DiscoveryWitness is one witness that cosigns the platform's logs.
type DiscoveryWitness struct {
	Name string `json:"name"`
	VKey string `json:"vkey"`
	URL  string `json:"url"`
}

// DiscoveryReleases says where the releases are.
type DiscoveryReleases struct {
	URL string `json:"url"`
	// Key is the release key's public half, a PEM "PUBLIC KEY" (PKIX,
	// Ed25519), as cosign and openssl read it.
	Key string `json:"key"`
}

// DiscoveryUpdates says where the TUF update repository is.
type DiscoveryUpdates struct {
	// URL is the metadata base URL.
	URL string `json:"url"`
	// Root is the initial trusted root.json, as a JSON object. A client
	// trusts it on first use and follows the root rotations from it.
	Root json.RawMessage `json:"root"`
}

// maxDiscovery bounds the discovery document read.
const maxDiscovery = 1 << 20

// FetchDiscovery reads the discovery document of the platform at base
// (its URL, without the path). hc nil means http.DefaultClient.
func FetchDiscovery(ctx context.Context, hc *http.Client, base string) (*Discovery, error) {
	var d Discovery
	if err := GetJSON(ctx, hc, strings.TrimSuffix(base, "/")+DiscoveryPath, maxDiscovery, &d); err != nil {
		return nil, fmt.Errorf("reading the discovery document: %w", err)
	}
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("the discovery document of %s: %w", base, err)
	}
	return &d, nil
}

// ErrBadDiscovery is wrapped by the error of a discovery document that no
// platform should serve.
var ErrBadDiscovery = errors.New("a discovery document to refuse")

// Validate refuses, with [ErrBadDiscovery], a document that names a log, a
// region or a witness twice: readers take the first of a name and pins the
// last, so a second entry could smuggle another key past the pins.
func (d *Discovery) Validate() error {
	if err := d.validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadDiscovery, err)
	}
	return nil
}

func (d *Discovery) validate() error {
	seen := map[string]bool{}
	for _, l := range d.Logs {
		if seen["log "+l.Name] {
			return fmt.Errorf("it names the log %q twice", l.Name)
		}
		seen["log "+l.Name] = true
	}
	for _, r := range d.Regions {
		if seen["region "+r.Name] {
			return fmt.Errorf("it names the region %q twice", r.Name)
		}
		seen["region "+r.Name] = true
	}
	for _, w := range d.Witnesses {
		if seen["witness "+w.Name] {
			return fmt.Errorf("it names the witness %q twice", w.Name)
		}
		seen["witness "+w.Name] = true
	}
	return nil
}

// Log returns the log named name ("release", "policy", "access-zurich").
func (d *Discovery) Log(name string) (DiscoveryLog, bool) {
	for _, l := range d.Logs {
		if l.Name == name {
			return l, true
		}
	}
	return DiscoveryLog{}, false
}

// OpenLog returns the log named name, to be read under the document's
// witness policy, or policy when it is not nil (a pinned one). A policy
// whose quorum is none is refused: the log operator alone meets it.
func (d *Discovery) OpenLog(name string, policy []byte, hc *http.Client) (*Log, error) {
	l, ok := d.Log(name)
	if !ok {
		return nil, fmt.Errorf("the discovery document names no log %q", name)
	}
	if policy == nil {
		policy = []byte(d.WitnessPolicy)
	}
	if len(policy) == 0 {
		return nil, errors.New("the discovery document names no witness policy")
	}
	return NewLog(l.URL, l.VKey, policy, hc, false)
}
