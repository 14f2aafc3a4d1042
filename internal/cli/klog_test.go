package cli

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"k8s.io/klog/v2"
)

// TestRouteKlog: what Tessera logs through klog reaches the logger with
// its level, informational lines demoted to Debug. Warnings were once
// demoted too (klog hands them to a logger's Info), which hid every
// failure of Tessera's MySQL driver to publish a checkpoint.
func TestRouteKlog(t *testing.T) {
	var buf bytes.Buffer
	RouteKlog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(klog.ClearLogger)
	klog.Infof("info %d", 1)
	klog.Warningf("publishCheckpoint: %v", "witness policy was not satisfied")
	klog.Errorf("error %d", 3)
	klog.InfoS("structured", "k", "v")
	klog.Flush()
	for _, want := range []string{
		`level=DEBUG msg="info 1"`,
		`level=WARN msg="publishCheckpoint: witness policy was not satisfied"`,
		`level=ERROR msg="error 3"`,
		`level=DEBUG msg=structured k=v`,
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("klog through RouteKlog: no line with %s in\n%s", want, buf.String())
		}
	}

	// At the default level, informational lines are dropped.
	buf.Reset()
	RouteKlog(slog.New(slog.NewTextHandler(&buf, nil)))
	klog.Infof("dropped")
	klog.Warningf("kept")
	if got := buf.String(); strings.Contains(got, "dropped") || !strings.Contains(got, `level=WARN msg=kept`) {
		t.Errorf("at Info: got\n%s", got)
	}
}

func TestWriteKlog(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"W1207 15:10:22.653835   11953 mysql.go:112] publishCheckpoint: x\n", `level=WARN msg="publishCheckpoint: x"`},
		{"I1207 15:10:22.653835   11953 a.go:1] hello\n", `level=DEBUG msg=hello`},
		{"E1207 15:10:22.653835   11953 a.go:1] bad", `level=ERROR msg=bad`},
		{"F1207 15:10:22.653835   11953 a.go:1] fatal", `level=ERROR msg=fatal`},
		{"no header at all\n", `level=WARN msg="no header at all"`},
	} {
		var buf bytes.Buffer
		writeKlog(demoted{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})}, []byte(tc.in))
		if !strings.Contains(buf.String(), tc.want) {
			t.Errorf("writeKlog(%q) = %q, want %s", tc.in, buf.String(), tc.want)
		}
	}
}
