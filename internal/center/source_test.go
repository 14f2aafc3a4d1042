package center

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/conveyer"
	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/ruledb"
)

// The sources of the releases startSources publishes: tool 1.0.0 and
// 1.1.0, and the rule database release rules 1 and 2.
var (
	tool100 = map[string]string{
		"README.md":          "# tool\n\nA tool.\n",
		"main.go":            "package main\n\nfunc main() {\n\tprintln(\"hello\")\n}\n",
		"old.txt":            "gone in 1.1.0\n",
		"logo.png":           "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
		"docs/guide.md":      "# Guide\n\nStep one.\n",
		"docs/with space.md": "a file named with a space\n",
	}
	tool110 = map[string]string{
		"README.md":          "# tool\n\nA tool that greets.\n",
		"main.go":            "package main\n\nfunc main() {\n\tprintln(\"hello, world\")\n}\n",
		"new.txt":            "new in 1.1.0\n",
		"logo.png":           "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01",
		"docs/guide.md":      "# Guide\n\nStep one.\n",
		"docs/with space.md": "a file named with a space\n",
	}
	rules1 = sigLines("Test.A", "Test.B") + "Test.Body:0:*:deadbeef\n"
	rules2 = sigLines("Test.A", "Test.C") + "Test.Body:0:*:deadbeef\n"
)

// sigLines are .hsb lines, one per name, of the SHA-256 of the name.
func sigLines(names ...string) string {
	var b strings.Builder
	for _, n := range names {
		sum := sha256.Sum256([]byte(n))
		fmt.Fprintf(&b, "%x:%d:%s\n", sum, len(n), n)
	}
	return b.String()
}

// archive writes files into a directory and archives it as the conveyer
// does, returning the archive and its hex SHA-256.
func archive(t testing.TB, files map[string]string) ([]byte, string) {
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
	var buf bytes.Buffer
	sum, err := conveyer.Archive(dir, &buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), sum
}

