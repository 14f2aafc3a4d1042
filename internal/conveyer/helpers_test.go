package conveyer

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/gotest"
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

// testBuilder downloads modules through the machine's GOPROXY, checked
// against go.sum and the machine's GOSUMDB, into the machine's module cache
// (see package gotest): builds need the network only for what that cache
// lacks.
func testBuilder(t *testing.T) *Builder {
	t.Helper()
	return &Builder{ModCache: gotest.ModCache(t)}
}
