package center

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/monitor"
	"github.com/vitrine-dev/vitrine/internal/rebuilder"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/residency"
	"github.com/vitrine-dev/vitrine/tlog"
)

// Overview is the Center's first page: the platform's three promises
// with their live state, as the Center verified them.
type Overview struct {
	Platform string    `json:"platform"`
	Checked  time.Time `json:"checked"`
	// Pinned says how the discovery document was trusted: "first use"
	// (pinned now) or "pins" (it names what was pinned).
	Pinned   string          `json:"pinned"`
	Logs     []LogState      `json:"logs"`
	Policy   *PolicyState    `json:"policy,omitempty"`
	Releases []ReleaseState  `json:"releases"`
	Monitors []MonitorState  `json:"monitors"`
	Problems []string        `json:"problems"`
	Counts   OverviewSummary `json:"summary"`
}

// OverviewSummary counts what the overview shows.
type OverviewSummary struct {
	Entries    uint64 `json:"entries"`     // over every log
	Releases   int    `json:"releases"`    // in the release log
	OpenAlerts int    `json:"open_alerts"` // not acknowledged, over every monitor
}

// LogState is one log's latest checkpoint, verified.
type LogState struct {
	Name   string `json:"name"`
	Origin string `json:"origin"`
	Size   uint64 `json:"size"`
	Root   string `json:"root"` // base64, as in the checkpoint
	// Witnesses are the cosignatures the checkpoint carries, newest
	// first; Newest is the newest one's time.
	Witnesses []Cosignature `json:"witnesses"`
	Newest    time.Time     `json:"newest"`
	// Verified: signed by the pinned key, cosigned by a quorum of the
	// pinned policy, and consistent with the checkpoint the Center saw
	// before. Problem says otherwise.
	Verified bool   `json:"verified"`
	Problem  string `json:"problem,omitempty"`
}

// Cosignature is one witness's cosignature of a checkpoint.
type Cosignature struct {
	Witness string    `json:"witness"`
	Time    time.Time `json:"time"`
}

// PolicyState is the residency policy in force: the newest version in the
// policy log that verifies under the pinned policy key.
type PolicyState struct {
	Version uint64        `json:"version"`
	Default string        `json:"default"`
	Regions []RegionState `json:"regions"`
	Index   uint64        `json:"index"` // in the policy log
}

// RegionState is a region and the countries the policy has it serve.
type RegionState struct {
	Name      string   `json:"name"`
	Countries []string `json:"countries"`
	// Rest: it also serves every country no region lists.
	Rest bool `json:"rest,omitempty"`
}

// ReleaseState is a release as its release-log entry records it.
type ReleaseState struct {
	Index     uint64          `json:"index"`
	Name      string          `json:"name"`
	Version   string          `json:"version"`
	Artifacts []ArtifactState `json:"artifacts"`
	// Rebuilds is what the known rebuilders' verdicts say of it, each
	// checked as on the release's page; nil when the Center knows no
	// rebuilder.
	Rebuilds *RebuildSummary `json:"rebuilds,omitempty"`
}

// ArtifactState is a released file.
type ArtifactState struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
}

// MonitorState is a monitor the platform names, and its alerts.
type MonitorState struct {
	Name   string       `json:"name"`
	URL    string       `json:"url"`
	Alerts []AlertState `json:"alerts"`
	// Open counts the alerts not acknowledged among those read.
	Open    int    `json:"open"`
	Problem string `json:"problem,omitempty"`
}

// AlertState is one alert as the monitor published it; ProofVerified says
// whether its tlog-proof verifies under the pinned log key and policy.
type AlertState struct {
	ID            int64     `json:"id"`
	Rule          string    `json:"rule"`
	Severity      string    `json:"severity"`
	Time          time.Time `json:"time"`
	Log           string    `json:"log,omitempty"`
	Index         *uint64   `json:"index,omitempty"`
	Detail        string    `json:"detail,omitempty"`
	Acknowledged  bool      `json:"acknowledged"`
	ProofVerified bool      `json:"proof_verified"`
	// Entry and Proof are the alert's entry and its tlog-proof, as the
	// monitor gave them; Anchor names the alert on the supervisor's page.
	Entry  string `json:"entry,omitempty"`
	Proof  string `json:"proof,omitempty"`
	Anchor string `json:"anchor"`
	// Verify is what the reader's browser checks a verified proof with
	// (an entry that is text only).
	Verify *VerifyInput `json:"-"`
}

// maxOverviewReleases and maxOverviewAlerts bound the newest releases and
// alerts the overview shows.
const (
	maxOverviewReleases = 10
	maxOverviewAlerts   = 20
)

