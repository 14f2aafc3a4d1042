package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/internal/tufrepo"
	"github.com/vitrine-dev/vitrine/release"
)

// TestTUFCommands runs the documented procedure: tuf init against the
// platform's data directory, the platform started with --tuf-root, a
// release, tuf verify (go-tuf's client from discovery), then the
// revocation of the targets key by tuf rotate --new-targets-key and tuf
// push-root, after which the same client follows to root version 2.
func TestTUFCommands(t *testing.T) {
	ctx := context.Background()
	data, offline, cache := t.TempDir(), filepath.Join(t.TempDir(), "offline"), t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := dispatch(ctx, &env{Stdout: &out, Stderr: io.Discard, Logger: quiet}, args)
		return out.String(), err
	}

	if out, err := run("tuf", "init", "--data", data, "--out", offline, "--keys", "2", "--threshold", "2"); err != nil {
		t.Fatalf("tuf init: %v\n%s", err, out)
	}
	if _, err := run("tuf", "init", "--data", data, "--out", offline); err == nil {
		t.Error("tuf init wrote over an offline directory holding a root")
	}
	root, err := os.ReadFile(filepath.Join(offline, "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := platform.Start(ctx, platform.Config{Data: data, Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond, TUFRoot: root, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Close(ctx)
	}()
	var dr struct{ Updates platform.DiscoveryUpdates }
	if b, _ := json.Marshal(p.Discovery()); json.Unmarshal(b, &dr) != nil || !jsonEqual(dr.Updates.Root, root) {
		t.Fatal("discovery does not carry the root tuf init made")
	}
	source := []byte("source")
	build := &release.Build{
		Recipe: json.RawMessage(`{"name":"vitrine"}`), Source: "dir:.", Archive: strings.TrimPrefix(release.Digest(source), "sha256:"),
		Toolchain: "go1.26.8", Env: map[string]string{"CGO_ENABLED": "0"}, BuilderID: p.URL() + "/conveyer", InvocationID: "b1",
		Started: time.Now().Add(-time.Minute), Finished: time.Now(),
	}
	if _, err := p.Publish(ctx, "vitrine", "1.0.0", map[string][]byte{"vitrine_linux_amd64": []byte("bin")}, source, build); err != nil {
		t.Fatal(err)
	}
	out, err := run("tuf", "verify", "--platform", p.URL(), "--cache", cache)
	if err != nil || !strings.Contains(out, "OK: vitrine/1.0.0/vitrine_linux_amd64") || !strings.Contains(out, "3 targets verified by go-tuf under root version 1") {
		t.Fatalf("tuf verify: %v\n%s", err, out)
	}

	// Revoke the targets key (the release key): a new one, named by root 2.
	cur := filepath.Join(t.TempDir(), "root.json")
	if err := os.WriteFile(cur, p.Updates().LatestRoot(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run("tuf", "rotate", "--out", offline, "--root", cur, "--new-targets-key"); err != nil {
		t.Fatalf("tuf rotate: %v\n%s", err, out)
	}
	token := filepath.Join(data, "operator.token")
	v2 := filepath.Join(offline, "2.root.json")
	if _, err := run("tuf", "push-root", "--platform", p.URL(), "--token", token, v2); err == nil || !strings.Contains(err.Error(), "targets.key") {
		t.Fatalf("push-root before the new targets key is in place: %v", err)
	}
	key, err := os.ReadFile(filepath.Join(offline, "targets.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "updates", "targets.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run("tuf", "push-root", "--platform", p.URL(), "--token", token, v2); err != nil || !strings.Contains(out, "root version 2") {
		t.Fatalf("tuf push-root: %v\n%s", err, out)
	}
	out, err = run("tuf", "verify", "--platform", p.URL(), "--cache", cache)
	if err != nil || !strings.Contains(out, "3 targets verified by go-tuf under root version 2") {
		t.Fatalf("tuf verify after the rotation: %v\n%s", err, out)
	}

	// Replace the timestamp key (how a fast-forward attack ends): the new
	// key goes in place, root 3 names it, and clients follow.
	newTS := filepath.Join(t.TempDir(), "timestamp.key")
	if _, err := tufrepo.NewKey(newTS); err != nil {
		t.Fatal(err)
	}
	key, err = os.ReadFile(newTS)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "updates", "timestamp.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cur, p.Updates().LatestRoot(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run("tuf", "rotate", "--out", offline, "--root", cur, "--timestamp-key", newTS); err != nil {
		t.Fatalf("tuf rotate --timestamp-key: %v\n%s", err, out)
	}
	if out, err := run("tuf", "push-root", "--platform", p.URL(), "--token", token, filepath.Join(offline, "3.root.json")); err != nil || !strings.Contains(out, "root version 3") {
		t.Fatalf("tuf push-root of root 3: %v\n%s", err, out)
	}
	out, err = run("tuf", "verify", "--platform", p.URL(), "--cache", cache)
	if err != nil || !strings.Contains(out, "3 targets verified by go-tuf under root version 3") {
		t.Fatalf("tuf verify after the timestamp key's rotation: %v\n%s", err, out)
	}
	ts, err := os.ReadFile(filepath.Join(data, "updates", "metadata", "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	var signed struct {
		Signatures []struct {
			KeyID string `json:"keyid"`
		} `json:"signatures"`
	}
	newPub, _ := tufrepo.LoadKey(newTS)
	if json.Unmarshal(ts, &signed) != nil || len(signed.Signatures) != 1 || signed.Signatures[0].KeyID != tufKeyID(t, newPub.Public().(ed25519.PublicKey)) {
		t.Errorf("timestamp.json is not signed by the new timestamp key alone: %s", ts)
	}
}

// tufKeyID is the TUF key id of an Ed25519 public key, as go-tuf computes it.
func tufKeyID(t *testing.T, pub ed25519.PublicKey) string {
	t.Helper()
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	id, err := k.ID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func jsonEqual(a, b []byte) bool {
	var x, y bytes.Buffer
	return json.Compact(&x, a) == nil && json.Compact(&y, b) == nil && bytes.Equal(x.Bytes(), y.Bytes())
}
