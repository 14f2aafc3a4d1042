package conveyer

import (
	"context"
	"debug/buildinfo"
	"errors"
	"os"
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
	host, err := goHost(ctx, "go")
	if err != nil {
		t.Fatal(err)
	}
	local := host.version
	other := "go1.26.7"
	if local == other {
		other = "go1.26.6"
	}
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	// A program named like the release on PATH, which the go command
	// would run unchecked for GOTOOLCHAIN=goX, is never run.
	fake := t.TempDir()
	if err := os.WriteFile(filepath.Join(fake, other), []byte("#!/bin/sh\necho fake toolchain ran >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", fake+string(filepath.ListSeparator)+os.Getenv("PATH"))

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
	for _, bad := range []string{"go1.26.7 -toolexec=x", "go1.26", "local"} {
		b.Toolchain = bad
		if _, err := b.Build(ctx, helloRecipe(t), workDir(t)); !errors.Is(err, ErrInvalidRecipe) {
			t.Errorf("build with toolchain %q: %v, want ErrInvalidRecipe", b.Toolchain, err)
		}
	}
	// Without a checksum database the toolchain cannot be checked, and
	// is not fetched.
	b = &Builder{Toolchain: other, ModCache: t.TempDir(), SumDB: "off"}
	if _, err := b.Build(ctx, helloRecipe(t), workDir(t)); !errors.Is(err, ErrToolchain) || !strings.Contains(err.Error(), "GOSUMDB is off") {
		t.Errorf("build with GOSUMDB off: %v, want ErrToolchain", err)
	}
	// A release that does not exist.
	b = &Builder{Toolchain: "go1.99.0", ModCache: t.TempDir()}
	if _, err := b.Build(ctx, helloRecipe(t), workDir(t)); !errors.Is(err, ErrToolchain) {
		t.Errorf("build with go1.99.0: %v, want ErrToolchain", err)
	}
}

// TestToolchainFromZip: a module cache that holds only the toolchain's
// zip (as after a download on another machine, or an unpack that never
// ran) gets the tree unpacked and readied by the go command, and builds;
// once that tree is changed, the build is refused before anything runs
// the toolchain.
func TestToolchainFromZip(t *testing.T) {
	ctx := context.Background()
	host, err := goHost(ctx, "go")
	if err != nil {
		t.Fatal(err)
	}
	other := "go1.26.7"
	if host.version == other {
		other = "go1.26.6"
	}
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	machine := strings.TrimSpace(string(out))
	// Fetched into the machine's cache (as TestBuildWithToolchain does),
	// and its download cache copied into a module cache of the test's
	// own.
	mod := "toolchain@v0.0.1-" + other + "." + host.goos + "-" + host.goarch
	fetch := exec.Command("go", "mod", "download", "golang.org/"+mod)
	fetch.Dir, fetch.Env = t.TempDir(), append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=-mod=mod")
	if out, err := fetch.CombinedOutput(); err != nil {
		t.Fatalf("fetching %s: %v: %s", other, err, out)
	}
	cache := filepath.Join(t.TempDir(), "modcache")
	t.Cleanup(func() { _ = RemoveWorkDir(cache) })
	dl := filepath.Join("cache", "download", "golang.org", "toolchain")
	if err := os.MkdirAll(filepath.Dir(filepath.Join(cache, dl)), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(machine, dl), filepath.Join(cache, dl)).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	tree := filepath.Join(cache, "golang.org", mod)
	if _, err := os.Stat(tree); err == nil {
		t.Fatal("the copied cache already holds the unpacked tree")
	}
	b := &Builder{Toolchain: other, ModCache: cache}
	res, err := b.Build(ctx, helloRecipe(t), workDir(t))
	if err != nil {
		t.Fatalf("build from the zip alone: %v", err)
	}
	if res.Record.Toolchain != other {
		t.Fatalf("recorded %s, want %s", res.Record.Toolchain, other)
	}

	victim := filepath.Join(tree, "VERSION")
	if err := os.Chmod(victim, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(victim, []byte(other+"\ntampered\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = b.Build(ctx, helloRecipe(t), workDir(t))
	if !errors.Is(err, ErrToolchain) || !strings.Contains(err.Error(), "the checksum database says") {
		t.Fatalf("build with a tampered toolchain: %v, want ErrToolchain and the hashes", err)
	}
	t.Logf("refused: %v", err)
}