// read reads the platform once.
func (c *Center) read(ctx context.Context) (*Overview, error) {
	o := &Overview{Platform: c.cfg.Platform, Checked: c.cfg.Now().UTC(), Logs: []LogState{}, Releases: []ReleaseState{}, Monitors: []MonitorState{}, Problems: []string{}}
	d, err := client.FetchDiscovery(ctx, c.cfg.HTTPClient, c.cfg.Platform)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errPlatform, err)
	}
	pins, first, err := client.TrustOnFirstUse(client.PinsPath(filepath.Join(c.cfg.Dir, "pins"), c.cfg.Platform), c.cfg.Platform, d)
	if err != nil {
		// A platform that names other keys than those pinned shows
		// nothing as verified: the page says why.
		o.Problems = append(o.Problems, err.Error())
		return o, nil
	}
	o.Pinned = "pins"
	if first {
		o.Pinned = "first use"
	}
	logs := map[string]*client.Log{}
	for _, dl := range d.Logs {
		st := LogState{Name: dl.Name, Witnesses: []Cosignature{}}
		l, cp, err := c.checkpoint(ctx, d, pins, dl.Name)
		if err != nil {
			st.Problem = err.Error()
			o.Problems = append(o.Problems, fmt.Sprintf("log %s: %v", dl.Name, err))
		} else {
			logs[dl.Name] = l
			// The origin the verified checkpoint names, not the one the
			// discovery document claims.
			st.Origin = cp.Origin
			st.Verified, st.Size, st.Root = true, cp.Size, base64.StdEncoding.EncodeToString(cp.Hash)
			for w, t := range cp.CosignedAt {
				st.Witnesses = append(st.Witnesses, Cosignature{Witness: w, Time: t.UTC()})
				if t.After(st.Newest) {
					st.Newest = t.UTC()
				}
			}
			sort.Slice(st.Witnesses, func(i, j int) bool { return st.Witnesses[i].Time.After(st.Witnesses[j].Time) })
			o.Counts.Entries += cp.Size
		}
		o.Logs = append(o.Logs, st)
	}
	if l := logs["policy"]; l != nil && pins.PolicyKey != "" {
		p, err := c.policyInForce(ctx, l, pins.PolicyKey)
		if err != nil {
			o.Problems = append(o.Problems, "the policy log: "+err.Error())
		}
		o.Policy = p
	}
	if l := logs["release"]; l != nil {
		rs, n, err := c.newestReleases(ctx, l)
		if err != nil {
			o.Problems = append(o.Problems, "the release log: "+err.Error())
		}
		o.Releases, o.Counts.Releases = rs, n
	}
	for i, m := range d.Monitors {
		ms := c.monitor(ctx, i, m, d, pins)
		o.Counts.OpenAlerts += ms.Open
		o.Monitors = append(o.Monitors, ms)
	}
	return o, nil
}

var errPlatform = fault.New(fault.ErrUnavailable, "the platform's discovery document could not be read")

// checkpoint opens the named log under the pins and returns its latest
// checkpoint, verified and proven consistent with the one the Center saw
// before (kept in Dir/seen), which it then replaces.
func (c *Center) checkpoint(ctx context.Context, d *client.Discovery, pins *client.Pins, name string) (*client.Log, *tlog.Checkpoint, error) {
	dl, ok := d.Log(name)
	if !ok || pins.LogKeys[name] != dl.VKey {
		return nil, nil, errors.New("not a pinned log")
	}
	l, err := d.OpenLog(name, []byte(pins.WitnessPolicy), c.cfg.HTTPClient)
	if err != nil {
		return nil, nil, err
	}
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		return nil, nil, err
	}
	seenPath := filepath.Join(c.cfg.Dir, "seen", url.PathEscape(l.Origin()+" "+l.KeyHash()))
	seen, err := os.ReadFile(seenPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	if err := l.Consistent(ctx, seen, cp); err != nil {
		return nil, nil, err
	}
	if seen == nil || !slices.Equal(seen, cp.Raw) {
		if err := atomicfile.Write(seenPath, cp.Raw, 0o600); err != nil {
			return nil, nil, err
		}
	}
	return l, cp, nil
}

// policyInForce reads the policy log and returns the newest version that
// verifies under the policy key.
func (c *Center) policyInForce(ctx context.Context, l *client.Log, policyKey string) (*PolicyState, error) {
	v, err := note.NewVerifier(policyKey)
	if err != nil {
		return nil, err
	}
	entries, err := c.entries(ctx, "policy", l)
	if err != nil {
		return nil, err
	}
	var best *residency.Policy
	var at uint64
	for i, e := range entries {
		if !residency.IsPolicyEntry(e) {
			continue
		}
		p, err := residency.Open(e, v)
		if err != nil {
			continue
		}
		if best == nil || p.Version > best.Version {
			best, at = p, uint64(i)
		}
	}
	if best == nil {
		return nil, errors.New("no policy in the policy log verifies under the pinned policy key")
	}
	ps := &PolicyState{Version: best.Version, Default: best.Default, Index: at}
	for _, r := range best.Regions {
		cs := slices.Clone(r.Countries)
		slices.Sort(cs)
		ps.Regions = append(ps.Regions, RegionState{Name: r.Name, Countries: cs, Rest: r.Name == best.Default})
	}
	return ps, nil
}

