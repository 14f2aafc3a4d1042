package conveyer

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkConveyerVsPlain builds cmd/vitrine for linux/amd64 both ways in
// each iteration and reports the ratio conveyer/plain:
//
//   - plain: "go build -ldflags='-s -w' -o … ./cmd/vitrine" in an exported
//     tree, CGO_ENABLED=0, the machine's module cache, and a fresh GOCACHE
//     (a warm one would measure cache hits, not a build);
//   - conveyer: Builder.Build of the same target, from git archive of HEAD,
//     with a module cache that the download phase finds already filled (the
//     steady state of a conveyer that keeps its cache) and a fresh GOCACHE.
//
// Run with: go test -run '^$' -bench ConveyerVsPlain -benchtime 1x ./internal/conveyer
func BenchmarkConveyerVsPlain(b *testing.B) {
	if testing.Short() {
		b.Skip("builds cmd/vitrine twice per iteration")
	}
	out, err := exec.Command("git", "rev-parse", "--show-toplevel", "HEAD").Output()
	if err != nil {
		b.Skipf("not in a git work tree: %v", err)
	}
	fields := strings.Fields(string(out))
	root, head := fields[0], fields[1]
	ctx := context.Background()
	base := b.TempDir()
	b.Cleanup(func() { _ = RemoveWorkDir(base) })
	src := filepath.Join(base, "plain-src")
	if err := Export(ctx, Source{Git: root, Commit: head}, src); err != nil {
		b.Fatal(err)
	}
	gomodcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		b.Fatal(err)
	}
	// The machine's module cache serves the conveyer's as a file://
	// proxy: first make sure it holds every module go.mod names, not
	// only those that builds on this machine happened to fetch.
	fill := exec.Command("go", "mod", "download")
	fill.Dir = src
	if out, err := fill.CombinedOutput(); err != nil {
		b.Fatalf("filling the machine's module cache: %v: %s", err, out)
	}
	dl := filepath.Join(strings.TrimSpace(string(gomodcache)), "cache", "download")
	builder := &Builder{Proxy: "file://" + dl, SumDB: "off", ModCache: filepath.Join(base, "modcache")}
	warm := exec.Command("go", "mod", "download")
	warm.Dir = src
	warm.Env = append(os.Environ(), "GOMODCACHE="+builder.ModCache, "GOPROXY="+builder.Proxy, "GOSUMDB=off", "GOFLAGS=-mod=readonly")
	if out, err := warm.CombinedOutput(); err != nil {
		b.Fatalf("warming the module cache: %v: %s", err, out)
	}
	r := &Recipe{
		Name: "vitrine", Version: "bench",
		Source: Source{Git: root, Commit: head},
		Targets: []Target{{Go: &GoTarget{
			Package: "./cmd/vitrine", Platforms: []string{"linux/amd64"}, LDFlags: []string{"-s", "-w"},
		}}},
	}
	var plain, conv time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		cache := filepath.Join(base, "gocache", strconv.Itoa(i))
		cmd := exec.Command("go", "build", "-ldflags=-s -w", "-o", filepath.Join(cache, "vitrine"), "./cmd/vitrine")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GOCACHE="+cache, "CGO_ENABLED=0")
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("plain go build: %v: %s", err, out)
		}
		plain += time.Since(start)

		start = time.Now()
		if _, err := builder.Build(ctx, r, filepath.Join(base, "work", strconv.Itoa(i))); err != nil {
			b.Fatal(err)
		}
		conv += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(plain.Seconds()/n, "plain-s/op")
	b.ReportMetric(conv.Seconds()/n, "conveyer-s/op")
	b.ReportMetric(conv.Seconds()/plain.Seconds(), "conveyer/plain")
}
