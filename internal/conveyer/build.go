package conveyer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/mod/sumdb/dirhash"

	"github.com/vitrine-dev/vitrine/ruledb"
)

// ErrBuild is wrapped by the error of any build step that failed, with the
// command's own message attached.
var ErrBuild = errors.New("build failed")

// A Builder runs recipes. The zero value builds with the go command found
// on PATH and downloads modules through the machine's GOPROXY. A Builder is
// safe for concurrent use if its fields are not changed; each build has
// its own work directory.
type Builder struct {
	// Go is the go command. Empty means "go" looked up on PATH.
	Go string
	// Proxy is the GOPROXY of the download phase. Empty means the
	// machine's own ("go env GOPROXY" in the caller's environment).
	Proxy string
	// SumDB is the GOSUMDB of the download phase; empty means the
	// machine's own. It only matters for modules go.sum lacks, and those
	// make the build fail anyway.
	SumDB string
	// ModCache is the module cache the download phase fills and the build
	// phase reads. Empty means a fresh one in the work directory. A shared
	// cache is safe: "go mod verify" checks every module against go.sum
	// before each build.
	ModCache string
	// Toolchain is the Go toolchain to build with, as "go env GOVERSION"
	// names it (e.g. "go1.26.8"); it overrides the recipe's. Empty (with
	// no toolchain in the recipe either), or the version of the go
	// command itself, means that go command. Another version is fetched in the
	// download phase as the module golang.org/toolchain, through the
	// proxy and checked against the checksum database as the go command
	// does for GOTOOLCHAIN (so SumDB must not be "off"), and the build
	// phase runs it from the module cache with no network. A rebuilder
	// uses it to build with the toolchain the original build recorded,
	// whatever Go it has installed.
	Toolchain string
	// SourceRoots, when not nil, are the absolute directories local
	// sources may come from: a recipe's dir, or its local git path and
	// the repository git finds there, must resolve (symlinks followed) to
	// one of them or a path below, or Build fails with
	// [ErrSourceNotAllowed] before anything is exported. An empty, non-nil
	// list allows URL sources only. Nil allows any local path, which is
	// only right for recipes the caller made itself (the rebuilder's);
	// a builder of recipes from elsewhere, such as the platform, sets it.
	SourceRoots []string
	// Logger receives one record per command; nil discards them.
	Logger *slog.Logger
	// Progress, when set, is called as each step of a build begins, with
	// the recipe and a short description ("downloading modules",
	// "compiling vitrine_linux_arm64"), for a person waiting on it.
	Progress func(r *Recipe, step string)

	// afterExport, when set, is called on the exported tree before it is
	// archived; tests use it to change the source.
	afterExport func(dir string) error
	// skipDownload leaves the download phase out; tests use it to show
	// that the build phase cannot reach the network.
	skipDownload bool
}

// FirstStep is the step every build begins with, as [Builder.Progress]
// is told.
const FirstStep = "exporting the source"

// Result is what a build produced and how.
type Result struct {
	Recipe *Recipe
	// Source is the deterministic archive of the exported source.
	Source File
	// SourceDir is the exported source tree.
	SourceDir string
	// Artifacts are the Go programs, in recipe order, one per platform.
	Artifacts []Artifact
	// RuleDBs are the rule database targets, each with the absolute path
	// of its rule sources in SourceDir, for package ruledb to compile.
	RuleDBs []RuleDB
	// Record describes the build for the provenance.
	Record Record
}

// File is a file the build wrote, with its digest.
type File struct {
	Name   string // base name, e.g. "vitrine_linux_amd64"
	Path   string // absolute path
	SHA256 string // lowercase hex
	Size   int64
}

// Artifact is one Go program for one platform.
type Artifact struct {
	File
	Package string
	GOOS    string
	GOARCH  string
}

// RuleDB is a rule database target compiled from the export: Dir holds
// its rule sources, File the database package ruledb compiled from them,
// at the recipe's version.
type RuleDB struct {
	Target RuleDBTarget
	Dir    string
	File   File
}

