package platform

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vitrine-dev/vitrine/internal/updates"
	"github.com/vitrine-dev/vitrine/ruledb"
)

// startUpdates opens the update repository under <data>/updates, signing
// targets with the release key unless <data>/updates/targets.key replaced
// it, and re-signs its metadata in the background before it expires.
func (p *Platform) startUpdates(ctx context.Context) error {
	offline := p.cfg.TUFOfflineDir
	if offline == "" {
		// Beside the data directory, never in it: ./vitrine-data gives
		// ./vitrine-offline.
		data := filepath.Clean(p.cfg.Data)
		offline = filepath.Join(filepath.Dir(data), strings.TrimSuffix(filepath.Base(data), "-data")+"-offline")
	}
	var err error
	p.updates, err = updates.Open(ctx, updates.Config{
		Dir:        filepath.Join(p.cfg.Data, "updates"),
		Root:       p.cfg.TUFRoot,
		OfflineDir: offline,
		TargetsKey: p.releaseKey,
		Expiry:     p.cfg.TUFExpiry,
		Logger:     p.logger,
	})
	if err != nil {
		return err
	}
	p.tufDone = make(chan struct{})
	go func() {
		defer close(p.tufDone)
		p.updates.Run(p.bg)
	}()
	return nil
}

// Updates returns the update repository.
func (p *Platform) Updates() *updates.Repo { return p.updates }

// addUpdate adds a published release to the update repository, with the
// entry's tlog-proof from a witnessed checkpoint, and a delta from the
// previous version for each artifact that is a rule database.
func (p *Platform) addUpdate(ctx context.Context, name, version string, artifacts map[string][]byte, env, entry []byte, idx uint64) error {
	proof, err := p.logs["release"].Prove(ctx, idx)
	if err != nil {
		return fmt.Errorf("proving release-log entry %d: %w", idx, err)
	}
	var deltas []updates.Delta
	for _, a := range slices.Sorted(maps.Keys(artifacts)) {
		if _, err := ruledb.Open(artifacts[a]); err != nil {
			continue // not a rule database
		}
		from, old, ok, err := p.updates.Previous(name, a)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		d, err := ruledb.Delta(old, artifacts[a])
		if errors.Is(err, ruledb.ErrNotNewer) {
			continue // no delta to an older or the same database
		}
		if err != nil {
			return fmt.Errorf("delta of %s from version %s: %w", a, from, err)
		}
		deltas = append(deltas, updates.Delta{Artifact: a, From: from, Data: d})
	}
	return p.updates.AddRelease(ctx, &updates.Release{
		Name: name, Version: version, Files: artifacts, Envelope: env, Entry: entry,
		LogIndex: idx, Proof: proof.Marshal(), Deltas: deltas,
	})
}
