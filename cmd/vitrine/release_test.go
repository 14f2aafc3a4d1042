package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/release"
)

// TestReleaseVerify publishes a release on a platform and checks its
// artifacts with `vitrine release verify`, which trusts only the
// discovery document: a good artifact passes; a tampered one, or one no
// release ships, fails and says which check.
func TestReleaseVerify(t *testing.T) {
	ctx := context.Background()
	p, err := platform.Start(ctx, platform.Config{Data: t.TempDir(), Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Close(ctx)
	}()
	source := []byte("a deterministic source archive")
	build := &release.Build{
		Recipe: json.RawMessage(`{"name":"vitrine"}`), Source: "dir:.", Archive: strings.TrimPrefix(release.Digest(source), "sha256:"),
		Toolchain: "go1.26.8", Env: map[string]string{"CGO_ENABLED": "0"}, BuilderID: p.URL() + "/conveyer", InvocationID: "b1",
		Started: time.Now().Add(-time.Minute), Finished: time.Now(),
	}
	bin := []byte("\x7fELF the binary")
	pub, err := p.Publish(ctx, "vitrine", "1.0.0", map[string][]byte{"vitrine_linux_amd64": bin, "vitrine_linux_arm64": []byte("arm")}, source, build)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Publish(ctx, "vitrine", "1.0.0", map[string][]byte{"x": bin}, source, build); err == nil {
		t.Error("the same release published twice")
	}
	dir := t.TempDir()
	verify := func(name string, content []byte) (string, error) {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, content, 0o644); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		err := runReleaseVerify(ctx, &env{Stdout: &out, Stderr: io.Discard, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
			[]string{"--platform", p.URL(), f})
		return out.String(), err
	}
	if out, err := verify("vitrine_linux_amd64", bin); err != nil || !strings.Contains(out, "OK") || !strings.Contains(out, "1.0.0") {
		t.Fatalf("a published artifact: %q, %v (release at log index %d)", out, err, pub.LogIndex)
	}
	if _, err := verify("vitrine_linux_amd64", append(bin, '!')); err == nil || !strings.Contains(err.Error(), "artifact:") {
		t.Errorf("a tampered artifact: %v, want the artifact check to fail", err)
	}
	if _, err := verify("vitrine_windows_amd64.exe", bin); err == nil || !strings.Contains(err.Error(), "no published release") {
		t.Errorf("an artifact no release ships: %v", err)
	}
}
