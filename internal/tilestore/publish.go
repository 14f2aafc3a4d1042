package tilestore

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/transparency-dev/tessera/api/layout"
)

// publishLoop publishes a checkpoint at most once per interval while the
// log grows, and republishes an unchanged one every republish interval.
func (s *store) publishLoop(ctx context.Context, interval, republish time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.cpNotify:
			if wait := interval - time.Since(s.pubAt); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		case <-t.C:
		}
		force := republish > 0 && time.Since(s.pubAt) >= republish
		if err := s.publish(ctx, force); err != nil {
			s.logger.WarnContext(ctx, "publishing checkpoint", "path", s.root, "err", err)
		}
	}
}

// publish signs the current tree head, gets it witnessed under the policy
// (fail closed: an error leaves the previous checkpoint in place) and
// writes it as the log's checkpoint.
func (s *store) publish(ctx context.Context, force bool) error {
	size, root := s.current()
	if size == s.published && !force && !s.pubAt.IsZero() {
		return nil
	}
	cp, err := s.newCP(ctx, size, root)
	if err != nil {
		return err
	}
	p := filepath.Join(s.root, layout.CheckpointPath)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, cp, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	s.published, s.pubAt = size, time.Now()
	return nil
}