// Record is the build as a provenance writer needs it. Paths under the work
// directory are written as "$WORK/...", so the record of a rebuild
// elsewhere is identical.
type Record struct {
	// Toolchain is "go env GOVERSION" as the build phase saw it.
	Toolchain string
	// SourceSHA256 is the digest of the source archive.
	SourceSHA256 string
	// Commands are every command run, in order.
	Commands []Command
}

// Command is one command the build ran.
type Command struct {
	Phase string   // "download" or "build"
	Dir   string   // working directory
	Args  []string // argv, starting with "go"
	Env   []string // the complete environment, sorted as given
}

// Build is (&Builder{}).Build.
func Build(ctx context.Context, r *Recipe, workDir string) (*Result, error) {
	return (&Builder{}).Build(ctx, r, workDir)
}

// Build exports r's source into workDir, archives it and builds every Go
// target hermetically (see the package documentation). workDir must not
// exist or be empty. Errors from a failed command wrap [ErrBuild]. The
// module cache in workDir is read-only, as the go command leaves it; use
// [RemoveWorkDir] to delete it.
func (b *Builder) Build(ctx context.Context, r *Recipe, workDir string) (*Result, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	work, err := prepareWorkDir(workDir)
	if err != nil {
		return nil, err
	}
	goCmd, err := b.goCommand()
	if err != nil {
		return nil, err
	}
	log := b.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res := &Result{Recipe: r, SourceDir: filepath.Join(work, "src")}
	progress := func(step string) {
		if b.Progress != nil {
			b.Progress(r, step)
		}
	}
	progress(FirstStep)

	// The source.
	src := r.Source
	if b.SourceRoots != nil {
		if src, err = allowedSource(ctx, src, b.SourceRoots); err != nil {
			return nil, err
		}
	}
	if err := Export(ctx, src, res.SourceDir); err != nil {
		return nil, err
	}
	if b.afterExport != nil {
		if err := b.afterExport(res.SourceDir); err != nil {
			return nil, err
		}
	}
	if res.Source, err = writeArchive(res.SourceDir, filepath.Join(work, "source.tar.gz")); err != nil {
		return nil, err
	}
	res.Record.SourceSHA256 = res.Source.SHA256
	log.InfoContext(ctx, "source exported", "recipe", r.Name, "version", r.Version, "sha256", res.Source.SHA256)

	outDir := filepath.Join(work, "out")
	if err := os.Mkdir(outDir, 0o755); err != nil {
		return nil, err
	}
	for _, t := range r.Targets {
		if t.RuleDB == nil {
			continue
		}
		progress("compiling rule database " + t.RuleDB.Name)
		db, err := compileRuleDB(r, t.RuleDB, res.SourceDir, outDir)
		if err != nil {
			return nil, err
		}
		res.RuleDBs = append(res.RuleDBs, *db)
		log.InfoContext(ctx, "compiled", "ruledb", t.RuleDB.Name, "sha256", db.File.SHA256)
	}
	if !hasGo(r) {
		return res, nil
	}

	modCache := b.ModCache
	if modCache == "" {
		modCache = filepath.Join(work, "modcache")
	}
	if modCache, err = filepath.Abs(modCache); err != nil {
		return nil, err
	}
	// The toolchain: the go command's own, or another fetched below.
	switchTo := cmp(b.Toolchain, r.Toolchain)
	var host hostGo
	if switchTo != "" {
		if !IsToolchain(switchTo) {
			return nil, fmt.Errorf("%w: toolchain %q is not a Go version such as go1.26.8", ErrInvalidRecipe, switchTo)
		}
		if host, err = goHost(ctx, goCmd); err != nil {
			return nil, err
		}
		if host.version == switchTo {
			switchTo = ""
		}
	}
	if switchTo != "" && b.skipDownload {
		return nil, fmt.Errorf("%w: toolchain %s is fetched in the download phase, which this builder skips", ErrToolchain, switchTo)
	}
	run := func(phase string, env []string, out io.Writer, args ...string) error {
		cmd := exec.CommandContext(ctx, goCmd, args...)
		cmd.Dir, cmd.Env = res.SourceDir, env
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = out, &stderr
		if out == nil {
			cmd.Stdout = &stderr
		}
		res.Record.Commands = append(res.Record.Commands, Command{
			Phase: phase,
			Dir:   relWork(work, res.SourceDir),
			Args:  append([]string{"go"}, relWorkAll(work, args)...),
			Env:   relWorkAll(work, env),
		})
		log.InfoContext(ctx, "running", "phase", phase, "args", args)
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%w: go %s: %v: %s", ErrBuild, strings.Join(args, " "), err, tail(stderr.String()))
		}
		return nil
	}

	// Phase 1: fill the module cache through the network, following go.sum.
	if !b.skipDownload {
		proxy, sumdb := b.Proxy, b.SumDB
		if proxy == "" || sumdb == "" {
			p, s, err := machineProxy(ctx, goCmd)
			if err != nil {
				return nil, err
			}
			proxy, sumdb = cmp(proxy, p), cmp(sumdb, s)
		}
		env, err := hermeticEnv(filepath.Join(work, "download"), modCache, "GOPROXY="+proxy, "GOSUMDB="+sumdb)
		if err != nil {
			return nil, err
		}
		var tc *toolchain
		if switchTo != "" {
			// Fetched and checked first; the go command then runs the
			// module download with it (GOTOOLCHAIN), which also
			// readies its tree to run (execute bits, go.mod files).
			progress("fetching toolchain " + switchTo)
			if tc, err = b.fetchToolchain(ctx, res, work, env, sumdb, switchTo, host); err != nil {
				return nil, err
			}
			if err := tc.verify(); err != nil {
				return nil, err
			}
			env = setEnv(env, "GOTOOLCHAIN", switchTo)
			env = setEnv(env, "PATH", pathWithout(os.Getenv("PATH"), switchTo))
		}
		// "go mod download" adds missing go.sum lines even under
		// -mod=readonly; a source whose go.sum is incomplete is refused,
		// never silently completed.
		sumPath := filepath.Join(res.SourceDir, "go.sum")
		before, _ := os.ReadFile(sumPath)
		progress("downloading modules")
		if err := run("download", env, nil, "mod", "download"); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDownload, err)
		}
		if after, _ := os.ReadFile(sumPath); !bytes.Equal(before, after) {
			return nil, fmt.Errorf("%w: downloading modules: go.sum in the source lacks entries the build needs:\n%s", ErrBuild, addedLines(before, after))
		}
		if tc != nil {
			// Everything from here on runs the fetched go command
			// itself, offline.
			goCmd = filepath.Join(tc.dir, "bin", "go")
		}
	}

	// Phase 2: build with no network, from the verified cache only.
	env, err := hermeticEnv(filepath.Join(work, "build"), modCache, "GOPROXY=off", "GOSUMDB=off")
	if err != nil {
		return nil, err
	}
	var version bytes.Buffer
	if err := run("build", env, &version, "env", "GOVERSION"); err != nil {
		return nil, fmt.Errorf("reading toolchain version: %w", err)
	}
	res.Record.Toolchain = strings.TrimSpace(version.String())
	if switchTo != "" && res.Record.Toolchain != switchTo {
		return nil, fmt.Errorf("%w: the fetched toolchain says it is %q, not %s", ErrToolchain, res.Record.Toolchain, switchTo)
	}
	progress("verifying modules against go.sum")
	if err := run("build", env, nil, "mod", "verify"); err != nil {
		return nil, fmt.Errorf("verifying modules against go.sum: %w", err)
	}
	for _, t := range r.Targets {
		g := t.Go
		if g == nil {
			continue
		}
		for _, p := range g.Platforms {
			goos, goarch, _ := strings.Cut(p, "/")
			name := g.artifact(goos, goarch)
			out := filepath.Join(outDir, name)
			args := []string{"build", "-trimpath", "-buildvcs=false"}
			if len(g.Tags) > 0 {
				args = append(args, "-tags="+strings.Join(g.Tags, ","))
			}
			if len(g.LDFlags) > 0 {
				args = append(args, "-ldflags="+strings.Join(g.LDFlags, " "))
			}
			args = append(args, "-o", out, g.Package)
			penv := append(env[:len(env):len(env)], "GOOS="+goos, "GOARCH="+goarch)
			progress("compiling " + name + " with " + res.Record.Toolchain)
			if err := run("build", penv, nil, args...); err != nil {
				return nil, fmt.Errorf("building %s: %w", name, err)
			}
			f, err := digestFile(out)
			if err != nil {
				return nil, err
			}
			res.Artifacts = append(res.Artifacts, Artifact{File: f, Package: g.Package, GOOS: goos, GOARCH: goarch})
			log.InfoContext(ctx, "built", "artifact", name, "sha256", f.SHA256)
		}
	}
	return res, nil
}

