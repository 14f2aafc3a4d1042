package rebuilder

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/conveyer"
	"github.com/vitrine-dev/vitrine/internal/liar"
	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/rebuild"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/ruledb"
)

// TestRebuildHello publishes the hello program with a rule database, built
// by the platform's build route (the conveyer, then Publish), and a planted release whose artifacts were not built
// from its source (the same binaries, published with a source whose
// main.go says something else). The rebuilder reproduces the first, names
// exactly the binary for the second, signs both verdicts and serves them;
// a restarted rebuilder resumes without rebuilding anything twice.
func TestRebuildHello(t *testing.T) {
	ctx := context.Background()
	p, data := startPlatform(t)
	src := helloSource(t)
	// The honest release goes through the platform's own build route.
	pub1, err := p.Build(ctx, helloRecipe("1", src))
	if err != nil {
		t.Fatal(err)
	}
	if len(pub1.Artifacts) != 2 {
		t.Fatalf("artifacts %v, want hello_linux_amd64 and rules", pub1.Artifacts)
	}
	published := filepath.Join(data, "releases", "hello", "1")
	bin, err := os.ReadFile(filepath.Join(published, "artifacts", "hello_linux_amd64"))
	if err != nil {
		t.Fatal(err)
	}
	src1, err := os.ReadFile(filepath.Join(published, "source.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}

	// The planted release: a byte of the source changed after the build.
	changed := helloSource(t)
	main := filepath.Join(changed, "main.go")
	b, _ := os.ReadFile(main)
	if err := os.WriteFile(main, []byte(strings.Replace(string(b), `"hello"`, `"hellO"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	// The rule database is compiled at the release's version: the planted
	// one gets what the conveyer compiles for version 2, so that only the
	// binary was not built from the source.
	rules, err := ruledb.LoadDir(filepath.Join(changed, "rules"))
	if err != nil {
		t.Fatal(err)
	}
	db2, err := ruledb.Compile(rules, 2)
	if err != nil {
		t.Fatal(err)
	}
	planted := &built{artifacts: map[string][]byte{"hello_linux_amd64": bin, "rules": db2}, build: &release.Build{
		Recipe: helloRecipe("2", changed), Source: "dir:" + changed, Toolchain: runtime.Version(),
		BuilderID: p.URL() + "/conveyer", InvocationID: "planted", Started: time.Now(), Finished: time.Now(),
	}}
	planted.source, planted.build.Archive = archive(t, changed)
	pub2 := publish(t, p, "hello", "2", planted)

	dir := t.TempDir()
	r := newRebuilder(t, p, dir)
	done, err := r.RebuildNew(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 2 {
		t.Fatalf("rebuilt %d releases, want 2", len(done))
	}
	good, bad := done[0], done[1]
	if !good.Reproduced || good.Error != "" || len(good.Differ) != 0 || good.Release.LogIndex != pub1.LogIndex {
		t.Errorf("hello 1: %s (%+v), want reproduced", good.Summary(), good.Predicate)
	}
	if bad.Reproduced || !slices.Equal(bad.Differ, []string{"hello_linux_amd64"}) || bad.Error != "" || bad.Release.LogIndex != pub2.LogIndex {
		t.Errorf("hello 2 (planted): %s, want NOT reproduced with exactly hello_linux_amd64 differing", bad.Summary())
	}
	if tc := good.Toolchain; tc.Original == "" || tc.Original != tc.Rebuild {
		t.Errorf("toolchains %+v, want the same one twice", tc)
	}

	// Served, signed, and verifiable by anyone with the rebuilder's key.
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	keyPEM := httpGet(t, srv.URL+"/rebuilds/key", 200)
	key, err := release.ParsePublicKey(keyPEM)
	if err != nil || !ed25519.PublicKey(key).Equal(r.Key.Public()) {
		t.Fatalf("/rebuilds/key: %v", err)
	}
	var idx Index
	if err := json.Unmarshal(httpGet(t, srv.URL+"/rebuilds/", 200), &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Verdicts) != 2 || idx.Verdicts[0].URL != "hello/1.json" || !idx.Verdicts[0].Reproduced || idx.Verdicts[1].Reproduced {
		t.Fatalf("index %+v", idx)
	}
	for i, pub := range []*platform.Published{pub1, pub2} {
		v, err := rebuild.VerifyVerdict(ctx, httpGet(t, srv.URL+"/rebuilds/"+idx.Verdicts[i].URL, 200), key)
		if err != nil {
			t.Fatalf("verdict %d: %v", i, err)
		}
		if !slices.Equal(v.Subjects, pub.Artifacts) || v.Reproduced != (i == 0) || v.Source != []string{release.Digest(src1), "sha256:" + planted.build.Archive}[i] {
			t.Errorf("verdict %d: subjects %v, reproduced %v, source %s; want the release's artifacts %v", i, v.Subjects, v.Reproduced, v.Source, pub.Artifacts)
		}
	}
	if _, err := rebuild.VerifyVerdict(ctx, httpGet(t, srv.URL+"/rebuilds/hello/1.json", 200), release.PublicKey(make([]byte, 32))); err == nil {
		t.Error("a verdict verifies under another key")
	}
	httpGet(t, srv.URL+"/rebuilds/hello/3.json", 404)

	// A restart resumes from the state: nothing is rebuilt twice, even if
	// the state lost its last steps (a crash after the verdict was written).
	r2 := newRebuilder(t, p, dir)
	if done, err := r2.RebuildNew(ctx); err != nil || len(done) != 0 {
		t.Fatalf("after a restart: rebuilt %d, %v; want nothing", len(done), err)
	}
	st, err := r2.loadState()
	if err != nil {
		t.Fatal(err)
	}
	st.Next = 0
	if err := r2.saveState(st); err != nil {
		t.Fatal(err)
	}
	rsrc := rulesSource(t)
	pub3 := publish(t, p, "rules", "1", conveyerBuild(t, testBuilder(t), rulesRecipe("rules", "1", rsrc)))
	done, err = r2.RebuildNew(ctx)
	if err != nil || len(done) != 1 || done[0].Release.LogIndex != pub3.LogIndex || !done[0].Reproduced {
		t.Fatalf("after a restart and a new release: %v, %v; want only rules 1, reproduced", done, err)
	}
}

func httpGet(t *testing.T, u string, want int) []byte {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d %s, want %d", u, resp.StatusCode, b, want)
	}
	return b
}

// TestRebuildRefuses plants releases the rebuilder must not accept, with
// rule databases only so that no Go build is needed: an artifact changed
// after the build, a source archive on the server that is not the
// provenance's, a provenance signed by another key, release files that
// never appear, and keys that change under a running rebuilder.
func TestRebuildRefuses(t *testing.T) {
	ctx := context.Background()
	p, data := startPlatform(t)
	src := rulesSource(t)
	b := testBuilder(t)
	release1 := func(version string) (*built, *platform.Published) {
		x := conveyerBuild(t, b, rulesRecipe("rules", version, src))
		return x, publish(t, p, "rules", version, x)
	}
	files := func(version string) string { return filepath.Join(data, "releases", "rules", version) }

	// 1: artifact b is a valid database, but not the one the source builds.
	changed := conveyerBuild(t, b, rulesRecipe("rules", "1", src))
	changed.artifacts["b"] = otherRules(t, 1)
	publish(t, p, "rules", "1", changed)
	// 2: the served source is not the provenance's.
	_, _ = release1("2")
	if err := os.WriteFile(filepath.Join(files("2"), "source.tar.gz"), []byte("not the source"), 0o644); err != nil {
		t.Fatal(err)
	}
	// 3: the served provenance is signed by another key.
	_, _ = release1("3")
	resign(t, filepath.Join(files("3"), "provenance.json"))

	r := newRebuilder(t, p, t.TempDir())
	done, err := r.RebuildNew(ctx)
	if err != nil || len(done) != 3 {
		t.Fatalf("rebuilt %d, %v; want 3 verdicts", len(done), err)
	}
	for i, c := range []struct {
		differ []string
		err    string
	}{
		{differ: []string{"b"}},
		{err: "source: the served source.tar.gz is sha256:"},
		{err: "refused: the served provenance does not verify under the release key"},
	} {
		v := done[i]
		if v.Reproduced || !slices.Equal(v.Differ, c.differ) || !strings.HasPrefix(v.Error, c.err) || (c.err == "") != (v.Error == "") {
			t.Errorf("rules %d: %s; want differ %v, error %q…", i+1, v.Summary(), c.differ, c.err)
		}
	}

	// 4: files that are not there yet are retried, not judged...
	_, pub4 := release1("4")
	hidden := files("4") + ".hidden"
	if err := os.Rename(files("4"), hidden); err != nil {
		t.Fatal(err)
	}
	if done, err := r.RebuildNew(ctx); err == nil || len(done) != 0 || !strings.Contains(err.Error(), "404") {
		t.Fatalf("release files missing: %v, %v; want a 404 to retry", done, err)
	}
	if st, _ := r.loadState(); st.Next != pub4.LogIndex {
		t.Fatalf("state next = %d, want %d (the missing release, again)", st.Next, pub4.LogIndex)
	}
	// ...until they are published...
	if err := os.Rename(hidden, files("4")); err != nil {
		t.Fatal(err)
	}
	if done, err := r.RebuildNew(ctx); err != nil || len(done) != 1 || !done[0].Reproduced {
		t.Fatalf("once published: %v, %v; want rules 4 reproduced", done, err)
	}
	// ...or the rebuilder gives up on them.
	_, _ = release1("5")
	if err := os.RemoveAll(files("5")); err != nil {
		t.Fatal(err)
	}
	r.GiveUp = 1
	if done, err := r.RebuildNew(ctx); err != nil || len(done) != 1 || !strings.HasPrefix(done[0].Error, "release files: ") {
		t.Fatalf("never published: %v, %v; want a verdict that says so", done, err)
	}

	// Keys pinned in the state that the platform no longer names.
	st, _ := r.loadState()
	st.ReleaseKey = "another key"
	if err := r.saveState(st); err != nil {
		t.Fatal(err)
	}
	if _, err := r.RebuildNew(ctx); !errors.Is(err, ErrKeyChanged) {
		t.Fatalf("a changed release key: %v, want ErrKeyChanged", err)
	}
	if err := r.Follow(ctx, 1); !errors.Is(err, ErrKeyChanged) {
		t.Fatalf("Follow with a changed release key: %v, want it to stop with ErrKeyChanged", err)
	}
}

// resign replaces the envelope at path by one of the same statement signed
// with a fresh key.
func resign(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var env struct{ Payload string }
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	payload, _ := base64.StdEncoding.DecodeString(env.Payload)
	other, err := release.LoadOrCreateKey(filepath.Join(t.TempDir(), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	signed, err := release.Sign(context.Background(), other, payload)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, signed, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRebuildOne rebuilds an entry that already has a verdict and replaces
// it; an index beyond the log is an error.
func TestRebuildOne(t *testing.T) {
	ctx := context.Background()
	p, _ := startPlatform(t)
	src := rulesSource(t)
	pub := publish(t, p, "rules", "1", conveyerBuild(t, testBuilder(t), rulesRecipe("rules", "1", src)))
	r := newRebuilder(t, p, t.TempDir())
	for range 2 {
		got, err := r.RebuildOne(ctx, pub.LogIndex)
		if err != nil || !got.Reproduced || got.URL != "rules/1.json" {
			t.Fatalf("RebuildOne: %+v, %v", got, err)
		}
	}
	idx, err := r.loadIndex()
	if err != nil || len(idx.Verdicts) != 1 {
		t.Fatalf("index %+v, %v; want one verdict", idx, err)
	}
	if _, err := r.RebuildOne(ctx, pub.LogIndex+100); err == nil {
		t.Error("an entry beyond the log was rebuilt")
	}
}

func TestHandlerRefuses(t *testing.T) {
	key, err := release.LoadOrCreateKey(filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer((&Rebuilder{Key: key, Dir: t.TempDir()}).Handler())
	defer srv.Close()
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/rebuilds/", 200},
		{"GET", "/rebuilds/x/1.json", 404},
		{"GET", "/rebuilds/../state.json", 404},
		{"GET", "/rebuilds/.log/1.json", 404},
		{"POST", "/rebuilds/", 405},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.want)
		}
	}
}

// TestRebuildWithRecordedToolchain: a release the original build made with
// a Go toolchain other than the rebuilder's own reproduces, because the
// rebuilder builds with the toolchain the provenance records, fetched
// through the machine's module proxy (see conveyer's
// TestBuildWithToolchain). Built with its own toolchain instead, the
// same program differs.
func TestRebuildWithRecordedToolchain(t *testing.T) {
	ctx := context.Background()
	out, err := exec.Command("go", "env", "GOVERSION", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(out))
	local, modCache := lines[0], lines[1]
	other := "go1.26.7"
	if local == other {
		other = "go1.26.6"
	}
	p, _ := startPlatform(t)
	src := helloSource(t)
	original := &conveyer.Builder{Toolchain: other, ModCache: modCache, Logger: quiet}
	b := conveyerBuild(t, original, helloRecipe("1", src))
	if b.build.Toolchain != other {
		t.Fatalf("the original build recorded %s, want %s", b.build.Toolchain, other)
	}
	pub := publish(t, p, "hello", "1", b)

	r := newRebuilder(t, p, t.TempDir())
	r.Builder = &conveyer.Builder{ModCache: modCache, Logger: quiet} // the machine's proxy and checksum database
	got, err := r.RebuildOne(ctx, pub.LogIndex)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Reproduced || got.Toolchain.Original != other || got.Toolchain.Rebuild != other {
		t.Fatalf("verdict: reproduced %v (differ %v, error %q), toolchains %+v; want reproduced with %s on both sides (the rebuilder's go is %s)",
			got.Reproduced, got.Differ, got.Error, got.Toolchain, other, local)
	}

	// The control: the rebuilder's own toolchain gives another binary.
	own := conveyerBuild(t, testBuilder(t), helloRecipe("1", src))
	if bytes.Equal(own.artifacts["hello_linux_amd64"], b.artifacts["hello_linux_amd64"]) {
		t.Fatalf("%s and %s built the same binary: the test shows nothing", local, other)
	}
}

// TestRebuildToolchainUnavailable: a provenance whose toolchain cannot be
// fetched (here the rebuilder has no checksum database to check one
// against; a release that does not exist does the same) is retried, then,
// after GiveUp, judged not reproduced with the reason: one entry cannot
// stop the rebuilder from following the log.
func TestRebuildToolchainUnavailable(t *testing.T) {
	ctx := context.Background()
	p, _ := startPlatform(t)
	b := conveyerBuild(t, testBuilder(t), helloRecipe("1", helloSource(t)))
	b.build.Toolchain = "go1.99.0"
	pub := publish(t, p, "hello", "1", b)
	r := newRebuilder(t, p, t.TempDir())
	r.GiveUp = 200 * time.Millisecond
	if got, err := r.RebuildOne(ctx, pub.LogIndex); err == nil || !strings.Contains(err.Error(), "retrying") {
		t.Fatalf("first attempt: %+v, %v; want an error that is retried", got, err)
	}
	time.Sleep(250 * time.Millisecond)
	got, err := r.RebuildOne(ctx, pub.LogIndex)
	if err != nil {
		t.Fatalf("after GiveUp: %v, want a verdict", err)
	}
	if got.Reproduced || !strings.Contains(got.Error, "toolchain") || got.Toolchain.Original != "go1.99.0" {
		t.Fatalf("verdict: reproduced %v, error %q, toolchains %+v; want not reproduced for the toolchain", got.Reproduced, got.Error, got.Toolchain)
	}
	t.Logf("verdict error: %s", got.Error)
}

// TestRebuildModulesUnavailable: a source whose go.sum names a module no
// proxy serves is retried, then, after GiveUp, judged not reproduced with
// the reason, and the rebuilder goes on to the next entry.
func TestRebuildModulesUnavailable(t *testing.T) {
	ctx := context.Background()
	p, _ := startPlatform(t)
	good := conveyerBuild(t, testBuilder(t), helloRecipe("1", helloSource(t)))
	gone := helloSource(t)
	mod := filepath.Join(gone, "go.mod")
	b, _ := os.ReadFile(mod)
	os.WriteFile(mod, append(b, "require example.com/gone v1.0.0\n"...), 0o644)
	sum := filepath.Join(gone, "go.sum")
	b, _ = os.ReadFile(sum)
	os.WriteFile(sum, append(b, "example.com/gone v1.0.0 h1:"+strings.Repeat("A", 43)+"=\nexample.com/gone v1.0.0/go.mod h1:"+strings.Repeat("A", 43)+"=\n"...), 0o644)
	planted := &built{artifacts: good.artifacts, build: &release.Build{
		Recipe: helloRecipe("1", gone), Source: "dir:" + gone, Toolchain: runtime.Version(),
		BuilderID: p.URL() + "/conveyer", InvocationID: "gone", Started: time.Now(), Finished: time.Now(),
	}}
	planted.source, planted.build.Archive = archive(t, gone)
	publish(t, p, "hello", "1", planted)
	next := publish(t, p, "rules", "1", conveyerBuild(t, testBuilder(t), rulesRecipe("rules", "1", rulesSource(t))))

	r := newRebuilder(t, p, t.TempDir())
	r.GiveUp = 200 * time.Millisecond
	if done, err := r.RebuildNew(ctx); err == nil || !strings.Contains(err.Error(), "retrying") || len(done) != 0 {
		t.Fatalf("first pass: %d rebuilt, %v; want an error that is retried", len(done), err)
	}
	time.Sleep(250 * time.Millisecond)
	done, err := r.RebuildNew(ctx)
	if err != nil {
		t.Fatalf("after GiveUp: %v", err)
	}
	if len(done) != 2 || done[0].Reproduced || !strings.Contains(done[0].Error, "downloading modules") || !done[1].Reproduced || done[1].Release.LogIndex != next.LogIndex {
		t.Fatalf("after GiveUp: %+v; want hello 1 not reproduced for its modules, then rules 1 reproduced", done)
	}
	t.Logf("verdict error: %s", done[0].Error)
}

// TestRebuilderRefusesLies: a platform that answered honestly, then serves
// doctored release-log bundles, tiles or checkpoint: the rebuilder fails,
// naming the entry or the checkpoint, rebuilds nothing from what it was
// served, and keeps its place; once the platform answers honestly again, it
// goes on from there.
func TestRebuilderRefusesLies(t *testing.T) {
	ctx := context.Background()
	p, _ := startPlatform(t)
	src := rulesSource(t)
	b := testBuilder(t)
	publish(t, p, "rules", "1", conveyerBuild(t, b, rulesRecipe("rules", "1", src)))
	px := liar.New(t, p.URL(), "release", []byte(`{"name":"evil","version":"6.6.6"}`))
	r := newRebuilder(t, p, t.TempDir())
	r.Platform = px.URL
	if done, err := r.RebuildNew(ctx); err != nil || len(done) != 1 || !done[0].Reproduced {
		t.Fatalf("honest: %v, %v", done, err)
	}
	pub := publish(t, p, "rules", "2", conveyerBuild(t, b, rulesRecipe("rules", "2", src)))
	for _, lie := range []liar.Lie{liar.Bundle, liar.Tile, liar.Checkpoint} {
		px.Tell(lie)
		done, err := r.RebuildNew(ctx)
		if err == nil || len(done) != 0 || !strings.Contains(err.Error(), "checkpoint") && !strings.Contains(err.Error(), fmt.Sprintf("entry %d", pub.LogIndex)) {
			t.Errorf("%s: rebuilt %v, %v; want an error naming entry %d or the checkpoint", lie, done, err, pub.LogIndex)
		}
		if _, err := r.LoggedEntry(ctx, pub.LogIndex, Pins{}); err == nil {
			t.Errorf("%s: LoggedEntry read entry %d", lie, pub.LogIndex)
		}
		if st, err := r.loadState(); err != nil || st.Next != pub.LogIndex {
			t.Errorf("%s: the state moved on to %d (%v), want it at %d", lie, st.Next, err, pub.LogIndex)
		}
	}
	px.Tell(liar.Honest)
	done, err := r.RebuildNew(ctx)
	if err != nil || len(done) != 1 || done[0].Release.Version != "2" || !done[0].Reproduced {
		t.Fatalf("honest again: %v, %v; want rules 2 reproduced", done, err)
	}
}
