package center

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
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
