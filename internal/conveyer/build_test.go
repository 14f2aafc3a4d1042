package conveyer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func helloRecipe(t *testing.T) *Recipe {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("testdata", "hello"))
	if err != nil {
		t.Fatal(err)
	}
	return &Recipe{
		Name: "hello", Version: "1",
		Source: Source{Dir: dir},
		Targets: []Target{{Go: &GoTarget{
			Package: ".", Program: "hello", Platforms: []string{"linux/amd64"},
		}}},
	}
}

func TestBuildHello(t *testing.T) {
	ctx := context.Background()
	b := testBuilder(t)
	r := helloRecipe(t)
	first, err := b.Build(ctx, r, workDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Artifacts) != 1 || first.Artifacts[0].Name != "hello_linux_amd64" {
		t.Fatalf("artifacts = %+v, want one hello_linux_amd64", first.Artifacts)
	}
	rec := first.Record
	if !strings.HasPrefix(rec.Toolchain, "go1.") {
		t.Errorf("toolchain = %q, want go1.x", rec.Toolchain)
	}
	if rec.SourceSHA256 != first.Source.SHA256 || len(rec.SourceSHA256) != 64 {
		t.Errorf("record source digest = %q, source = %q", rec.SourceSHA256, first.Source.SHA256)
	}
	var sawVerify, sawBuild bool
	for _, c := range rec.Commands {
		for _, e := range c.Env {
			name, _, _ := strings.Cut(e, "=")
			if !allowedEnv(name) {
				t.Errorf("%v ran with %s outside the allowlist", c.Args, name)
			}
		}
		if c.Phase == "build" {
			for _, want := range []string{"GOPROXY=off", "GOFLAGS=-mod=readonly", "CGO_ENABLED=0", "GOTOOLCHAIN=local"} {
				if !slices.Contains(c.Env, want) {
					t.Errorf("%v: env lacks %s", c.Args, want)
				}
			}
		}
		switch {
		case slices.Equal(c.Args, []string{"go", "mod", "verify"}):
			sawVerify = true
		case len(c.Args) > 1 && c.Args[1] == "build":
			sawBuild = sawVerify
			for _, want := range []string{"-trimpath", "-buildvcs=false"} {
				if !slices.Contains(c.Args, want) {
					t.Errorf("%v lacks %s", c.Args, want)
				}
			}
		}
		for _, a := range append(slices.Clone(c.Args), c.Env...) {
			if strings.Contains(a, filepath.Dir(first.SourceDir)) {
				t.Errorf("record names the work directory: %q", a)
			}
		}
	}
	if !sawBuild {
		t.Errorf("commands %v: want go mod verify before go build", rec.Commands)
	}

	// Same source again elsewhere: same bytes. One byte changed: new
	// digests for both the source and the program.
	time.Sleep(1100 * time.Millisecond)
	second, err := b.Build(ctx, r, workDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if second.Source.SHA256 != first.Source.SHA256 || second.Artifacts[0].SHA256 != first.Artifacts[0].SHA256 {
		t.Errorf("rebuild differs: source %s vs %s, program %s vs %s",
			first.Source.SHA256, second.Source.SHA256, first.Artifacts[0].SHA256, second.Artifacts[0].SHA256)
	}
	if !slices.EqualFunc(first.Record.Commands, second.Record.Commands, func(a, b Command) bool {
		return slices.Equal(a.Args, b.Args) && slices.Equal(a.Env, b.Env)
	}) {
		t.Errorf("build records differ between two builds of one recipe")
	}
	changed := *b
	changed.afterExport = patchByte("main.go", `"hello"`, `"hellO"`)
	third, err := changed.Build(ctx, r, workDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if third.Source.SHA256 == first.Source.SHA256 || third.Artifacts[0].SHA256 == first.Artifacts[0].SHA256 {
		t.Errorf("a changed source byte left a digest unchanged: source %s, program %s", third.Source.SHA256, third.Artifacts[0].SHA256)
	}
}

func allowedEnv(name string) bool {
	return name == "PATH" || name == "HOME" || name == "TMPDIR" || name == "CGO_ENABLED" || strings.HasPrefix(name, "GO")
}

// patchByte returns a hook that replaces old with new (same length) in one
// file of the exported tree.
func patchByte(file, old, new string) func(string) error {
	return func(dir string) error {
		p := filepath.Join(dir, filepath.FromSlash(file))
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !strings.Contains(string(data), old) || len(old) != len(new) {
			return errors.New("patchByte: nothing to patch")
		}
		return os.WriteFile(p, []byte(strings.Replace(string(data), old, new, 1)), 0o644)
	}
}

// TestBuildOffline shows that the build phase has no network: with the
// download phase left out, the module the program needs cannot be fetched.
func TestBuildOffline(t *testing.T) {
	// A module cache of its own, empty: the build phase must not reach
	// the network to fill it.
	b := &Builder{skipDownload: true}
	_, err := b.Build(context.Background(), helloRecipe(t), workDir(t))
	if !errors.Is(err, ErrBuild) || !strings.Contains(err.Error(), "GOPROXY=off") {
		t.Fatalf("Build with an empty module cache = %v, want a GOPROXY=off failure", err)
	}
}

// TestBuildMissingSum shows that a go.sum lacking a module is refused, not
// completed.
func TestBuildMissingSum(t *testing.T) {
	src := t.TempDir()
	for _, f := range []string{"go.mod", "main.go"} {
		data, err := os.ReadFile(filepath.Join("testdata", "hello", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := helloRecipe(t)
	r.Source.Dir = src
	_, err := testBuilder(t).Build(context.Background(), r, workDir(t))
	if !errors.Is(err, ErrBuild) || !strings.Contains(err.Error(), "go.sum") || !strings.Contains(err.Error(), "golang.org/x/mod") {
		t.Fatalf("Build without go.sum lines = %v, want a failure naming go.sum and golang.org/x/mod", err)
	}
}

func TestBuildRefusesNonEmptyWorkDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := testBuilder(t).Build(context.Background(), helloRecipe(t), dir); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Build in a non-empty directory = %v, want refusal", err)
	}
}

func TestBuildRuleDBTarget(t *testing.T) {
	src := t.TempDir()
	rules := filepath.Join(src, "rules")
	if err := os.Mkdir(rules, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(rules, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.hsb", "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f:68:Test.EICAR\n")
	r := &Recipe{Name: "rules", Version: "7", Source: Source{Dir: src},
		Targets: []Target{{RuleDB: &RuleDBTarget{Name: "sample", Dir: "none"}}}}
	if _, err := testBuilder(t).Build(context.Background(), r, workDir(t)); err == nil {
		t.Fatal("Build with a missing rule directory succeeded")
	}
	r.Targets[0].RuleDB.Dir = "rules"
	first, err := testBuilder(t).Build(context.Background(), r, workDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(first.RuleDBs) != 1 || first.RuleDBs[0].Dir != filepath.Join(first.SourceDir, "rules") || len(first.Artifacts) != 0 {
		t.Fatalf("result = %+v, want one rule database in rules and no programs", first)
	}
	if f := first.RuleDBs[0].File; f.Name != "sample" || f.Size == 0 {
		t.Errorf("database file = %+v, want sample", f)
	}
	// Same sources, same bytes; one more signature, other bytes.
	again, err := testBuilder(t).Build(context.Background(), r, workDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if again.RuleDBs[0].File.SHA256 != first.RuleDBs[0].File.SHA256 {
		t.Errorf("two builds of the same rules differ: %s vs %s", first.RuleDBs[0].File.SHA256, again.RuleDBs[0].File.SHA256)
	}
	write("b.hdb", "44d88612fea8a8f36de82e1278abb02f:68:Test.EICAR-MD5\n")
	changed, err := testBuilder(t).Build(context.Background(), r, workDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if changed.RuleDBs[0].File.SHA256 == first.RuleDBs[0].File.SHA256 {
		t.Error("a new signature did not change the database")
	}
	// A malformed rule fails the build and names the file and line.
	write("c.ndb", "Bad.Sig:0:*:zz\n")
	_, err = testBuilder(t).Build(context.Background(), r, workDir(t))
	if !errors.Is(err, ErrBuild) || !strings.Contains(err.Error(), "rules/c.ndb:1") {
		t.Errorf("Build with a malformed rule = %v, want ErrBuild naming rules/c.ndb:1", err)
	}
}

// TestBuildVitrineReproducible builds this repository's own binary twice
// from git archive of HEAD, in different directories at different times.
func TestBuildVitrineReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/vitrine twice (about two minutes)")
	}
	root, head := repoRoot(t)
	r := &Recipe{
		Name: "vitrine", Version: "test",
		Source: Source{Git: root, Commit: head},
		Targets: []Target{{Go: &GoTarget{
			Package: "./cmd/vitrine", Platforms: []string{"linux/amd64"}, LDFlags: []string{"-s", "-w"},
		}}},
	}
	ctx := context.Background()
	b := testBuilder(t)
	first, err := b.Build(ctx, r, workDir(t))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	second, err := b.Build(ctx, r, workDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if first.Source.SHA256 != second.Source.SHA256 {
		t.Errorf("source archives differ: %s vs %s", first.Source.SHA256, second.Source.SHA256)
	}
	if got, want := second.Artifacts[0].SHA256, first.Artifacts[0].SHA256; got != want {
		t.Errorf("vitrine_linux_amd64 differs between two builds: %s vs %s", want, got)
	}
	t.Logf("%s %s (%d bytes), source %s", first.Artifacts[0].Name, first.Artifacts[0].SHA256, first.Artifacts[0].Size, first.Source.SHA256)
}
