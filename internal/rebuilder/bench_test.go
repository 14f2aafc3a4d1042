package rebuilder

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/conveyer"
)

// BenchmarkRebuildHello and BenchmarkRebuildVitrine measure, in each
// iteration and side by side, the original build of a release (the
// conveyer's build as the platform runs it, then platform.Publish: sign,
// log, await the witness, publish) and its rebuild by the rebuilder (one
// pass of RebuildNew: discovery, checkpoint and consistency, the entry
// from the tiles with its inclusion proof, the provenance and the source
// fetched and checked, unpack, the conveyer's build, compare, sign and
// store the verdict). Both builders keep their own module cache, warmed
// before the timer starts, and every build has a fresh GOCACHE, as the
// conveyer always does. The figure is rebuild/original.
//
// Run with:
//
//	go test -run '^$' -bench 'Rebuild(Hello|Vitrine)' -benchtime 1x ./internal/rebuild
func BenchmarkRebuildHello(b *testing.B) {
	src := helloSource(b)
	benchRebuild(b, "hello", func(v string) []byte { return helloRecipe(v, src) })
}

// BenchmarkRebuildVitrine is the realistic one: cmd/vitrine for
// linux/amd64 from this repository's HEAD (or, outside a git work tree,
// from the module's directory).
func BenchmarkRebuildVitrine(b *testing.B) {
	if testing.Short() {
		b.Skip("builds cmd/vitrine twice per iteration")
	}
	source := ""
	if out, err := exec.Command("git", "rev-parse", "--show-toplevel", "HEAD").Output(); err == nil {
		f := strings.Fields(string(out))
		source = `{"git":` + quote(f[0]) + `,"commit":"` + f[1] + `"}`
	} else {
		gomod, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			b.Fatal(err)
		}
		source = `{"dir":` + quote(filepath.Dir(strings.TrimSpace(string(gomod)))) + `}`
	}
	benchRebuild(b, "vitrine", func(v string) []byte {
		return []byte(`{"name":"vitrine","version":"` + v + `","source":` + source +
			`,"targets":[{"go":{"program":"vitrine","package":"./cmd/vitrine","platforms":["linux/amd64"],"ldflags":["-s","-w"]}}]}`)
	})
}

func benchRebuild(b *testing.B, name string, recipe func(version string) []byte) {
	ctx := context.Background()
	p, _ := startPlatform(b)
	base := b.TempDir()
	orig := testBuilder(b)
	orig.ModCache = filepath.Join(base, "modcache-original")
	r := newRebuilder(b, p, b.TempDir())
	r.Builder.ModCache = filepath.Join(base, "modcache-rebuilder")
	b.Cleanup(func() {
		_ = conveyer.RemoveWorkDir(orig.ModCache)
		_ = conveyer.RemoveWorkDir(r.Builder.ModCache)
	})
	// Warm both module caches: the steady state of a conveyer and a
	// rebuilder that keep theirs.
	publish(b, p, name, "100", conveyerBuild(b, orig, recipe("100")))
	if done, err := r.RebuildNew(ctx); err != nil || len(done) != 1 || !done[0].Reproduced {
		b.Fatalf("warm-up rebuild: %v, %v", done, err)
	}

	var original, rebuilt time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		v := strconv.Itoa(101 + i)
		start := time.Now()
		publish(b, p, name, v, conveyerBuild(b, orig, recipe(v)))
		original += time.Since(start)

		start = time.Now()
		done, err := r.RebuildNew(ctx)
		rebuilt += time.Since(start)
		if err != nil || len(done) != 1 || !done[0].Reproduced {
			b.Fatalf("rebuild of %s %s: %v, %v", name, v, done, err)
		}
	}
	n := float64(b.N)
	b.ReportMetric(original.Seconds()/n, "original-s/op")
	b.ReportMetric(rebuilt.Seconds()/n, "rebuild-s/op")
	b.ReportMetric(rebuilt.Seconds()/original.Seconds(), "rebuild/original")
}
