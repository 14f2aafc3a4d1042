package tilestore

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/transparency-dev/tessera/api/layout"

	"github.com/vitrine-dev/vitrine/internal/backoff"
)

// publishLoop publishes a checkpoint at most once per interval while the
// log grows, and republishes an unchanged one every republish interval.
// A publication that fails (the witnesses cannot be reached, the disk is
// full) is tried again after a wait that doubles from a second up to 30s,
// with jitter: each one signs and asks every witness. A failure is logged
// when its reason changes, and the first success after it.
func (s *store) publishLoop(ctx context.Context, interval, republish time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var (
		failed  backoff.State
		retryAt time.Time
		lastErr string
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.cpNotify:
			if wait := max(interval-time.Since(s.pubAt), time.Until(retryAt)); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				case <-s.pubKick:
				}
			}
		case <-t.C:
			if time.Now().Before(retryAt) {
				continue
			}
		case <-s.pubKick:
			// The store recovered, and readers wait for a checkpoint:
			// publish now, whatever the backoff.
		}
		force := republish > 0 && time.Since(s.pubAt) >= republish
		err := s.publish(ctx, force)
		n := failed.Failures
		retryAt = time.Now().Add(failed.Next(publishBackoff, err, rand.Float64()))
		switch {
		case err != nil && err.Error() != lastErr:
			s.logger.WarnContext(ctx, "publishing checkpoint", "path", s.root, "err", err, "failures", failed.Failures, "retry_in", time.Until(retryAt).Round(time.Millisecond))
			lastErr = err.Error()
		case err == nil && n > 0:
			s.logger.InfoContext(ctx, "publishing checkpoints again", "path", s.root, "after_failures", n)
			lastErr = ""
		}
	}
}

// publishBackoff spaces the attempts to publish after a failure.
var publishBackoff = backoff.Policy{Min: time.Second, Max: 30 * time.Second}

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
	if err := s.fault("checkpoint", layout.CheckpointPath); err != nil {
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