// compileRuleDB compiles t's rule sources in the exported source at the
// recipe's version into outDir/<name>.
func compileRuleDB(r *Recipe, t *RuleDBTarget, srcDir, outDir string) (*RuleDB, error) {
	dir := filepath.Join(srcDir, filepath.FromSlash(t.Dir))
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		return nil, fmt.Errorf("ruledb target %s: %s is not a directory in the source", t.Name, t.Dir)
	}
	version, err := r.ruleDBVersion()
	if err != nil {
		return nil, err
	}
	srcs, err := ruledb.LoadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: ruledb target %s: %v", ErrBuild, t.Name, relErr(srcDir, err))
	}
	if len(srcs) == 0 {
		return nil, fmt.Errorf("%w: ruledb target %s: %s holds no .hdb, .hsb or .ndb file", ErrBuild, t.Name, t.Dir)
	}
	db, err := ruledb.Compile(srcs, version)
	if err != nil {
		return nil, fmt.Errorf("%w: ruledb target %s: %v", ErrBuild, t.Name, relErr(srcDir, err))
	}
	out := filepath.Join(outDir, t.Name)
	if err := os.WriteFile(out, db, 0o644); err != nil {
		return nil, err
	}
	f, err := digestFile(out)
	if err != nil {
		return nil, err
	}
	return &RuleDB{Target: *t, Dir: dir, File: f}, nil
}

