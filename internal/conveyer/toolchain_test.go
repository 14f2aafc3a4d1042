package conveyer

import (
	"context"
	"debug/buildinfo"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildWithToolchain builds with a Go toolchain other than the go
// command's own, as a recipe may pin and a rebuilder does to match the
// original build: the
// download phase fetches it through the machine's module proxy, checked
// against the checksum database, and the build phase runs it offline.
// The build records it, and the binary says it was built with it. It
// needs the machine's GOPROXY (proxy.golang.org here) for the toolchain
// module, about 75 MB on the first run; later runs find it in the
// machine's module cache.
func TestBuildWithToolchain(t *testing.T) {
	ctx := context.Background()
	local, err := goVersion(ctx, "go")
	if err != nil {
		t.Fatal(err)
	}
	other := "go1.26.7"
	if local == other {
		other = "go1.26.6"
	}
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	// Named by the recipe.
	r := helloRecipe(t)
	r.Toolchain = other
	b := &Builder{ModCache: strings.TrimSpace(string(out))}
	res, err := b.Build(ctx, r, workDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Record.Toolchain != other {
		t.Errorf("recorded toolchain %s, want %s (the go command is %s)", res.Record.Toolchain, other, local)
	}
	bi, err := buildinfo.ReadFile(res.Artifacts[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	if bi.GoVersion != other {
		t.Errorf("the binary was built with %s, want %s", bi.GoVersion, other)
	}
	t.Logf("built %s with %s; the go command is %s", filepath.Base(res.Artifacts[0].Path), bi.GoVersion, local)

	// The go command's own version is no switch at all, and the
	// Builder's toolchain overrides the recipe's.
	b = testBuilder(t)
	b.Toolchain = local
	if res, err := b.Build(ctx, r, workDir(t)); err != nil || res.Record.Toolchain != local {
		t.Errorf("build with the local toolchain named: %v, %v", res, err)
	}
	b.Toolchain = "go1.26.7 -toolexec=x"
	if _, err := b.Build(ctx, helloRecipe(t), workDir(t)); !errors.Is(err, ErrInvalidRecipe) {
		t.Errorf("build with toolchain %q: %v, want ErrInvalidRecipe", b.Toolchain, err)
	}
}
