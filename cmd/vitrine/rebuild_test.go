package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/conveyer"
	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/internal/rebuilder"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/ruledb"
)

// TestRebuildOnce publishes two rule-database releases, one of them with an
// artifact that its source does not build, runs `vitrine rebuild --once`
// and checks the verdicts with `vitrine rebuild verify`.
func TestRebuildOnce(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := startNamed(t, "vitrine.local")
	src := t.TempDir()
	for _, d := range []string{"a", "b"} {
		os.MkdirAll(filepath.Join(src, d), 0o755)
		if err := os.WriteFile(filepath.Join(src, d, "eicar.hsb"), []byte("275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f:68:Vitrine.Test.EICAR-SHA256\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, version := range []string{"1", "2"} {
		recipe := []byte(`{"name":"rules","version":"` + version + `","source":{"dir":"` + src + `"},"targets":[{"ruledb":{"name":"a","dir":"a"}},{"ruledb":{"name":"b","dir":"b"}}]}`)
		r, err := conveyer.ParseRecipe(recipe)
		if err != nil {
			t.Fatal(err)
		}
		work := filepath.Join(t.TempDir(), "w")
		res, err := (&conveyer.Builder{}).Build(ctx, r, work)
		if err != nil {
			t.Fatal(err)
		}
		arts := map[string][]byte{}
		for _, d := range res.RuleDBs {
			arts[d.File.Name], _ = os.ReadFile(d.File.Path)
		}
		if version == "2" {
			// A valid database, but not what the source builds.
			other, err := ruledb.Parse("other.hsb", strings.NewReader(strings.Repeat("0", 64)+":1:Vitrine.Test.Planted\n"))
			if err != nil {
				t.Fatal(err)
			}
			if arts["b"], err = ruledb.Compile([]*ruledb.Source{other}, 2); err != nil {
				t.Fatal(err)
			}
		}
		source, _ := os.ReadFile(res.Source.Path)
		build := &release.Build{Recipe: recipe, Source: "dir:" + src, Archive: res.Source.SHA256, Toolchain: "go1.26.8",
			BuilderID: p.URL() + "/conveyer", InvocationID: version, Started: time.Now(), Finished: time.Now()}
		if _, err := p.Publish(ctx, "rules", version, arts, source, build); err != nil {
			t.Fatal(err)
		}
	}

	data := t.TempDir()
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		// As main does: "rebuild verify" is a command of its own.
		err := dispatch(ctx, &env{Stdout: &out, Stderr: io.Discard, Logger: quiet}, append([]string{"rebuild"}, args...))
		return out.String(), err
	}
	out, err := run("--platform", p.URL(), "--data", data, "--once", "--work", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "1 of 2 releases did not reproduce") {
		t.Errorf("--once: %v, want 1 of 2 not reproduced", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "reproduced: rules 1 ") || !strings.HasPrefix(lines[1], "NOT reproduced: rules 2 ") || !strings.HasSuffix(lines[1], "differ: b") {
		t.Errorf("--once printed:\n%s\nwant rules 1 reproduced and rules 2 not, with b differing", out)
	}
	if out, err := run("--platform", p.URL(), "--data", data, "--once"); err != nil || out != "nothing new to rebuild\n" {
		t.Errorf("--once again: %q, %v", out, err)
	}

	// The verdicts, as the rebuilder serves them.
	key, err := release.LoadOrCreateKey(filepath.Join(data, "rebuilder.key"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer((&rebuilder.Rebuilder{Key: key, Dir: data}).Handler())
	defer srv.Close()
	pub := release.PublicKey(key.Public().(ed25519.PublicKey))
	keyFile := filepath.Join(t.TempDir(), "rebuilder.pem")
	os.WriteFile(keyFile, pub.PEM(), 0o644)
	if out, err := run("verify", "--rebuilder", srv.URL, "--key", keyFile, "rules", "1"); err != nil || !strings.HasPrefix(out, "reproduced: rules 1") {
		t.Errorf("verify rules 1: %q, %v", out, err)
	}
	if out, err := run("verify", "--rebuilder", srv.URL, "--key", keyFile, "rules", "2"); err == nil || !strings.Contains(out, "differ: b") {
		t.Errorf("verify rules 2: %q, %v; want an error and b named", out, err)
	}
	other, _ := release.LoadOrCreateKey(filepath.Join(t.TempDir(), "other.key"))
	os.WriteFile(keyFile, release.PublicKey(other.Public().(ed25519.PublicKey)).PEM(), 0o644)
	if _, err := run("verify", "--rebuilder", srv.URL, "--key", keyFile, "rules", "1"); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("verify under another key: %v, want a signature error", err)
	}
	if _, err := run("verify", "--rebuilder", srv.URL, "rules", "3"); err == nil {
		t.Error("verify of a release without a verdict passed")
	}

	// Against the release log: the platform's log holds the entry the
	// verdict names; another platform's log, where rules 1 has other
	// bytes, does not.
	os.WriteFile(keyFile, pub.PEM(), 0o644)
	if out, err := run("verify", "--rebuilder", srv.URL, "--key", keyFile, "--platform", p.URL(), "rules", "1"); err != nil || !strings.Contains(out, "about release-log entry 0 of "+p.URL()) {
		t.Errorf("verify rules 1 against the log: %q, %v", out, err)
	}
	other2, err := platform.Start(ctx, platform.Config{Data: t.TempDir(), Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		other2.Close(ctx)
	}()
	if _, err := run("verify", "--rebuilder", srv.URL, "--key", keyFile, "--platform", other2.URL(), "rules", "1"); err == nil || !strings.Contains(err.Error(), "checkpoint has 0 entries") {
		t.Errorf("verify against an empty log: %v, want the entry missing", err)
	}
	src2 := []byte("other source")
	if _, err := other2.Publish(ctx, "rules", "1", map[string][]byte{"a": []byte("not the same")}, src2, &release.Build{Recipe: []byte(`{}`), Source: "dir:x",
		Archive: strings.TrimPrefix(release.Digest(src2), "sha256:"), Toolchain: "go1.26.8", BuilderID: other2.URL() + "/conveyer", InvocationID: "x", Started: time.Now(), Finished: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := run("verify", "--rebuilder", srv.URL, "--key", keyFile, "--platform", other2.URL(), "rules", "1"); err == nil || !strings.Contains(err.Error(), "the verdict is about") {
		t.Errorf("verify against another log: %v, want the entry's digest to differ", err)
	}

	// Pinned: the platform's own log key and policy pass; another log's
	// key, or a policy any log operator meets alone, do not.
	var disc platform.Discovery
	resp, err := http.Get(p.URL() + "/.well-known/vitrine.json")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&disc)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	vkeys := map[string]string{}
	for _, l := range disc.Logs {
		vkeys[l.Name] = l.VKey
	}
	policy := filepath.Join(t.TempDir(), "policy")
	os.WriteFile(policy, []byte(disc.WitnessPolicy), 0o644)
	if out, err := run("verify", "--rebuilder", srv.URL, "--key", keyFile, "--platform", p.URL(), "--log-key", vkeys["release"], "--witness-policy", policy, "rules", "1"); err != nil || !strings.Contains(out, "the pinned log key and witness policy") {
		t.Errorf("verify with pins: %q, %v", out, err)
	}
	if _, err := run("verify", "--rebuilder", srv.URL, "--key", keyFile, "--platform", p.URL(), "--log-key", vkeys["policy"], "rules", "1"); err == nil || !strings.Contains(err.Error(), "pinned") {
		t.Errorf("verify with another log's key pinned: %v, want a key mismatch", err)
	}
	os.WriteFile(policy, []byte("quorum none\n"), 0o644)
	if _, err := run("verify", "--rebuilder", srv.URL, "--key", keyFile, "--platform", p.URL(), "--witness-policy", policy, "rules", "1"); err == nil || !strings.Contains(err.Error(), "quorum none") {
		t.Errorf("verify under quorum none: %v, want it refused", err)
	}
}