// relErr writes paths inside the exported source relative to it, so a
// rule file's error names the file as the source has it.
func relErr(srcDir string, err error) string {
	return strings.ReplaceAll(err.Error(), srcDir+string(filepath.Separator), "")
}

func hasGo(r *Recipe) bool {
	for _, t := range r.Targets {
		if t.Go != nil {
			return true
		}
	}
	return false
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func prepareWorkDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", fmt.Errorf("creating work directory: %w", err)
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return "", fmt.Errorf("reading work directory: %w", err)
	}
	if len(entries) > 0 {
		return "", fmt.Errorf("work directory %s is not empty", abs)
	}
	// Symlinks in the path (e.g. /tmp on some systems) would make $WORK
	// substitution miss.
	return filepath.EvalSymlinks(abs)
}

func (b *Builder) goCommand() (string, error) {
	g := cmp(b.Go, "go")
	p, err := exec.LookPath(g)
	if err != nil {
		return "", fmt.Errorf("finding the go command: %w", err)
	}
	return filepath.Abs(p)
}

// machineProxy reads GOPROXY and GOSUMDB as the caller's environment sets
// them for goCmd.
func machineProxy(ctx context.Context, goCmd string) (proxy, sumdb string, err error) {
	v, err := goEnv(ctx, goCmd, os.Environ(), "GOPROXY", "GOSUMDB")
	if err != nil {
		return "", "", fmt.Errorf("reading the machine's GOPROXY: %w", err)
	}
	return v[0], v[1], nil
}

// goEnv runs "goCmd env names..." with env and returns the values, one
// per name.
func goEnv(ctx context.Context, goCmd string, env []string, names ...string) ([]string, error) {
	cmd := exec.CommandContext(ctx, goCmd, append([]string{"env"}, names...)...)
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		return nil, err
	}
	v := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(v) != len(names) {
		return nil, fmt.Errorf("go env %s: unexpected output %q", strings.Join(names, " "), out)
	}
	return v, nil
}

