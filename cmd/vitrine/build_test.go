package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/center"
	"github.com/vitrine-dev/vitrine/internal/gotest"
	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/ruledb"
)

// repoRecipe reads a recipe the repository ships and points its "." git
// source at the repository root, which is what "." means when `vitrine up`
// runs there (tests run in this package's directory).
func repoRecipe(t *testing.T, name string) []byte {
	t.Helper()
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not in a git work tree: %v", err)
	}
	root := strings.TrimSpace(string(out))
	b, err := os.ReadFile(filepath.Join(root, "recipes", name))
	if err != nil {
		t.Fatal(err)
	}
	var r map[string]any
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	src := r["source"].(map[string]any)
	if src["git"] != "." {
		t.Fatalf("recipes/%s: source.git = %v, want \".\"", name, src["git"])
	}
	src["git"] = root
	b, err = json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBuildReleases builds the recipes the repository ships on a running
// platform with `vitrine build`, then checks every artifact with
// `vitrine release verify` (which trusts only discovery), and shows that a
// tampered artifact, envelope or release-log entry each fail with the
// check named.
func TestBuildReleases(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/vitrine for two platforms (about a minute)")
	}
	ctx := context.Background()
	data := t.TempDir()
	p, err := platform.Start(ctx, platform.Config{Data: data, Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond,
		GoModCache: gotest.ModCache(t), BuildSourceRoots: gotest.SourceRoots(t), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Close(ctx)
	}()
	e := &env{Stdout: io.Discard, Stderr: io.Discard, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	tokenFile := filepath.Join(data, "operator.token")
	dir := t.TempDir()
	build := func(recipe []byte) (*platform.Published, error) {
		t.Helper()
		f := filepath.Join(dir, "recipe.json")
		if err := os.WriteFile(f, recipe, 0o644); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		e := *e
		e.Stdout = &out
		if err := runBuild(ctx, &e, []string{"--url", p.URL(), "--token", tokenFile, "--json", f}); err != nil {
			return nil, err
		}
		// --json prints exactly one object of the documented shape.
		dec := json.NewDecoder(&out)
		dec.DisallowUnknownFields()
		var pub platform.Published
		if err := dec.Decode(&pub); err != nil {
			t.Fatalf("--json output %q: %v", out.String(), err)
		}
		return &pub, nil
	}
	verify := func(name string, content []byte) (string, error) {
		t.Helper()
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, content, 0o644); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		e := *e
		e.Stdout = &out
		err := runReleaseVerify(ctx, &e, []string{"--platform", p.URL(), f})
		return out.String(), err
	}
	artifact := func(pub *platform.Published, name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(data, "releases", pub.Name, pub.Version, "artifacts", name))
		if err != nil {
			t.Fatal(err)
		}
		var want string
		for _, a := range pub.Artifacts {
			if a.Name == name {
				want = a.SHA256
			}
		}
		if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != want {
			t.Fatalf("%s: served bytes %x, the build reported %s", name, got, want)
		}
		return b
	}

	// The sample rule database: EICAR is in it, at the recipe's version.
	rules, err := build(repoRecipe(t, "sample-ruledb.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rules.Artifacts) != 1 || rules.Artifacts[0].Name != "sample" {
		t.Fatalf("sample-ruledb artifacts = %+v, want one named sample", rules.Artifacts)
	}
	db, err := ruledb.Open(artifact(rules, "sample"))
	if err != nil {
		t.Fatal(err)
	}
	var eicar bool
	for _, s := range db.Signatures() {
		eicar = eicar || strings.Contains(s.Name, "EICAR")
	}
	if !eicar || db.Version() != 1 {
		t.Errorf("sample database: version %d, EICAR %v; want version 1 with EICAR", db.Version(), eicar)
	}
	if out, err := verify("sample", artifact(rules, "sample")); err != nil || !strings.Contains(out, "OK") {
		t.Errorf("release verify sample: %q, %v", out, err)
	}

	// Vitrine itself, for both platforms the recipe names.
	vit, err := build(repoRecipe(t, "vitrine.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(vit.Artifacts) != 2 || vit.LogIndex <= rules.LogIndex {
		t.Fatalf("vitrine release = %+v, want two artifacts after the rule database in the log", vit)
	}
	bin := artifact(vit, "vitrine_linux_amd64")
	if out, err := verify("vitrine_linux_amd64", bin); err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("release verify vitrine_linux_amd64: %q, %v", out, err)
	}
	// The binary the platform built runs.
	exe := filepath.Join(t.TempDir(), "vitrine")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(exe, "help").CombinedOutput(); err != nil || !strings.Contains(string(out), "usage: vitrine") {
		t.Errorf("the built vitrine: %v: %s", err, out)
	}

	// The Transparency Center's verifier, built by the conveyer from its
	// recipe, is byte for byte the one the Center serves: the code
	// checking in a reader's browser is a release anyone can rebuild.
	ver, err := build(repoRecipe(t, "center-verifier.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ver.Artifacts) != 1 || ver.Artifacts[0].SHA256 != center.VerifierSHA256 {
		t.Errorf("the verifier's release: %+v, want one artifact of sha256 %s, the verifier the Center serves (if the verifier was regenerated, the recipe's commit must be one that holds its source)", ver.Artifacts, center.VerifierSHA256)
	}

	// The same release again is refused, and nothing is built.
	if _, err := build(repoRecipe(t, "vitrine.json")); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("building a published release again = %v, want 409", err)
	}
	// A bad recipe is a 400 that says what is wrong.
	if _, err := build([]byte(`{"name":"x","version":"1","source":{"dir":"."},"targets":[],"bogus":1}`)); err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("a recipe with an unknown key = %v, want 400 naming it", err)
	}
	// A recipe whose commit does not exist fails the build: 422.
	var bad map[string]any
	if err := json.Unmarshal(repoRecipe(t, "sample-ruledb.json"), &bad); err != nil {
		t.Fatal(err)
	}
	bad["version"] = "2"
	bad["source"].(map[string]any)["commit"] = strings.Repeat("0", 40)
	badRecipe, _ := json.Marshal(bad)
	if _, err := build(badRecipe); err == nil || !strings.Contains(err.Error(), "422") {
		t.Errorf("a recipe naming a commit that does not exist = %v, want 422", err)
	}

	// Tampering: each fails, naming its check.
	if _, err := verify("vitrine_linux_amd64", append(bin[:len(bin):len(bin)], 0)); err == nil || !strings.Contains(err.Error(), "artifact:") {
		t.Errorf("a tampered artifact: %v, want the artifact check to fail", err)
	}
	relDir := filepath.Join(data, "releases", vit.Name, vit.Version)
	tamper := func(file string, edit func([]byte) []byte) func() {
		t.Helper()
		path := filepath.Join(relDir, file)
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		changed := edit(bytes.Clone(orig))
		if bytes.Equal(changed, orig) {
			t.Fatalf("tampering with %s changed nothing", file)
		}
		if err := os.WriteFile(path, changed, 0o644); err != nil {
			t.Fatal(err)
		}
		return func() {
			if err := os.WriteFile(path, orig, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// An envelope whose signature no longer matches its payload.
	restore := tamper("provenance.json", func(b []byte) []byte {
		var env map[string]any
		if err := json.Unmarshal(b, &env); err != nil {
			t.Fatal(err)
		}
		sigs := env["signatures"].([]any)
		sig := sigs[0].(map[string]any)
		s := []byte(sig["sig"].(string))
		if s[0] == 'A' {
			s[0] = 'B'
		} else {
			s[0] = 'A'
		}
		sig["sig"] = string(s)
		b, _ = json.Marshal(env)
		return b
	})
	if _, err := verify("vitrine_linux_amd64", bin); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("a tampered envelope: %v, want the signature check to fail", err)
	}
	restore()
	// A release-log entry that is not the one in the log: it still names
	// the artifact and the envelope, but it is not what the log holds.
	restore = tamper("release.json", func(b []byte) []byte {
		return bytes.Replace(b, []byte(`"version":"`+vit.Version+`"`), []byte(`"version":"9.9.9"`), 1)
	})
	if _, err := verify("vitrine_linux_amd64", bin); err == nil || !strings.Contains(err.Error(), "inclusion") {
		t.Errorf("a tampered release-log entry: %v, want the inclusion check to fail", err)
	}
	restore()
	if out, err := verify("vitrine_linux_amd64", bin); err != nil || !strings.Contains(out, "OK") {
		t.Errorf("after restoring the files: %q, %v", out, err)
	}
}
