package cli

import (
	"bytes"
	"context"
	"log/slog"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
)

// RouteKlog sends what Tessera logs through klog to logger, in the same
// format as the rest, with klog's informational lines (such as "Failed to
// fetch old checkpoint" on every first start, which is expected) at Debug.
// Warnings and errors keep their level: Tessera's MySQL driver says only
// with klog.Warningf that a checkpoint could not be published (its witness
// quorum not met, say).
func RouteKlog(logger *slog.Logger) {
	h := demoted{logger.Handler()}
	// Without a buffer writer klog hands a Warningf to the logger's Info,
	// which would demote it: the buffer keeps klog's header, whose first
	// letter is the severity.
	klog.SetLoggerWithOptions(logr.FromSlogHandler(h), klog.ContextualLogger(true),
		klog.WriteKlogBuffer(func(b []byte) { writeKlog(h, b) }))
}

// writeKlog logs one line klog formatted, "Lmmdd hh:mm:ss.uuuuuu pid
// file:line] message", at the level of its severity letter L. A line
// without that header is logged as it is, at Warn: what klog says is
// better seen than lost.
func writeKlog(h slog.Handler, b []byte) {
	b = bytes.TrimRight(b, "\n")
	level, msg := slog.LevelWarn, b
	if _, m, ok := bytes.Cut(b, []byte("] ")); ok && len(b) > 0 {
		switch b[0] {
		case 'I':
			level, msg = slog.LevelInfo, m
		case 'W':
			level, msg = slog.LevelWarn, m
		case 'E', 'F':
			level, msg = slog.LevelError, m
		}
	}
	ctx := context.Background()
	if !h.Enabled(ctx, level) {
		return
	}
	_ = h.Handle(ctx, slog.NewRecord(time.Now(), level, string(msg), 0))
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