// toolchainRE matches the Go versions a toolchain can be fetched by:
// releases and release candidates.
var toolchainRE = regexp.MustCompile(`^go1\.[0-9]+(\.[0-9]+|rc[0-9]+)$`)

// ErrDownload is wrapped (with [ErrBuild]) by the error of a build whose
// modules could not be downloaded: the proxy down, or a module it does
// not serve. Like [ErrToolchain], it may pass.
var ErrDownload = errors.New("downloading modules")

// ErrToolchain is wrapped by the error of a build whose named toolchain
// could not be fetched or did not verify: the build says nothing about
// the source.
var ErrToolchain = errors.New("toolchain unavailable")

// hostGo is what the go command on PATH (or Builder.Go) runs on.
type hostGo struct{ version, goos, goarch string }

// goHost reads the version and host platform of the go command goCmd
// itself.
func goHost(ctx context.Context, goCmd string) (hostGo, error) {
	v, err := goEnv(ctx, goCmd, append(os.Environ(), "GOTOOLCHAIN=local", "GOENV=off"), "GOVERSION", "GOHOSTOS", "GOHOSTARCH")
	if err != nil {
		return hostGo{}, fmt.Errorf("reading the go command's version: %w", err)
	}
	return hostGo{v[0], v[1], v[2]}, nil
}

// toolchain is a Go release fetched as a module: its module path and
// version, its directory in the module cache and the sum the checksum
// database vouched for.
type toolchain struct {
	version, mod, dir, sum string
}

// fetchToolchain downloads Go release v for the host as the module
// golang.org/toolchain with the download phase's environment env, from
// an empty directory so that no go.mod is involved, and with
// GOTOOLCHAIN=local so that no other go command runs. The go command
// checks the module against the checksum database.
func (b *Builder) fetchToolchain(ctx context.Context, res *Result, work string, env []string, sumdb, v string, host hostGo) (*toolchain, error) {
	if sumdb == "off" {
		return nil, fmt.Errorf("%w: fetching toolchain %s needs a checksum database to check it against, and GOSUMDB is off", ErrToolchain, v)
	}
	mod := "golang.org/toolchain@v0.0.1-" + v + "." + host.goos + "-" + host.goarch
	dir := filepath.Join(work, "toolchain")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	args := []string{"mod", "download", "-json", mod}
	res.Record.Commands = append(res.Record.Commands, Command{Phase: "download", Dir: relWork(work, dir), Args: append([]string{"go"}, args...), Env: relWorkAll(work, env)})
	cmd := exec.CommandContext(ctx, cmp(b.Go, "go"), args...)
	cmd.Dir, cmd.Env = dir, env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var m struct{ Dir, Sum, Error string }
	if jerr := json.Unmarshal(out, &m); jerr == nil && m.Error != "" {
		return nil, fmt.Errorf("%w: %s: %s", ErrToolchain, mod, m.Error)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: go mod download %s: %v: %s", ErrToolchain, mod, err, tail(stderr.String()))
	}
	if m.Dir == "" || !strings.HasPrefix(m.Sum, "h1:") {
		return nil, fmt.Errorf("%w: go mod download %s gave no directory and sum: %s", ErrToolchain, mod, out)
	}
	return &toolchain{version: v, mod: mod, dir: m.Dir, sum: m.Sum}, nil
}

