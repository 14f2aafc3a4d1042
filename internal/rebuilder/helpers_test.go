package rebuilder

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/conveyer"
	"github.com/vitrine-dev/vitrine/internal/gotest"
	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/ruledb"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startPlatform runs a platform (vitrine up) for the test; its build route
// downloads modules as testBuilder does.
func startPlatform(t testing.TB) (*platform.Platform, string) {
	t.Helper()
	data := t.TempDir()
	b := testBuilder(t)
	p, err := platform.Start(context.Background(), platform.Config{Data: data, Listen: "127.0.0.1:0",
		CheckpointInterval: 100 * time.Millisecond, GoModCache: b.ModCache, BuildSourceRoots: gotest.SourceRoots(t), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p, data
}

// testBuilder downloads modules through the machine's GOPROXY, checked
// against go.sum and the machine's GOSUMDB, into the machine's module cache
// (see package gotest).
func testBuilder(t testing.TB) *conveyer.Builder {
	t.Helper()
	return &conveyer.Builder{ModCache: gotest.ModCache(t), Logger: quiet}
}

// eicarRule is one .hsb rule: the EICAR test file by SHA-256 and size.
const eicarRule = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f:68:Vitrine.Test.EICAR-SHA256\n"

// writeTree writes files (slash-separated paths) under a fresh directory.
func writeTree(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// helloSource is the conveyer's hello program with a rules directory
// holding one .hsb rule.
func helloSource(t testing.TB) string {
	t.Helper()
	files := map[string]string{"rules/eicar.hsb": eicarRule}
	for _, f := range []string{"go.mod", "go.sum", "main.go"} {
		b, err := os.ReadFile(filepath.Join("..", "conveyer", "testdata", "hello", f))
		if err != nil {
			t.Fatal(err)
		}
		files[f] = string(b)
	}
	return writeTree(t, files)
}

// helloRecipe builds hello for linux/amd64 and the rule database "rules".
func helloRecipe(version, dir string) []byte {
	return []byte(`{"name":"hello","version":"` + version + `","source":{"dir":` + quote(dir) + `},"targets":[` +
		`{"go":{"program":"hello","package":".","platforms":["linux/amd64"]}},` +
		`{"ruledb":{"name":"rules","dir":"rules"}}]}`)
}

// rulesRecipe builds two rule databases, a and b: no Go, so it is quick.
func rulesRecipe(name, version, dir string) []byte {
	return []byte(`{"name":"` + name + `","version":"` + version + `","source":{"dir":` + quote(dir) + `},"targets":[` +
		`{"ruledb":{"name":"a","dir":"a"}},{"ruledb":{"name":"b","dir":"b"}}]}`)
}

func rulesSource(t testing.TB) string {
	return writeTree(t, map[string]string{"a/eicar.hsb": eicarRule, "b/eicar.hsb": eicarRule, "b/more.hsb": "# more rules to come\n"})
}

// otherRules is a valid rule database at version that the rules source
// does not build: one rule more than eicarRule.
func otherRules(t testing.TB, version uint64) []byte {
	t.Helper()
	src, err := ruledb.Parse("other.hsb", strings.NewReader(eicarRule+strings.Repeat("0", 64)+":1:Vitrine.Test.Planted\n"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := ruledb.Compile([]*ruledb.Source{src}, version)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }

// built is what a conveyer build gives the platform to publish.
type built struct {
	artifacts map[string][]byte
	source    []byte
	build     *release.Build
}

// conveyerBuild builds recipe as the platform's build route does and
// returns what it publishes (platform.Publish's arguments).
func conveyerBuild(t testing.TB, b *conveyer.Builder, recipe []byte) *built {
	t.Helper()
	r, err := conveyer.ParseRecipe(recipe)
	if err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(t.TempDir(), "work")
	t.Cleanup(func() { _ = conveyer.RemoveWorkDir(work) })
	started := time.Now().UTC()
	res, err := b.Build(context.Background(), r, work)
	if err != nil {
		t.Fatal(err)
	}
	out := &built{artifacts: map[string][]byte{}}
	var files []conveyer.File
	for _, a := range res.Artifacts {
		files = append(files, a.File)
	}
	for _, d := range res.RuleDBs {
		files = append(files, d.File)
	}
	for _, f := range files {
		if out.artifacts[f.Name], err = os.ReadFile(f.Path); err != nil {
			t.Fatal(err)
		}
	}
	if out.source, err = os.ReadFile(res.Source.Path); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, c := range res.Record.Commands {
		if c.Phase == "build" {
			for _, kv := range c.Env {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
			break
		}
	}
	out.build = &release.Build{Recipe: recipe, Source: "dir:" + r.Source.Dir, Archive: res.Source.SHA256,
		Toolchain: res.Record.Toolchain, Env: env, BuilderID: "https://platform.test/conveyer", InvocationID: r.Version,
		Started: started, Finished: time.Now().UTC()}
	return out
}

// archive is the conveyer's deterministic archive of dir and its digest.
func archive(t testing.TB, dir string) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	sum, err := conveyer.Archive(dir, &buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), sum
}

func publish(t testing.TB, p *platform.Platform, name, version string, b *built) *platform.Published {
	t.Helper()
	pub, err := p.Publish(context.Background(), name, version, b.artifacts, b.source, b.build)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// newRebuilder is a rebuilder of p with its key and state in dir.
func newRebuilder(t testing.TB, p *platform.Platform, dir string) *Rebuilder {
	t.Helper()
	key, err := release.LoadOrCreateKey(filepath.Join(dir, "rebuilder.key"))
	if err != nil {
		t.Fatal(err)
	}
	return &Rebuilder{Platform: p.URL(), Key: key, Dir: dir, Builder: testBuilder(t), WorkDir: t.TempDir(),
		ID: "https://rebuilder.test", Logger: quiet}
}