// newestReleases reads the release log and returns its newest releases,
// newest first, and how many it holds.
func (c *Center) newestReleases(ctx context.Context, l *client.Log) ([]ReleaseState, int, error) {
	entries, err := c.entries(ctx, "release", l)
	if err != nil {
		return []ReleaseState{}, 0, err
	}
	out, n := []ReleaseState{}, 0
	var idx []*rebuilder.Index
	var idxErr []error
	if len(c.cfg.Rebuilders) > 0 {
		idx, idxErr = c.rebuildIndexes(ctx)
	}
	for i := len(entries) - 1; i >= 0; i-- {
		e, err := release.ParseEntry(entries[i])
		if err != nil {
			continue
		}
		if n++; len(out) >= maxOverviewReleases {
			continue
		}
		rs := ReleaseState{Index: uint64(i), Name: e.Name, Version: e.Version, Artifacts: []ArtifactState{}}
		for _, a := range e.Artifacts {
			rs.Artifacts = append(rs.Artifacts, ArtifactState{Name: a.Name, SHA256: a.SHA256})
		}
		if idx != nil {
			sum := summarizeRebuilds(c.verdicts(ctx, idx, idxErr, uint64(i), entries[i], e))
			rs.Rebuilds = &sum
		}
		out = append(out, rs)
	}
	return out, n, nil
}

// monitor reads a monitor's newest alerts about this platform and checks
// each one's proof under the pinned log key and witness policy.
func (c *Center) monitor(ctx context.Context, n int, m client.DiscoveryMonitor, d *client.Discovery, pins *client.Pins) MonitorState {
	ms := MonitorState{Name: m.Name, URL: m.URL, Alerts: []AlertState{}}
	u, err := url.Parse(m.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		ms.Problem = "not an http or https URL"
		return ms
	}
	var page monitor.AlertsAnswer
	q := url.Values{"platform": {c.cfg.Platform}, "limit": {fmt.Sprint(maxOverviewAlerts)}, "order": {"newest"}}
	if err := client.GetJSON(ctx, c.cfg.HTTPClient, strings.TrimSuffix(m.URL, "/")+"/v1/alerts?"+q.Encode(), 2<<20, &page); err != nil {
		ms.Problem = err.Error()
		return ms
	}
	policy, perr := tlog.ParsePolicy([]byte(pins.WitnessPolicy))
	// The monitor may answer more than was asked: the overview shows
	// the newest maxOverviewAlerts and checks no more proofs than that.
	page.Alerts = page.Alerts[:min(len(page.Alerts), maxOverviewAlerts)]
	for _, a := range page.Alerts {
		as := AlertState{ID: a.ID, Rule: a.Rule, Severity: a.Severity, Time: a.Time, Log: a.Log, Index: a.Index, Detail: a.Detail, Acknowledged: len(a.Acknowledgements) > 0,
			Entry: a.Entry, Proof: a.Proof, Anchor: fmt.Sprintf("alert-%d-%d", n, a.ID)}
		if a.Index != nil && a.Proof != "" && perr == nil && pins.LogKeys[a.Log] != "" {
			cp, err := checkAlertProof(pins.LogKeys[a.Log], policy, *a.Index, string(a.EntryBytes()), a.Proof)
			as.ProofVerified = err == nil
			if as.ProofVerified && string(a.EntryBytes()) == a.Entry {
				// The origin the proof's checkpoint names, not the
				// monitor's word for it.
				as.Verify = &VerifyInput{Entry: a.Entry, Proof: a.Proof, VKey: pins.LogKeys[a.Log], Policy: pins.WitnessPolicy, Index: *a.Index, Origin: cp.Origin}
			}
		}
		if !as.Acknowledged {
			ms.Open++
		}
		ms.Alerts = append(ms.Alerts, as)
	}
	return ms
}

// checkAlertProof verifies an alert's c2sp.org/tlog-proof of its entry at
// index under the log's key and witness policy, and returns the
// checkpoint it is proven in.
func checkAlertProof(vkey string, policy *tlog.Policy, index uint64, entry, proof string) (*tlog.Checkpoint, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	return tlog.VerifyEntry([]byte(proof), index, []byte(entry), v, policy)
}