// verify hashes the toolchain's tree in the module cache as the module's
// sum is computed (dirhash's h1) and fails unless the hash is the sum
// the checksum database vouched for: the go command checks the zip, not
// the tree it unpacked, which a shared cache may have had changed. It
// runs before anything runs the toolchain. The go command, readying the
// tree to run, copies each _go.mod to a go.mod beside it (a module zip
// cannot hold nested go.mod files); those copies are left out of the
// hash and must equal their _go.mod.
func (tc *toolchain) verify() error {
	var files []string
	err := filepath.WalkDir(tc.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(tc.dir, p)
		if err != nil {
			return err
		}
		if d.Name() == "go.mod" {
			orig, err := os.ReadFile(filepath.Join(filepath.Dir(p), "_go.mod"))
			if err == nil {
				if cp, err := os.ReadFile(p); err != nil || !bytes.Equal(cp, orig) {
					return fmt.Errorf("%s differs from the _go.mod beside it", rel)
				}
				return nil
			}
		}
		files = append(files, tc.mod+"/"+filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrToolchain, tc.dir, err)
	}
	got, err := dirhash.Hash1(files, func(name string) (io.ReadCloser, error) {
		return os.Open(filepath.Join(tc.dir, filepath.FromSlash(strings.TrimPrefix(name, tc.mod+"/"))))
	})
	if err != nil {
		return fmt.Errorf("%w: hashing %s: %v", ErrToolchain, tc.dir, err)
	}
	if got != tc.sum {
		return fmt.Errorf("%w: %s in the module cache hashes to %s, the checksum database says %s", ErrToolchain, tc.dir, got, tc.sum)
	}
	return nil
}

// setEnv returns env with key set to value, in place of its earlier
// value.
func setEnv(env []string, key, value string) []string {
	env = slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, key+"=") })
	return append(env, key+"="+value)
}

// pathWithout is the PATH list path without the directories that hold
// a program named name: with GOTOOLCHAIN=go1.N.P the go command runs a
// go1.N.P found on PATH, unchecked, before it looks at the module.
func pathWithout(path, name string) string {
	var keep []string
	for _, d := range filepath.SplitList(path) {
		if fi, err := os.Stat(filepath.Join(d, name)); err == nil && !fi.IsDir() {
			continue
		}
		keep = append(keep, d)
	}
	return strings.Join(keep, string(filepath.ListSeparator))
}

// IsToolchain reports whether v names a Go toolchain a Builder can fetch
// (see Builder.Toolchain), such as "go1.26.8".
func IsToolchain(v string) bool { return toolchainRE.MatchString(v) }

// hermeticEnv is the whole environment of a go command: PATH from the
// caller, and everything else set here. base receives fresh HOME, TMPDIR,
// GOPATH and GOCACHE directories.
func hermeticEnv(base, modCache string, extra ...string) ([]string, error) {
	dirs := map[string]string{}
	for _, d := range []string{"home", "tmp", "gopath", "gocache"} {
		p := filepath.Join(base, d)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, err
		}
		dirs[d] = p
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dirs["home"],
		"TMPDIR=" + dirs["tmp"],
		"GOPATH=" + dirs["gopath"],
		"GOCACHE=" + dirs["gocache"],
		"GOMODCACHE=" + modCache,
		"GOENV=off",
		"GOWORK=off",
		"GOTOOLCHAIN=local",
		"GOFLAGS=-mod=readonly",
		"CGO_ENABLED=0",
	}
	return append(env, extra...), nil
}

func relWork(work, s string) string {
	return strings.ReplaceAll(s, work, "$WORK")
}

func relWorkAll(work string, ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = relWork(work, s)
	}
	return out
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return s
}

func writeArchive(dir, dst string) (File, error) {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return File{}, fmt.Errorf("archiving source: %w", err)
	}
	sum, err := Archive(dir, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return File{}, err
	}
	info, err := os.Stat(dst)
	if err != nil {
		return File{}, err
	}
	return File{Name: filepath.Base(dst), Path: dst, SHA256: sum, Size: info.Size()}, nil
}

func digestFile(p string) (File, error) {
	f, err := os.Open(p)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return File{}, fmt.Errorf("hashing %s: %w", p, err)
	}
	return File{Name: filepath.Base(p), Path: p, SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}

// RemoveWorkDir deletes a build's work directory, including the read-only
// module cache the go command leaves in it.
func RemoveWorkDir(dir string) error {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// addedLines lists the lines of after that before lacks.
func addedLines(before, after []byte) string {
	have := map[string]bool{}
	for _, l := range strings.Split(string(before), "\n") {
		have[l] = true
	}
	var added []string
	for _, l := range strings.Split(string(after), "\n") {
		if l != "" && !have[l] {
			added = append(added, l)
		}
	}
	return tail(strings.Join(added, "\n"))
}
