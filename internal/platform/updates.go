package platform

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/vitrine-dev/vitrine/internal/tufrepo"
)

// startUpdates opens the update repository under <data>/updates, signing
// targets with the release key unless <data>/updates/targets.key replaced
// it, and re-signs its metadata in the background before it expires.
func (p *releaseParts) startUpdates(ctx context.Context) error {
	offline := p.cfg.TUFOfflineDir
	if offline == "" {
		// Beside the data directory, never in it: ./vitrine-data gives
		// ./vitrine-offline.
		data := filepath.Clean(p.cfg.Data)
		offline = filepath.Join(filepath.Dir(data), strings.TrimSuffix(filepath.Base(data), "-data")+"-offline")
	}
	var err error
	p.updates, err = tufrepo.Open(ctx, tufrepo.Config{
		Dir:        filepath.Join(p.cfg.Data, "updates"),
		Root:       p.cfg.TUFRoot,
		OfflineDir: offline,
		TargetsKey: p.key,
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

// Updates returns the update repository, nil when the releases run in a
// process of their own.
func (p *Platform) Updates() *tufrepo.Repo {
	if p.rel == nil {
		return nil
	}
	return p.rel.updates
}
