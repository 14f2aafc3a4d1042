package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/internal/gotest"
	"github.com/vitrine-dev/vitrine/internal/publish"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/ruledb"
	"github.com/vitrine-dev/vitrine/tlog"
	"github.com/vitrine-dev/vitrine/update"
)

func testBuild(p *Platform, name string, source []byte) *release.Build {
	return &release.Build{
		Recipe: json.RawMessage(`{"name":"` + name + `"}`), Source: "dir:.", Archive: strings.TrimPrefix(release.Digest(source), "sha256:"),
		Toolchain: "go1.26.8", Env: map[string]string{"CGO_ENABLED": "0"}, BuilderID: p.URL() + "/conveyer", InvocationID: name,
		Started: time.Now().Add(-time.Minute), Finished: time.Now(),
	}
}

func compileDB(t *testing.T, version uint64, rules string) []byte {
	t.Helper()
	src, err := ruledb.Parse("test.hdb", strings.NewReader(rules))
	if err != nil {
		t.Fatal(err)
	}
	db, err := ruledb.Compile([]*ruledb.Source{src}, version)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestUpdatesFromDiscovery publishes releases and has go-tuf's own client,
// given only the discovery document's URL and root, download and verify
// every target; each artifact then verifies against its provenance and
// release-log proof from the target's custom metadata, as the agent does.
func TestUpdatesFromDiscovery(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	p := start(t, data)
	defer func() { stop(t, p) }()

	const rule1 = "44d88612fea8a8f36de82e1278abb02f:68:EICAR-Test-File\n"
	const rule2 = rule1 + "0123456789abcdef0123456789abcdef:10:Other-Test\n"
	releases := []struct {
		name, version string
		files         map[string][]byte
	}{
		{"vitrine", "0.1.0", map[string][]byte{"vitrine_linux_amd64": []byte("\x7fELF one"), "vitrine_linux_arm64": []byte("\x7fELF two")}},
		{"sample-ruledb", "1", map[string][]byte{"sample": compileDB(t, 1, rule1)}},
		{"sample-ruledb", "2", map[string][]byte{"sample": compileDB(t, 2, rule2)}},
	}
	for _, r := range releases {
		src := []byte("source of " + r.name + " " + r.version)
		if _, err := p.Publish(ctx, r.name, r.version, r.files, src, testBuild(p, r.name+r.version, src)); err != nil {
			t.Fatal(err)
		}
	}

	// The endpoint knows only the discovery document.
	var d Discovery
	code, body := httpDo(t, http.MethodGet, p.URL()+"/.well-known/vitrine.json", "", nil)
	if code != http.StatusOK || json.Unmarshal(body, &d) != nil {
		t.Fatalf("discovery: %d %s", code, body)
	}
	if d.Updates.URL != p.URL()+"/updates/" || len(d.Updates.Root) == 0 {
		t.Fatalf("discovery updates: %+v", d.Updates)
	}
	cfg, err := config.New(d.Updates.URL, d.Updates.Root)
	if err != nil {
		t.Fatal(err)
	}
	cfg.LocalMetadataDir, cfg.LocalTargetsDir = t.TempDir(), t.TempDir()
	u, err := updater.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Refresh(); err != nil {
		t.Fatalf("go-tuf refresh: %v", err)
	}

	var logVKey string
	for _, l := range d.Logs {
		if l.Name == "release" {
			logVKey = l.VKey
		}
	}
	verifier, err := note.NewVerifier(logVKey)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := tlog.ParsePolicy([]byte(d.WitnessPolicy))
	if err != nil {
		t.Fatal(err)
	}
	key, err := release.ParsePublicKey([]byte(d.Releases.Key))
	if err != nil {
		t.Fatal(err)
	}

	download := func(name string) ([]byte, *update.Custom) {
		t.Helper()
		info, err := u.GetTargetInfo(name)
		if err != nil {
			t.Fatalf("target %s: %v", name, err)
		}
		_, b, err := u.DownloadTarget(info, "", "")
		if err != nil {
			t.Fatalf("downloading %s: %v", name, err)
		}
		c, err := update.ParseCustom(*info.Custom)
		if err != nil {
			t.Fatalf("target %s: %v", name, err)
		}
		return b, c
	}
	want := 0
	for _, r := range releases {
		want += len(r.files) + 2
		for a, content := range r.files {
			got, c := download(r.name + "/" + r.version + "/" + a)
			if string(got) != string(content) {
				t.Errorf("%s %s %s: wrong bytes", r.name, r.version, a)
			}
			env, _ := download(r.name + "/" + r.version + "/provenance.json")
			entry, _ := download(r.name + "/" + r.version + "/release.json")
			if c.Provenance != release.Digest(env) {
				t.Errorf("%s: custom provenance %s, envelope %s", a, c.Provenance, release.Digest(env))
			}
			e, err := release.VerifyArtifact(ctx, a, got, &release.Evidence{Entry: entry, Proof: []byte(c.Proof), Envelope: env}, &release.Trust{Key: key, Log: verifier, Witness: policy})
			if err != nil {
				t.Errorf("%s %s %s: %v", r.name, r.version, a, err)
			} else if e.Name != r.name || e.Version != r.version {
				t.Errorf("%s: entry for %s %s", a, e.Name, e.Version)
			}
		}
	}
	// The second rule database carries a delta from the first.
	want++
	delta, c := download("sample-ruledb/2/sample.delta-1")
	if c.DeltaFrom != "1" || c.Full != "sample-ruledb/2/sample" {
		t.Errorf("delta custom: %+v", c)
	}
	full, err := ruledb.ApplyDelta(releases[1].files["sample"], delta)
	if err != nil || string(full) != string(releases[2].files["sample"]) {
		t.Errorf("applying the delta: %v", err)
	}
	if n := len(u.GetTopLevelTargets()); n != want {
		t.Errorf("%d targets, want %d", n, want)
	}

	// The offline root keys are outside the data directory, not in it.
	if keys, _ := filepath.Glob(filepath.Join(data+"-offline", "root-*.key")); len(keys) != 3 {
		t.Errorf("%d root keys in %s-offline, want 3", len(keys), data)
	}
	if err := filepath.Walk(data, func(path string, _ os.FileInfo, _ error) error {
		if strings.HasPrefix(filepath.Base(path), "root-") {
			t.Errorf("root key %s in the data directory", path)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// A restart serves the same repository: the same timestamp, and the
	// same client keeps working.
	_, ts := httpDo(t, http.MethodGet, p.URL()+"/updates/timestamp.json", "", nil)
	stop(t, p)
	p = start(t, data)
	if _, ts2 := httpDo(t, http.MethodGet, p.URL()+"/updates/timestamp.json", "", nil); string(ts) != string(ts2) {
		t.Error("timestamp.json changed across a restart")
	}
	var was, is bytes.Buffer
	json.Compact(&was, d.Updates.Root)
	json.Compact(&is, p.Discovery().Updates.Root)
	if was.String() != is.String() {
		t.Error("the discovered root changed across a restart")
	}
}

// TestPublishResumes: a release published under /releases/ whose targets
// could not be added to the update repository (here a file stands where
// the repository must make the release's target directory) is finished
// by publishing it again with the same artifacts, or by restarting the
// platform; neither logs it a second time. Different artifacts under the
// same name and version are refused.
func TestPublishResumes(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	p := start(t, data)
	defer func() { stop(t, p) }()
	const rule1 = "44d88612fea8a8f36de82e1278abb02f:68:EICAR-Test-File\n"
	const rule2 = rule1 + "0123456789abcdef0123456789abcdef:10:Other-Test\n"
	const rule3 = rule2 + "00000000000000000000000000000000:12:Third-Test\n"
	publishDB := func(p *Platform, version string, db []byte) (*Published, error) {
		src := []byte("rules " + version)
		return p.Publish(ctx, "sample-ruledb", version, map[string][]byte{"sample": db}, src, testBuild(p, "sample-ruledb"+version, src))
	}
	if _, err := publishDB(p, "1", compileDB(t, 1, rule1)); err != nil {
		t.Fatal(err)
	}

	db2 := compileDB(t, 2, rule2)
	unblock := blockDir(t, filepath.Join(data, "updates", "targets", "sample-ruledb", "2"))
	if _, err := publishDB(p, "2", db2); err == nil || !strings.Contains(err.Error(), "update repository") {
		t.Fatalf("publish with the repository blocked = %v, want an update repository error", err)
	}
	if !p.rel.store.Exists("sample-ruledb", "2") || p.rel.updates.Has("sample-ruledb", "2") {
		t.Fatal("want release 2 under /releases/ and not in the update repository")
	}
	if _, err := publishDB(p, "2", db2); err == nil || !strings.Contains(err.Error(), "update repository") {
		t.Fatalf("publish again, still blocked = %v, want an update repository error", err)
	}
	if _, err := publishDB(p, "2", compileDB(t, 2, rule1)); !errors.Is(err, publish.ErrExists) {
		t.Fatalf("publish of other bytes as 2 = %v, want ErrExists", err)
	}
	unblock()
	got, err := publishDB(p, "2", db2)
	if err != nil {
		t.Fatalf("publish again, unblocked: %v", err)
	}
	if got.LogIndex != 1 || !p.rel.updates.Has("sample-ruledb", "2") {
		t.Fatalf("resumed publish = %+v (in the repository: %v), want log index 1 and its targets added", got, p.rel.updates.Has("sample-ruledb", "2"))
	}
	if _, err := publishDB(p, "2", db2); !errors.Is(err, publish.ErrExists) {
		t.Fatalf("publish of a finished release = %v, want ErrExists", err)
	}

	// A platform stopped between the two steps adds the release when it
	// starts again.
	unblock = blockDir(t, filepath.Join(data, "updates", "targets", "sample-ruledb", "3"))
	if _, err := publishDB(p, "3", compileDB(t, 3, rule3)); err == nil {
		t.Fatal("publish with the repository blocked succeeded")
	}
	stop(t, p)
	unblock()
	p = start(t, data)
	if !p.rel.updates.Has("sample-ruledb", "3") {
		t.Fatal("release 3 is not in the update repository after a restart")
	}
	r, err := p.rel.store.Load("sample-ruledb", "3")
	if err != nil || r.Index != 2 {
		t.Fatalf("release 3: %+v, %v; want log index 2 (no entry logged twice)", r, err)
	}

	// go-tuf's client gets every version, and 2 and 3 as deltas too.
	var d Discovery
	if code, body := httpDo(t, http.MethodGet, p.URL()+"/.well-known/vitrine.json", "", nil); code != http.StatusOK || json.Unmarshal(body, &d) != nil {
		t.Fatalf("discovery: %d %s", code, body)
	}
	cfg, err := config.New(d.Updates.URL, d.Updates.Root)
	if err != nil {
		t.Fatal(err)
	}
	cfg.LocalMetadataDir, cfg.LocalTargetsDir = t.TempDir(), t.TempDir()
	u, err := updater.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Refresh(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range u.GetTopLevelTargets() {
		if strings.HasSuffix(name, "/sample") || strings.Contains(name, "delta") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	t.Logf("targets: %v", names)
	for _, v := range []string{"1", "2", "3"} {
		info, err := u.GetTargetInfo("sample-ruledb/" + v + "/sample")
		if err != nil {
			t.Fatalf("version %s: %v", v, err)
		}
		if _, _, err := u.DownloadTarget(info, "", ""); err != nil {
			t.Fatalf("version %s: %v", v, err)
		}
	}
	if len(names) != 5 {
		t.Errorf("targets %v, want three databases and two deltas", names)
	}
}

// TestBuildResumes: `vitrine build` of a release that is published but
// missing from the update repository builds it again, and the build,
// reproducing the same database, finishes the release under its first
// log entry; once finished, the same recipe is refused as existing.
func TestBuildResumes(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	p := start(t, data)
	defer func() { stop(t, p) }()
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "rules"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "rules", "a.hdb"), []byte("44d88612fea8a8f36de82e1278abb02f:68:EICAR-Test-File\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	recipe := []byte(`{"name":"db","version":"1","source":{"dir":"` + src + `"},"targets":[{"ruledb":{"name":"db","dir":"rules"}}]}`)
	unblock := blockDir(t, filepath.Join(data, "updates", "targets", "db", "1"))
	if _, err := p.Build(ctx, recipe); err == nil || !strings.Contains(err.Error(), "update repository") {
		t.Fatalf("build with the repository blocked = %v, want an update repository error", err)
	}
	first, err := p.rel.store.Load("db", "1")
	if err != nil {
		t.Fatal(err)
	}
	unblock()
	got, err := p.Build(ctx, recipe)
	if err != nil {
		t.Fatalf("build again: %v", err)
	}
	if got.LogIndex != first.Index || !p.rel.updates.Has("db", "1") {
		t.Fatalf("build again = %+v, want log index %d and the release in the update repository", got, first.Index)
	}
	if _, err := p.Build(ctx, recipe); !errors.Is(err, publish.ErrExists) {
		t.Fatalf("build of a finished release = %v, want ErrExists", err)
	}
}

// TestPublishStaged: a release whose entry is logged but which could not
// be written under /releases/ (here a file stands where its directory
// must be made) is finished with the same entry by publishing it again,
// or by restarting the platform: the release log never holds it twice.
// Other artifacts under that name and version are refused.
func TestPublishStaged(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	p := start(t, data)
	defer func() { stop(t, p) }()
	publishDB := func(p *Platform, name string, db []byte) (*Published, error) {
		src := []byte("rules " + name)
		return p.Publish(ctx, name, "1", map[string][]byte{"sample": db}, src, testBuild(p, name, src))
	}
	db := compileDB(t, 1, "44d88612fea8a8f36de82e1278abb02f:68:EICAR-Test-File\n")
	unblock := blockDir(t, filepath.Join(data, "releases", "a"))
	if _, err := publishDB(p, "a", db); err == nil {
		t.Fatal("publish with /releases/ blocked succeeded")
	}
	staged, logged, err := p.rel.store.Staged("a", "1")
	if err != nil || !logged || staged.Index != 0 {
		t.Fatalf("staged a: %v, logged %v, %v; want entry 0", staged, logged, err)
	}
	if _, err := publishDB(p, "a", db); err == nil {
		t.Fatal("publish again, still blocked, succeeded")
	}
	if _, err := publishDB(p, "a", compileDB(t, 1, "0123456789abcdef0123456789abcdef:10:Other-Test\n")); !errors.Is(err, publish.ErrExists) {
		t.Fatalf("publish of other bytes as a 1 = %v, want ErrExists", err)
	}
	unblock()
	got, err := publishDB(p, "a", db)
	if err != nil || got.LogIndex != 0 {
		t.Fatalf("publish again, unblocked = %+v, %v; want entry 0", got, err)
	}
	if !p.rel.publisher.Finished("a", "1") {
		t.Fatal("a 1 is not published and in the update repository")
	}
	if s, _, _ := p.rel.store.Staged("a", "1"); s != nil {
		t.Error("a 1 is still staged once published")
	}

	// Stopped after the append: the restart finishes it.
	unblock = blockDir(t, filepath.Join(data, "releases", "b"))
	if _, err := publishDB(p, "b", db); err == nil {
		t.Fatal("publish with /releases/ blocked succeeded")
	}
	stop(t, p)
	unblock()
	p = start(t, data)
	r, err := p.rel.store.Load("b", "1")
	if err != nil || r.Index != 1 || !p.rel.publisher.Finished("b", "1") {
		t.Fatalf("b 1 after a restart: %+v, %v; want published at entry 1 and in the update repository", r, err)
	}
	// Nothing was logged twice: the next release is entry 2.
	if got, err := publishDB(p, "c", db); err != nil || got.LogIndex != 2 {
		t.Fatalf("publish c = %+v, %v; want entry 2", got, err)
	}
}

// blockDir puts a regular file at path, where a directory must be made:
// a write fault that neither permissions nor running as root get past.
// It returns what removes the file.
func blockDir(t *testing.T, path string) (unblock func()) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("in the way"), 0o644); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBuildToolchainUnavailable: a recipe that pins a toolchain the
// platform cannot fetch (here it has no checksum database to check one
// against) is a 422 that says so, not a server error.
func TestBuildToolchainUnavailable(t *testing.T) {
	p, err := Start(context.Background(), Config{Data: t.TempDir(), Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond, GoSumDB: "off", BuildSourceRoots: gotest.SourceRoots(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { stop(t, p) }()
	src, err := filepath.Abs(filepath.Join("..", "conveyer", "testdata", "hello"))
	if err != nil {
		t.Fatal(err)
	}
	recipe := `{"name":"hello","version":"1","source":{"dir":"` + src + `"},"targets":[{"go":{"program":"hello","package":".","platforms":["linux/amd64"]}}],"toolchain":"go1.99.0"}`
	code, body := httpDo(t, http.MethodPost, p.URL()+"/v1/builds", p.operatorToken, []byte(recipe))
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(body), "toolchain") {
		t.Fatalf("POST /v1/builds = %d %s; want 422 naming the toolchain", code, body)
	}
	if p.rel.store.Exists("hello", "1") {
		t.Error("a release was published")
	}
}
