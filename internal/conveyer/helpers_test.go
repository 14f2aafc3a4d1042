package conveyer

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// workDir is a fresh, not yet existing work directory that is removed,
// read-only module cache included, when the test ends.
func workDir(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	// Cleanups run last-registered first: make the tree writable before
	// t.TempDir removes it.
	t.Cleanup(func() { _ = RemoveWorkDir(base) })
	return filepath.Join(base, "work")
}

// repoRoot is the git work tree holding this package, and its HEAD commit.
func repoRoot(t *testing.T) (root, head string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	out, err := exec.Command("git", "rev-parse", "--show-toplevel", "HEAD").Output()
	if err != nil {
		t.Skipf("not in a git work tree: %v", err)
	}
	lines := strings.Fields(string(out))
	return lines[0], lines[1]
}

// testBuilder downloads modules from the machine's module cache used as a
// file:// GOPROXY when it exists, so tests run offline and fast; otherwise
// from the machine's GOPROXY.
func testBuilder(t *testing.T) *Builder {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatalf("go env GOMODCACHE: %v", err)
	}
	dl := filepath.Join(strings.TrimSpace(string(out)), "cache", "download")
	if _, err := os.Stat(dl); err == nil {
		return &Builder{Proxy: "file://" + dl, SumDB: "off"}
	}
	return &Builder{}
}
