package center

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/update"
)

// UpdateState is whether the platform's update repository offers a
// release, as go-tuf's client read it: the repository's metadata
// verified from the root the Center pinned on first use (the discovery
// document's, then each rotation go-tuf followed from it).
type UpdateState struct {
	// Problem is why the repository could not be read or did not verify;
	// then nothing below is known.
	Problem string `json:"problem,omitempty"`
	// RootVersion and TargetsVersion are the verified metadata's.
	RootVersion    int64 `json:"root_version,omitempty"`
	TargetsVersion int64 `json:"targets_version,omitempty"`
	// Artifacts are the release's artifacts and what the repository
	// says of each.
	Artifacts []OfferState `json:"artifacts"`
}

// OfferState is one artifact in the update repository: Offered when it is
// a target (<release>/<version>/<file>) with the artifact's SHA-256 and
// custom metadata naming this release-log entry; Problem otherwise.
type OfferState struct {
	Name    string `json:"name"`
	Target  string `json:"target"`
	Offered bool   `json:"offered"`
	Problem string `json:"problem,omitempty"`
}

// tufTTL is how long the Center uses the metadata it verified before it
// refreshes them (the timestamp role is re-signed daily).
const tufTTL = 5 * time.Second

// tufTargets returns the update repository's targets, verified by go-tuf
// from the root the Center trusts (kept in <dir>/tuf/), refreshed once
// they are older than tufTTL.
func (c *Center) tufTargets(ctx context.Context, pins *client.Pins) (*tufSnapshot, error) {
	c.tufMu.Lock()
	defer c.tufMu.Unlock()
	if c.tuf != nil && c.cfg.Now().Sub(c.tuf.at) < tufTTL {
		return c.tuf, nil
	}
	d, err := client.FetchDiscovery(ctx, c.cfg.HTTPClient, c.cfg.Platform)
	if err != nil {
		return nil, err
	}
	if d.Updates.URL == "" || len(pins.TUFRoot) == 0 {
		return nil, errors.New("the platform names no update repository")
	}
	dir := filepath.Join(c.cfg.Dir, "tuf")
	// The root pinned with the discovery document on first use; after,
	// the newest root go-tuf verified, so that rotations are followed
	// from what was trusted before and a changed discovery document
	// cannot reset it.
	root := []byte(pins.TUFRoot)
	if b, err := os.ReadFile(filepath.Join(dir, "root.json")); err == nil {
		root = b
	}
	cfg, err := config.New(d.Updates.URL, root)
	if err != nil {
		return nil, fmt.Errorf("the update repository's root: %w", err)
	}
	// go-tuf makes both directories; targets are never downloaded.
	cfg.LocalMetadataDir, cfg.LocalTargetsDir = dir, dir
	// Not NewFetcherWithHTTPClient: it drops the default of one try, and
	// then retries a 404 (how a repository says "no newer root") for
	// minutes.
	f := fetcher.NewDefaultFetcher()
	f.SetHTTPClient(c.cfg.HTTPClient)
	cfg.Fetcher = f
	u, err := updater.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("the update repository: %w", err)
	}
	if err := u.Refresh(); err != nil {
		return nil, fmt.Errorf("the update repository's metadata do not verify: %w", err)
	}
	tm := u.GetTrustedMetadataSet()
	c.tuf = &tufSnapshot{at: c.cfg.Now(), targets: u.GetTopLevelTargets(), root: tm.Root.Signed.Version, version: tm.Targets[metadata.TARGETS].Signed.Version}
	return c.tuf, nil
}

// tufSnapshot is the update repository's verified targets.
type tufSnapshot struct {
	at            time.Time
	targets       map[string]*metadata.TargetFiles
	root, version int64
}

// offered reads whether the update repository offers each artifact of
// release e, logged at index.
func (c *Center) offered(ctx context.Context, pins *client.Pins, index uint64, e *release.Entry) *UpdateState {
	st := &UpdateState{Artifacts: []OfferState{}}
	s, err := c.tufTargets(ctx, pins)
	if err != nil {
		st.Problem = err.Error()
		return st
	}
	st.RootVersion, st.TargetsVersion = s.root, s.version
	for _, a := range e.Artifacts {
		o := OfferState{Name: a.Name, Target: e.Name + "/" + e.Version + "/" + a.Name}
		o.Problem = offerProblem(s.targets[o.Target], a, index, e)
		o.Offered = o.Problem == ""
		st.Artifacts = append(st.Artifacts, o)
	}
	return st
}

// offerProblem says why target t is not artifact a of release e, logged
// at index; "" if it is.
func offerProblem(t *metadata.TargetFiles, a release.Artifact, index uint64, e *release.Entry) string {
	if t == nil {
		return "not offered: the update repository has no such target"
	}
	if got := t.Hashes["sha256"].String(); got != a.SHA256 {
		return fmt.Sprintf("offered with another SHA-256: %s", got)
	}
	if t.Custom == nil {
		return "offered without the release's custom metadata: an endpoint would refuse it"
	}
	cm, err := update.ParseCustom(*t.Custom)
	if err != nil {
		return "offered with custom metadata an endpoint refuses: " + err.Error()
	}
	if cm.IsDelta() || cm.Release != e.Name || cm.Version != e.Version || cm.LogIndex != index || cm.Provenance != e.Envelope {
		return fmt.Sprintf("offered as %s %s, release-log entry %d, provenance %s: not this release-log entry", cm.Release, cm.Version, cm.LogIndex, cm.Provenance)
	}
	return ""
}
