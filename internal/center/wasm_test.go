package center

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifierReproducible: the verifier the Center serves to browsers is
// what its source in this repository builds to, byte for byte, with the
// flags `go generate` uses: a reviewer rebuilds it and compares digests.
// Built with another Go version, the bytes differ: regenerate it then
// (go generate ./internal/center) and commit it with the change of
// toolchain.
func TestVerifierReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the verifier; skipped in -short mode")
	}
	out := filepath.Join(t.TempDir(), "verify.wasm")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, "./wasm")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the verifier: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != VerifierSHA256 {
		v, _ := exec.Command("go", "version").Output()
		t.Errorf("the verifier built from source has SHA-256 %s, the one served %s (%s): regenerate it with go generate ./internal/center", got, VerifierSHA256, v)
	}
}

// TestVerifierRecipeCommit: the recipe that publishes the verifier
// (recipes/center-verifier.json) names a commit whose go.mod, go.sum and
// every package the verifier compiles are those of this tree, so that the
// conveyer's build of it is the verifier served. A change to any of them
// (a dependency moved, a package changed) needs the verifier regenerated
// and the recipe's commit bumped; this says so in seconds, where
// cmd/vitrine's TestBuildReleases finds it after building everything.
func TestVerifierRecipeCommit(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "recipes", "center-verifier.json"))
	if err != nil {
		t.Fatal(err)
	}
	var recipe struct {
		Source struct {
			Commit string `json:"commit"`
		} `json:"source"`
	}
	if err := json.Unmarshal(b, &recipe); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.Command("git", "rev-parse", "--show-toplevel").Output(); err != nil {
		t.Skipf("not in a git work tree: %v", err)
	}
	if err := exec.Command("git", "cat-file", "-e", recipe.Source.Commit+"^{commit}").Run(); err != nil {
		t.Skipf("the recipe's commit %s is not in this clone's history (a shallow clone?)", recipe.Source.Commit)
	}
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", "./wasm")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{"go.mod", "go.sum"}
	for _, dir := range strings.Fields(string(out)) {
		if rel, err := filepath.Rel(root, dir); err == nil && !strings.HasPrefix(rel, "..") {
			paths = append(paths, rel)
		}
	}
	// Test files are not compiled in.
	paths = append(paths, ":(exclude,glob)**/*_test.go", ":(exclude,glob)**/testdata/**")
	diff := exec.Command("git", append([]string{"diff", "--stat", recipe.Source.Commit, "--"}, paths...)...)
	diff.Dir = root
	d, err := diff.Output()
	if err != nil {
		t.Fatalf("git diff: %v", err)
	}
	if len(strings.TrimSpace(string(d))) > 0 {
		t.Errorf("the verifier's sources differ from those of the recipe's commit %s:\n%s\nregenerate the verifier (go generate ./internal/center), commit, and bump the commit in recipes/center-verifier.json", recipe.Source.Commit, d)
	}
}
