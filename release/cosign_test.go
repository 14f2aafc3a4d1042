package release

import (
	"context"
	"crypto/ed25519"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cosignVersion is the cosign .ci/run installs.
const cosignVersion = "v2.6.5"

// TestCosignVerifiesEnvelope has cosign, a tool we did not write, verify
// an envelope we signed, with only the release key's PEM: it checks the
// DSSE signature and that the artifact's digest is a subject of the
// provenance. A tampered artifact fails.
func TestCosignVerifiesEnvelope(t *testing.T) {
	cosign, err := exec.LookPath("cosign")
	if err != nil {
		// .ci/run installs it; elsewhere this test says what it needs.
		t.Skip("cosign is not installed; `go install github.com/sigstore/cosign/v2/cmd/cosign@" + cosignVersion + "` (as .ci/run does)")
	}
	dir := t.TempDir()
	key, err := LoadOrCreateKey(filepath.Join(dir, "release.key"))
	if err != nil {
		t.Fatal(err)
	}
	bin := []byte("the vitrine binary\n")
	arts := []Artifact{{"vitrine_linux_amd64", strings.TrimPrefix(Digest(bin), "sha256:")}}
	st, err := Statement(arts, testBuild())
	if err != nil {
		t.Fatal(err)
	}
	env, err := Sign(context.Background(), key, st)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"release.pub":   PublicKey(key.Public().(ed25519.PublicKey)).PEM(),
		"envelope.json": env, "vitrine_linux_amd64": bin, "tampered": append(bin, '!'),
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(artifact string) (string, error) {
		cmd := exec.Command(cosign, "verify-blob-attestation", "--key", filepath.Join(dir, "release.pub"),
			"--signature", filepath.Join(dir, "envelope.json"), "--type", "slsaprovenance1",
			"--insecure-ignore-tlog=true", filepath.Join(dir, artifact))
		cmd.Env = append(os.Environ(), "COSIGN_EXPERIMENTAL=0", "HOME="+dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("vitrine_linux_amd64"); err != nil {
		t.Fatalf("cosign does not verify our envelope: %v\n%s", err, out)
	}
	if out, err := run("tampered"); err == nil {
		t.Errorf("cosign verified a tampered artifact:\n%s", out)
	}
}
