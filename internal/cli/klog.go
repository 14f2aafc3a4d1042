package cli

import (
	"context"
	"log/slog"

	"k8s.io/klog/v2"
)

// RouteKlog sends what Tessera logs through klog to logger, in the same
// format as the rest, with klog's informational lines (such as "Failed to
// fetch old checkpoint" on every first start, which is expected) at Debug.
// Warnings and errors keep their level.
func RouteKlog(logger *slog.Logger) {
	klog.SetSlogLogger(slog.New(demoted{logger.Handler()}))
}

// demoted is a slog.Handler that lowers records below Warn to Debug.
type demoted struct{ h slog.Handler }

func (d demoted) Enabled(ctx context.Context, l slog.Level) bool {
	if l < slog.LevelWarn {
		l = slog.LevelDebug
	}
	return d.h.Enabled(ctx, l)
}

func (d demoted) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		r.Level = slog.LevelDebug
	}
	return d.h.Handle(ctx, r)
}

func (d demoted) WithAttrs(as []slog.Attr) slog.Handler { return demoted{d.h.WithAttrs(as)} }
func (d demoted) WithGroup(n string) slog.Handler       { return demoted{d.h.WithGroup(n)} }