// startSources starts a platform and publishes tool 1.0.0 and 1.1.0, and
// the rule databases rules 1 and 2 (ndb and hsb rules, compiled by
// package ruledb, their recipe naming the database target), each with its
// source archive.
func startSources(t testing.TB) *platform.Platform {
	t.Helper()
	ctx := context.Background()
	p, err := platform.Start(ctx, platform.Config{Data: t.TempDir(), Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		p.Close(ctx)
	})
	publish := func(name, version string, files map[string]string, artifacts map[string][]byte, recipe string) {
		t.Helper()
		src, sum := archive(t, files)
		if _, err := p.Publish(ctx, name, version, artifacts, src, &release.Build{
			Recipe: json.RawMessage(recipe), Source: "dir:.", Archive: sum,
			Toolchain: "go1.26.8", Env: map[string]string{"CGO_ENABLED": "0"}, BuilderID: p.URL() + "/conveyer", InvocationID: name + version,
			Started: time.Now().Add(-time.Minute), Finished: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	publish("tool", "1.0.0", tool100, map[string][]byte{"tool_linux_amd64": []byte("\x7fELF 1.0.0")}, `{"name":"tool"}`)
	publish("tool", "1.1.0", tool110, map[string][]byte{"tool_linux_amd64": []byte("\x7fELF 1.1.0")}, `{"name":"tool"}`)
	for v, rules := range map[uint64]string{1: rules1, 2: rules2} {
		hsb, err := ruledb.Parse("sample.hsb", strings.NewReader(strings.Join(strings.Split(rules, "\n")[:2], "\n")+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		ndb, err := ruledb.Parse("sample.ndb", strings.NewReader(strings.Split(rules, "\n")[2]+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		db, err := ruledb.Compile([]*ruledb.Source{hsb, ndb}, v)
		if err != nil {
			t.Fatal(err)
		}
		version := fmt.Sprint(v)
		lines := strings.Split(rules, "\n")
		publish("rules", version, map[string]string{"rules/sample.hsb": lines[0] + "\n" + lines[1] + "\n", "rules/sample.ndb": lines[2] + "\n"},
			map[string][]byte{"sample": db},
			`{"name":"rules","version":"`+version+`","source":{"dir":"."},"targets":[{"ruledb":{"name":"sample","dir":"rules"}}]}`)
	}
	return p
}

// TestSourcePages: a release's source, browsed: the root lists its
// directories and files, a directory its own; a text file is shown line by
// line, each line an anchor; a binary file as its size and digest only;
// the release page links the source and the diff from the version before.
// Bad paths are 4xx.
func TestSourcePages(t *testing.T) {
	p := startSources(t)
	c, err := New(Config{Platform: p.URL(), Dir: t.TempDir(), IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	base := newServer(t, c)
	code, body := get(t, base+"/center/releases/tool/1.1.0/source/", "application/json")
	var root SourcePage
	if code != 200 || json.Unmarshal([]byte(body), &root) != nil {
		t.Fatalf("the source's root: %d %s", code, body)
	}
	_, sum := archive(t, tool110)
	var names []string
	for _, e := range root.Entries {
		names = append(names, e.Name+":"+e.Kind)
	}
	if !root.Verified || root.Archive != sum || root.Files != len(tool110) ||
		strings.Join(names, " ") != "docs:dir README.md:file logo.png:file main.go:file new.txt:file" {
		t.Fatalf("the source's root: %+v", root)
	}
	code, body = get(t, base+"/center/releases/tool/1.1.0/source/docs/", "application/json")
	var docs SourcePage
	if code != 200 || json.Unmarshal([]byte(body), &docs) != nil || len(docs.Entries) != 2 || docs.Entries[1].Path != "docs/with space.md" {
		t.Fatalf("docs/: %d %s", code, body)
	}

	code, html := get(t, base+"/center/releases/tool/1.1.0/source/main.go", "")
	if code != 200 || !strings.Contains(html, `<tr id="L4"><td class="ln"><a href="#L4" aria-label="Line 4">4</a></td><td class="lc">	println(&#34;hello, world&#34;)</td></tr>`) ||
		strings.Contains(html, `id="L6"`) || !strings.Contains(html, `data-verified="true"`) || strings.Contains(html, `data-verified="false"`) {
		t.Fatalf("main.go: %d %s", code, html)
	}
	code, body = get(t, base+"/center/releases/tool/1.1.0/source/docs/with%20space.md", "application/json")
	var spaced SourcePage
	if code != 200 || json.Unmarshal([]byte(body), &spaced) != nil || spaced.File == nil || spaced.File.Text != tool110["docs/with space.md"] {
		t.Fatalf("a file with a space in its name: %d %s", code, body)
	}
	code, body = get(t, base+"/center/releases/tool/1.1.0/source/logo.png", "application/json")
	var logo SourcePage
	png := sha256.Sum256([]byte(tool110["logo.png"]))
	if code != 200 || json.Unmarshal([]byte(body), &logo) != nil || logo.File == nil || !logo.File.Binary || logo.File.Text != "" ||
		logo.File.SHA256 != hex.EncodeToString(png[:]) || logo.File.Size != int64(len(tool110["logo.png"])) {
		t.Fatalf("a binary file: %d %s", code, body)
	}
	if _, html := get(t, base+"/center/releases/tool/1.1.0/source/logo.png", ""); strings.Contains(html, "IHDR") || !strings.Contains(html, hex.EncodeToString(png[:])) {
		t.Errorf("a binary file's page shows its content, or not its digest")
	}

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for path, want := range map[string]string{
		"/center/releases/tool/1.1.0/source/main.go?line=3": "/center/releases/tool/1.1.0/source/main.go#L3",
		"/center/releases/tool/1.1.0/source/docs":           "/center/releases/tool/1.1.0/source/docs/",
		"/center/releases/tool/1.1.0/source":                "/center/releases/tool/1.1.0/source/",
	} {
		resp, err := noRedirect.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 3 || resp.Header.Get("Location") != want {
			t.Errorf("GET %s: %d to %q, want %s", path, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
	for path, want := range map[string]int{
		"/center/releases/tool/1.1.0/source/old.txt": 404, "/center/releases/tool/1.1.0/source/nothing/": 404,
		"/center/releases/tool/9.9.9/source/": 404, "/center/releases/tool/1.1.0/source/main.go?line=x": 400,
		"/center/releases/tool/1.1.0/source/main.go?line=0": 400, "/center/releases/tool/1.1.0/source/..%2Fetc": 400,
		"/center/releases/tool/1.1.0/source/a%5Cb": 400,
	} {
		if code, body := get(t, base+path, ""); code != want {
			t.Errorf("GET %s: %d %s, want %d", path, code, body, want)
		}
	}

	code, body = get(t, base+"/center/releases/tool/1.1.0", "application/json")
	var rp ReleasePage
	if code != 200 || json.Unmarshal([]byte(body), &rp) != nil || rp.Previous != "1.0.0" || len(rp.Others) != 1 {
		t.Fatalf("the release page: %d %s", code, body)
	}
	_, html = get(t, base+"/center/releases/tool/1.1.0", "")
	for _, want := range []string{`href="/center/releases/tool/1.1.0/source/"`, `href="/center/releases/tool/1.1.0/diff?from=1.0.0"`, `<option selected>1.0.0</option>`} {
		if !strings.Contains(html, want) {
			t.Errorf("the release page lacks %s", want)
		}
	}
	_, body = get(t, base+"/center/releases/tool/1.0.0", "application/json")
	if rp = (ReleasePage{}); json.Unmarshal([]byte(body), &rp) != nil || len(rp.Others) != 1 || rp.Others[0] != "1.1.0" || rp.Previous != "" {
		t.Errorf("the first version's page: %s", body)
	}
}

// TestSourceDiff: the diff from tool 1.0.0 to 1.1.0 lists the files added,
// removed and changed, with a unified diff of each text file and the
// digests of the binary one; both archives verified.
func TestSourceDiff(t *testing.T) {
	p := startSources(t)
	c, err := New(Config{Platform: p.URL(), Dir: t.TempDir(), IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	base := newServer(t, c)
	code, body := get(t, base+"/center/releases/tool/1.1.0/diff?from=1.0.0", "application/json")
	var d DiffPage
	if code != 200 || json.Unmarshal([]byte(body), &d) != nil {
		t.Fatalf("the diff: %d %s", code, body)
	}
	status := map[string]FileChange{}
	for _, f := range d.Files {
		status[f.Path] = f
	}
	if !d.Verified || d.Added != 1 || d.Removed != 1 || d.Changed != 3 || d.Unchanged != 2 || len(d.Files) != 5 || len(d.RuleDBs) != 0 {
		t.Fatalf("the diff: %+v", d)
	}
	want := "--- a/main.go\n+++ b/main.go\n@@ -1,5 +1,5 @@\n package main\n \n func main() {\n-\tprintln(\"hello\")\n+\tprintln(\"hello, world\")\n }\n"
	if f := status["main.go"]; f.Status != "changed" || f.Unified != want || f.Plus != 1 || f.Minus != 1 {
		t.Errorf("main.go's diff: %+v, want\n%s", f, want)
	}
	if f := status["new.txt"]; f.Status != "added" || !strings.Contains(f.Unified, "+new in 1.1.0\n") || f.OldSHA256 != "" {
		t.Errorf("new.txt: %+v", f)
	}
	if f := status["old.txt"]; f.Status != "removed" || !strings.Contains(f.Unified, "-gone in 1.1.0\n") || f.NewSHA256 != "" {
		t.Errorf("old.txt: %+v", f)
	}
	if f := status["logo.png"]; !f.Binary || f.Unified != "" || f.OldSHA256 == f.NewSHA256 || f.NotShown == "" {
		t.Errorf("logo.png: %+v", f)
	}
	_, html := get(t, base+"/center/releases/tool/1.1.0/diff?from=1.0.0", "")
	for _, want := range []string{`<tr class="del"><td class="ln"><a href="/center/releases/tool/1.0.0/source/main.go#L4">4</a></td><td class="ln"></td><td class="lc">-	println(&#34;hello&#34;)</td></tr>`,
		`<tr class="add"><td class="ln"></td><td class="ln"><a href="/center/releases/tool/1.1.0/source/main.go#L4">4</a></td>`,
		`data-verified="true"`, "1 added, 1 removed, 3 changed, 2 unchanged"} {
		if !strings.Contains(html, want) {
			t.Errorf("the diff page lacks %s", want)
		}
	}
	if strings.Contains(html, `data-verified="false"`) {
		t.Error("an honest diff marks something unverified")
	}
	// The other way round: what 1.1.0 added, 1.0.0 lacks.
	_, body = get(t, base+"/center/releases/tool/1.0.0/diff?from=1.1.0", "application/json")
	if d = (DiffPage{}); json.Unmarshal([]byte(body), &d) != nil || d.Added != 1 || d.Removed != 1 || d.Files[3].Path != "new.txt" || d.Files[3].Status != "removed" {
		t.Errorf("the diff backwards: %s", body)
	}
	for path, want := range map[string]int{
		"/center/releases/tool/1.1.0/diff": 400, "/center/releases/tool/1.1.0/diff?from=": 400,
		"/center/releases/tool/1.1.0/diff?from=9.9.9": 404, "/center/releases/nothing/1/diff?from=1.0.0": 404,
		"/center/releases/tool/1.1.0/diff?from=" + strings.Repeat("9", 300): 400,
	} {
		if code, body := get(t, base+path, ""); code != want {
			t.Errorf("GET %s: %d %s, want %d", path, code, body, want)
		}
	}
}

// lyingTransport is the Center's view of a platform that serves every
// release file honestly except the one it is told to replace.
type lyingTransport struct {
	suffix atomic.Value // string: the path it lies about
	body   atomic.Value // []byte: what it serves there
}

func (l *lyingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if s, _ := l.suffix.Load().(string); s != "" && strings.HasSuffix(r.URL.Path, s) {
		body, _ := l.body.Load().([]byte)
		return &http.Response{StatusCode: 200, Status: "200 OK", Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)),
			ContentLength: int64(len(body)), Request: r}, nil
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestSourceRefused: a platform that serves another source.tar.gz than
// the one the provenance names (a valid archive, with its own files) is
// refused: the source and diff pages are 502, marked unverified, naming
// the two digests, and show nothing of the archive served; so are they
// when the provenance served is not the one the release-log entry binds.
func TestSourceRefused(t *testing.T) {
	p := startSources(t)
	evil, evilSum := archive(t, map[string]string{"main.go": "package evil\n", "README.md": "evil\n"})
	lie := &lyingTransport{}
	lie.body.Store(evil)
	lie.suffix.Store("/tool/1.1.0/source.tar.gz")
	c, err := New(Config{Platform: p.URL(), Dir: t.TempDir(), HTTPClient: &http.Client{Transport: lie, Timeout: 30 * time.Second}, IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	base := newServer(t, c)
	_, sum := archive(t, tool110)
	for _, path := range []string{"/center/releases/tool/1.1.0/source/", "/center/releases/tool/1.1.0/source/main.go", "/center/releases/tool/1.1.0/diff?from=1.0.0"} {
		code, html := get(t, base+path, "")
		if code != http.StatusBadGateway || !strings.Contains(html, `data-verified="false"`) || strings.Contains(html, `data-verified="true"`) ||
			strings.Contains(html, "evil") || !strings.Contains(html, "sha256:"+evilSum) || !strings.Contains(html, sum) {
			t.Errorf("GET %s over a lying platform: %d %s", path, code, html)
		}
		code, body := get(t, base+path, "application/json")
		var answer struct {
			Verified bool
			Problem  string
		}
		if code != http.StatusBadGateway || json.Unmarshal([]byte(body), &answer) != nil || answer.Verified ||
			!strings.HasPrefix(answer.Problem, "refused: the source.tar.gz of tool 1.1.0 served is sha256:"+evilSum) || strings.Contains(body, "evil") {
			t.Errorf("GET %s as JSON over a lying platform: %d %s", path, code, body)
		}
	}
	// The honest version beside it is shown, and a refused archive is
	// not kept: the platform serving the right one, it is shown.
	if code, _ := get(t, base+"/center/releases/tool/1.0.0/source/main.go", ""); code != 200 {
		t.Errorf("the honest version: %d", code)
	}
	lie.suffix.Store("")
	if code, html := get(t, base+"/center/releases/tool/1.1.0/source/main.go", ""); code != 200 || !strings.Contains(html, "hello, world") {
		t.Errorf("once the platform serves the archive the provenance names: %d", code)
	}

	// A provenance other than the one the release-log entry binds names
	// no archive the Center shows (a fresh Center: nothing kept).
	c, err = New(Config{Platform: p.URL(), Dir: t.TempDir(), HTTPClient: &http.Client{Transport: lie, Timeout: 30 * time.Second}, IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	base = newServer(t, c)
	lie.body.Store([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}`))
	lie.suffix.Store("/tool/1.1.0/provenance.json")
	code, html := get(t, base+"/center/releases/tool/1.1.0/source/main.go", "")
	if code != http.StatusBadGateway || !strings.Contains(html, `data-verified="false"`) || strings.Contains(html, "hello") ||
		!strings.Contains(html, "checking the provenance of tool 1.1.0: envelope: the envelope has digest") {
		t.Errorf("a provenance the entry does not bind: %d %s", code, html)
	}
}

// TestRuleDBDiff: between two versions of a rule database release, the
// signatures added and removed, read from the databases released (their
// digests the release-log entries'); a database served with another
// digest is refused, marked unverified.
func TestRuleDBDiff(t *testing.T) {
	p := startSources(t)
	lie := &lyingTransport{}
	lie.body.Store([]byte("not the database"))
	c, err := New(Config{Platform: p.URL(), Dir: t.TempDir(), HTTPClient: &http.Client{Transport: lie, Timeout: 30 * time.Second}, IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	base := newServer(t, c)
	code, body := get(t, base+"/center/releases/rules/2/diff?from=1", "application/json")
	var d DiffPage
	if code != 200 || json.Unmarshal([]byte(body), &d) != nil || len(d.RuleDBs) != 1 {
		t.Fatalf("the rule database diff: %d %s", code, body)
	}
	db := d.RuleDBs[0]
	if !db.Verified || db.Name != "sample" || db.OldVersion != 1 || db.NewVersion != 2 || db.Unchanged != 2 ||
		len(db.Added) != 1 || db.Added[0].Name != "Test.C" || db.Added[0].Line != strings.Split(rules2, "\n")[1] ||
		len(db.Removed) != 1 || db.Removed[0].Name != "Test.B" || db.Removed[0].Kind != "sha256" {
		t.Fatalf("the signatures: %+v", db)
	}
	// The source diff beside it: the rule file's lines.
	if d.Changed != 1 || !strings.Contains(d.Files[0].Unified, "+"+strings.Split(rules2, "\n")[1]) {
		t.Errorf("the rule sources' diff: %+v", d.Files)
	}
	_, html := get(t, base+"/center/releases/rules/2/diff?from=1", "")
	if !strings.Contains(html, `<tr class="add"><td>+<span class="narrow-hidden"> added</span></td><th scope="row">Test.C</th><td>sha256</td><td class="lc">`+strings.Split(rules2, "\n")[1]) || strings.Count(html, `data-verified="true"`) != 2 {
		t.Errorf("the rule database diff's page: %s", html)
	}

	// A fresh Center over a platform that serves another database.
	c, err = New(Config{Platform: p.URL(), Dir: t.TempDir(), HTTPClient: &http.Client{Transport: lie, Timeout: 30 * time.Second}, IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	base = newServer(t, c)
	lie.suffix.Store("/rules/2/artifacts/sample")
	code, html = get(t, base+"/center/releases/rules/2/diff?from=1", "")
	if code != 200 || !strings.Contains(html, `<p class="bad" data-verified="false">✗ refused: sample of rules 2 served is sha256:`) || strings.Contains(html, "Test.C:") {
		t.Errorf("a database served with another digest: %d %s", code, html)
	}
}

// tree is a source tree of files, as readArchive would read them.
func tree(files map[string]string) *sourceTree {
	t := &sourceTree{files: map[string]*sourceFile{}}
	for p, content := range files {
		sum := sha256.Sum256([]byte(content))
		t.files[p] = &sourceFile{path: p, mode: "file", data: []byte(content), sha256: hex.EncodeToString(sum[:])}
		t.paths = append(t.paths, p)
		t.bytes += int64(len(content))
	}
	slices.Sort(t.paths)
	return t
}

// TestDiffBounds: a diff page lists every change but shows the diff of a
// file only within its bounds, and says so: a file larger than it diffs,
// one whose diff has more lines than the page still shows (the smaller
// ones after it are still shown), a binary one.
func TestDiffBounds(t *testing.T) {
	many := strings.Repeat("line\n", maxDiffLines+1)
	big := strings.Repeat("x", maxDiffFileBytes+1)
	page := &DiffPage{Name: "tool", From: DiffSide{Version: "1"}, To: DiffSide{Version: "2"}}
	diffTrees(page, tree(map[string]string{"a.txt": "", "b.txt": big, "c.txt": "one\n", "d.bin": "\x00"}),
		tree(map[string]string{"a.txt": many, "b.txt": big + "y", "c.txt": "two\n", "d.bin": "\x01"}))
	if len(page.Files) != 4 || page.Changed != 4 || page.Omitted == "" {
		t.Fatalf("the diff: %+v", page)
	}
	for i, want := range []string{"not shown: its diff has 10002 lines, more than the 10000 this page still shows", "too large to diff here", "", "binary file"} {
		f := page.Files[i]
		if !strings.HasPrefix(f.NotShown, want) || (want == "") != (f.Unified != "") {
			t.Errorf("%s: %q, diff %q; want %q", f.Path, f.NotShown, f.Unified, want)
		}
	}
	if page.Files[0].Plus != maxDiffLines+1 {
		t.Errorf("a.txt's lines added: %d", page.Files[0].Plus)
	}
}

// TestReadArchiveBounds: an archive with more entries than a tree holds,
// or that unpacks to more bytes, is too large, and says so; one that
// names a path twice or outside itself is refused.
func TestReadArchiveBounds(t *testing.T) {
	write := func(entries int, size int64, name func(int) string) []byte {
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		tw := tar.NewWriter(gz)
		for i := range entries {
			if err := tw.WriteHeader(&tar.Header{Name: name(i), Typeflag: tar.TypeReg, Size: size, Mode: 0o644}); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write(make([]byte, size)); err != nil {
				t.Fatal(err)
			}
		}
		tw.Close()
		gz.Close()
		return buf.Bytes()
	}
	for _, c := range []struct {
		archive []byte
		want    string
	}{
		{write(maxTreeFiles+1, 0, func(i int) string { return fmt.Sprint(i) }), "more than 20000 entries: too large for this Center to show"},
		{write(2, maxTreeBytes/2+1, func(i int) string { return fmt.Sprint(i) }), "unpacks to more than 128 MiB: too large for this Center to show"},
		{write(2, 1, func(int) string { return "a" }), "a is named twice"},
		{write(1, 1, func(int) string { return "../a" }), `entry "../a" is not a clean relative path`},
		// A name of 20,000 directories (whose parents, walked each time,
		// cost the square of its depth), and symlinks whose targets
		// would be kept uncounted.
		{write(1, 1, func(int) string { return strings.Repeat("a/", 20_000) + "f" }), "longer than 4096 bytes"},
		{links(1, strings.Repeat("x", 512<<10)), "longer than 4096 bytes"},
		{links(5000, strings.Repeat("x", 4000)), "names and links are more than 16 MiB"},
		// Past the tar's end, inside the gzip stream: a bomb to inflate.
		{trailing(64 << 20), "more than 1048576 bytes after its end"},
	} {
		if _, err := readArchive("", c.archive); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("readArchive: %v, want %q", err, c.want)
		}
	}
	// Deep names within the bound are read in time linear in their
	// depth: 2,000 files 2,000 directories deep.
	deep := write(2000, 1, func(i int) string { return strings.Repeat("d/", 2000) + fmt.Sprint(i) })
	if tree, err := readArchive("", deep); err != nil || len(tree.paths) != 2000 || tree.meta < 2000*4000 {
		t.Errorf("2,000 deep files: %v", err)
	}
}

// links is a source archive of n symlinks to target.
func links(n int, target string) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for i := range n {
		tw.WriteHeader(&tar.Header{Name: fmt.Sprint("l", i), Typeflag: tar.TypeSymlink, Linkname: target, Format: tar.FormatPAX})
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// trailing is a source archive of one file followed, inside its gzip
// stream, by n zero bytes.
func trailing(n int) []byte {
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(gz)
	tw.WriteHeader(&tar.Header{Name: "a", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})
	tw.Write([]byte("a"))
	tw.Close()
	gz.Write(make([]byte, n))
	gz.Close()
	return buf.Bytes()
}
