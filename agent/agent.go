package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/tlog"
)

// Version is the agent's product version, as it reports it.
const Version = "1.0.0"

// Pinned is what an agent trusts, read from the discovery document once,
// at registration, and kept in <dir>/trust.json: the platform's pins
// (client.Pins: its log keys, the witness policy, the release key, the
// endpoint-token key and the initial TUF root; the release log's key and
// the policy are what an update is checked against) and where its update
// repository is.
type Pinned struct {
	client.Pins
	// UpdatesURL is the TUF repository's metadata base URL.
	UpdatesURL string `json:"updates_url"`
	// Monitors are the supervisors' monitors of the platform's logs, from
	// the discovery document at registration: each install's release-log
	// checkpoint is reported to them (see reportCheckpoint).
	Monitors []string `json:"monitors,omitempty"`
}

// oldPinned is trust.json as agents before client.Pins wrote it; Open
// reads it once and rewrites it as Pinned.
type oldPinned struct {
	Platform       string          `json:"platform"`
	UpdatesURL     string          `json:"updates_url"`
	Root           json.RawMessage `json:"root"`
	ReleaseKey     string          `json:"release_key"`
	ReleaseLogVKey string          `json:"release_log_vkey"`
	WitnessPolicy  string          `json:"witness_policy"`
	EndpointKey    string          `json:"endpoint_key,omitempty"`
}

// Identity is the endpoint's registration, kept in <dir>/identity.json
// (mode 0600: it holds the endpoint's token).
type Identity struct {
	ID        string `json:"id"`
	Token     string `json:"token"`
	Region    string `json:"region"`
	IngestURL string `json:"ingest_url"`
}

// Agent is a registered endpoint agent working in one directory. Its
// methods are not safe for concurrent use: run one command at a time.
type Agent struct {
	dir      string
	pinned   Pinned
	identity Identity
	trust    release.Trust
	// HTTP is the client for every request; its transport may be
	// replaced (tests put an attacker in the middle).
	HTTP *http.Client
	// GOOS and GOARCH choose which programs of a release are installed:
	// those named <program>_<GOOS>_<GOARCH>, with every artifact not
	// named for a platform.
	GOOS, GOARCH string
}

// Register registers a new endpoint of country with the platform at
// base, using the enrolment token (the operator's, in `vitrine up`), pins
// the platform's trust from its discovery document, and keeps both in
// dir, which must not hold an agent yet.
func Register(ctx context.Context, dir, base, enrolToken, country string, hc *http.Client) (*Agent, error) {
	if hc == nil {
		hc = &http.Client{Timeout: time.Minute}
	}
	base = strings.TrimSuffix(base, "/")
	if _, err := os.Stat(filepath.Join(dir, "identity.json")); err == nil {
		return nil, fmt.Errorf("registering: %s already holds a registered agent", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("registering: %w", err)
	}
	d, err := client.FetchDiscovery(ctx, hc, base)
	if err != nil {
		return nil, fmt.Errorf("registering: %w", err)
	}
	p := Pinned{Pins: *client.PinsFrom(base, d), UpdatesURL: d.Updates.URL}
	for _, m := range d.Monitors {
		p.Monitors = append(p.Monitors, m.URL)
	}
	if _, err := p.trust(); err != nil {
		return nil, fmt.Errorf("registering: the discovery document: %w", err)
	}
	body, _ := json.Marshal(map[string]string{"country": country})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/endpoints", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+enrolToken)
	req.Header.Set("Content-Type", "application/json")
	var id Identity
	if err := client.Do(hc, req, 64<<10, &id); err != nil {
		return nil, fmt.Errorf("registering: %w", err)
	}
	if err := p.checkToken(id); err != nil {
		return nil, fmt.Errorf("registering: %w", err)
	}
	pj, _ := json.MarshalIndent(&p, "", "  ")
	if err := atomicfile.Write(filepath.Join(dir, "trust.json"), pj, 0o644); err != nil {
		return nil, err
	}
	ij, _ := json.MarshalIndent(&id, "", "  ")
	if err := atomicfile.Write(filepath.Join(dir, "identity.json"), ij, 0o600); err != nil {
		return nil, err
	}
	return Open(dir)
}

// Open returns the agent registered in dir.
func Open(dir string) (*Agent, error) {
	a := &Agent{dir: dir, HTTP: &http.Client{Timeout: 5 * time.Minute}, GOOS: runtime.GOOS, GOARCH: runtime.GOARCH}
	if err := readPinned(filepath.Join(dir, "trust.json"), &a.pinned); err != nil {
		return nil, fmt.Errorf("opening agent: %w (run `vitrine agent register` first)", err)
	}
	if err := readJSON(filepath.Join(dir, "identity.json"), &a.identity); err != nil {
		return nil, fmt.Errorf("opening agent: %w", err)
	}
	t, err := a.pinned.trust()
	if err != nil {
		return nil, fmt.Errorf("opening agent: %s/trust.json: %w", dir, err)
	}
	a.trust = *t
	return a, nil
}

// Identity returns the endpoint's registration.
func (a *Agent) Identity() Identity { return a.identity }

// Pinned returns what the agent trusts.
func (a *Agent) Pinned() Pinned { return a.pinned }

// trust parses the pinned keys and policy.
func (p *Pinned) trust() (*release.Trust, error) {
	if p.UpdatesURL == "" || len(p.TUFRoot) == 0 {
		return nil, errors.New("no update repository (updates.url and updates.root)")
	}
	key, err := release.ParsePublicKey([]byte(p.ReleaseKey))
	if err != nil {
		return nil, fmt.Errorf("release key: %w", err)
	}
	v, err := note.NewVerifier(p.LogKeys["release"])
	if err != nil {
		return nil, fmt.Errorf("release log key: %w", err)
	}
	pol, err := tlog.ParsePolicy([]byte(p.WitnessPolicy))
	if err != nil {
		return nil, fmt.Errorf("witness policy: %w", err)
	}
	return &release.Trust{Key: key, Log: v, Witness: pol}, nil
}

// checkToken checks that the token the platform gave is signed by the
// endpoint key it published and carries the identity it answered.
func (p *Pinned) checkToken(id Identity) error {
	if p.EndpointKey == "" {
		return nil
	}
	v, err := endpoint.NewVerifier(p.EndpointKey)
	if err != nil {
		return fmt.Errorf("the discovery document's endpoint key: %w", err)
	}
	got, err := v.Verify(id.Token)
	if err != nil {
		return fmt.Errorf("the token the platform gave: %w", err)
	}
	if got.ID != id.ID || got.Region != id.Region {
		return fmt.Errorf("the token the platform gave is for endpoint %s in %s, the answer names %s in %s", got.ID, got.Region, id.ID, id.Region)
	}
	return nil
}

// readPinned reads trust.json into p, rewriting a file of the old format.
func readPinned(path string, p *Pinned) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if _, old := fields["release_log_vkey"]; !old {
		if err := json.Unmarshal(b, p); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	}
	var o oldPinned
	if err := json.Unmarshal(b, &o); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	*p = Pinned{Pins: client.Pins{Platform: o.Platform, LogKeys: map[string]string{"release": o.ReleaseLogVKey}, WitnessPolicy: o.WitnessPolicy,
		ReleaseKey: o.ReleaseKey, EndpointKey: o.EndpointKey, TUFRoot: o.Root}, UpdatesURL: o.UpdatesURL}
	out, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, out, 0o644)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
