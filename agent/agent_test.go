package agent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/agent"
	"github.com/vitrine-dev/vitrine/internal/clamav"
	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/internal/tufrepo"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/ruledb"
	"github.com/vitrine-dev/vitrine/scan"
)

// eicar is the EICAR anti-virus test file.
const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

const (
	rulesV1 = "44d88612fea8a8f36de82e1278abb02f:68:Test.EICAR-MD5\n"
	rulesV2 = rulesV1 + "0123456789abcdef0123456789abcdef:10:Test.Other\n"
	bodyV2  = "Test.EICAR-Body:0:*:4549434152{1-3}5354414e44415244\n"
)

// testPlatform starts a platform whose TUF offline keys go to a temporary
// directory, and returns it with its data directory.
func testPlatform(t *testing.T) (*platform.Platform, string) {
	t.Helper()
	p, data, _ := startPlatform(t, tufrepo.Expiry{})
	return p, data
}

// publish publishes a release as the conveyer would, with a source
// archive of its own.
func publish(t *testing.T, p *platform.Platform, name, version string, files map[string][]byte) *platform.Published {
	t.Helper()
	src := []byte("source of " + name + " " + version)
	pub, err := p.Publish(context.Background(), name, version, files, src, &release.Build{
		Recipe: json.RawMessage(`{"name":"` + name + `"}`), Source: "dir:.", Archive: strings.TrimPrefix(release.Digest(src), "sha256:"),
		Toolchain: "go1.26.8", Env: map[string]string{"CGO_ENABLED": "0"}, BuilderID: p.URL() + "/conveyer", InvocationID: name + version,
		Started: time.Now().Add(-time.Minute), Finished: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func compile(t *testing.T, version uint64, files map[string]string) []byte {
	t.Helper()
	var srcs []*ruledb.Source
	for name, text := range files {
		s, err := ruledb.Parse(name, strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, s)
	}
	db, err := ruledb.Compile(srcs, version)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func register(t *testing.T, p *platform.Platform, country string) *agent.Agent {
	t.Helper()
	a, err := agent.Register(context.Background(), filepath.Join(t.TempDir(), "agent"), p.URL(), p.OperatorToken(), country, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.GOOS, a.GOARCH = "linux", "amd64"
	return a
}

// TestAgentUpdateAndScan registers an agent, installs a rule database and
// a program through TUF and every Vitrine check, updates the database by
// its delta, scans files with it and reports the detections.
func TestAgentUpdateAndScan(t *testing.T) {
	ctx := context.Background()
	p, _ := testPlatform(t)
	publish(t, p, "sample-ruledb", "1", map[string][]byte{"sample": compile(t, 1, map[string]string{"a.hdb": rulesV1})})
	publish(t, p, "tool", "1.0.0", map[string][]byte{"tool_linux_amd64": []byte("\x7fELF amd64"), "tool_linux_arm64": []byte("\x7fELF arm64")})

	a := register(t, p, "DE")
	if id := a.Identity(); id.Region != "zurich" || id.Token == "" {
		t.Fatalf("identity = %+v, want a token and home region zurich for DE", id)
	}
	done, err := a.Update(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 2 || done[0].Release != "sample-ruledb" || done[1].Release != "tool" {
		t.Fatalf("installed %+v, want sample-ruledb and tool", done)
	}
	// Only this platform's program.
	if _, ok := done[1].Files["tool_linux_amd64"]; !ok || len(done[1].Files) != 1 {
		t.Errorf("tool files = %v, want tool_linux_amd64 alone", done[1].Files)
	}
	if info, err := os.Stat(done[1].Files["tool_linux_amd64"]); err != nil || info.Mode()&0o100 == 0 {
		t.Errorf("installed program: %v, %v; want an executable file", info, err)
	}
	if again, err := a.Update(ctx); err != nil || len(again) != 0 {
		t.Errorf("second update = %+v, %v; want nothing new", again, err)
	}

	// Version 2 arrives as a delta and must equal the signed database.
	v2 := compile(t, 2, map[string]string{"a.hdb": rulesV2, "b.ndb": bodyV2})
	publish(t, p, "sample-ruledb", "2", map[string][]byte{"sample": v2})
	done, err = a.Update(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 1 || done[0].Version != "2" || len(done[0].Delta) != 1 {
		t.Fatalf("update to 2 = %+v, want sample-ruledb 2 by delta", done)
	}
	got, err := os.ReadFile(done[0].Files["sample"])
	if err != nil || string(got) != string(v2) {
		t.Fatalf("installed database differs from the published one (%v)", err)
	}
	base := filepath.Dir(filepath.Dir(done[0].Files["sample"]))
	for link, want := range map[string]string{"current": "2", "previous": "1"} {
		if v, err := os.Readlink(filepath.Join(base, link)); err != nil || v != want {
			t.Errorf("%s -> %q (%v), want %s", link, v, err, want)
		}
	}
	// Nothing but the layout: the downloads are written once, at the
	// install, and no copy of them is kept.
	top, err := os.ReadDir(filepath.Dir(filepath.Dir(base)))
	if err != nil {
		t.Fatal(err)
	}
	var entries []string
	for _, e := range top {
		entries = append(entries, e.Name())
	}
	if got, want := strings.Join(entries, " "), "identity.json installed trust.json tuf"; got != want {
		t.Errorf("agent directory holds %q, want %q", got, want)
	}

	// Scanning: the EICAR file is found by its hash and its body, a
	// clean file is not.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "eicar.com"), []byte(eicar), 0o644)
	os.WriteFile(filepath.Join(dir, "clean.txt"), []byte("nothing to see"), 0o644)
	var files int
	ds, err := a.Scan(ctx, []string{dir}, 0, func(r scan.Result) { files++ })
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, d := range ds {
		if filepath.Base(d.Path) != "eicar.com" || d.RuleDB != 2 || d.Size != 68 {
			t.Errorf("detection %+v, want eicar.com with database 2", d)
		}
		names[d.Signature] = true
	}
	if files != 2 || !names["Test.EICAR-MD5"] || !names["Test.EICAR-Body"] || len(names) != 2 {
		t.Errorf("scanned %d files, detections %v; want 2 files and both EICAR signatures", files, names)
	}
	if err := a.Report(ctx, ds); err != nil {
		t.Fatalf("report: %v", err)
	}
}

// TestAgentNeedsRuleDB: scanning before any database is installed says so.
func TestAgentNeedsRuleDB(t *testing.T) {
	p, _ := testPlatform(t)
	a := register(t, p, "BR")
	if a.Identity().Region != "moscow" {
		t.Errorf("BR's home region = %s, want moscow", a.Identity().Region)
	}
	if _, err := a.Scan(context.Background(), []string{t.TempDir()}, 0, nil); !errors.Is(err, agent.ErrNoRuleDB) {
		t.Errorf("scan without a database = %v, want ErrNoRuleDB", err)
	}
}

// TestAgentScanMatchesClamscan installs the repository's sample rule
// database through the agent and scans files with `vitrine agent scan`'s
// engine: it finds exactly what ClamAV's clamscan finds with the same rule
// sources on the same files.
func TestAgentScanMatchesClamscan(t *testing.T) {
	clam, err := exec.LookPath("clamscan")
	if err != nil {
		t.Skip("clamscan not installed (Debian package clamav); .ci/run installs it")
	}
	ctx := context.Background()
	rules := filepath.Join("..", "ruledb", "testdata", "sample")
	srcs, err := ruledb.LoadDir(rules)
	if err != nil {
		t.Fatal(err)
	}
	db, err := ruledb.Compile(srcs, 1)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := testPlatform(t)
	publish(t, p, "sample-ruledb", "1", map[string][]byte{"sample": db})
	a := register(t, p, "CH")
	if _, err := a.Update(ctx); err != nil {
		t.Fatal(err)
	}

	// EICAR, variants that only some signatures match, a PE stub, and
	// files that match nothing.
	dir := t.TempDir()
	pe := append([]byte{0x4d, 0x5a, 0x90, 0x00}, make([]byte, 56)...)
	pe = append(pe, 'P', 'E', 0, 0)
	files := map[string]string{
		"eicar.com":         eicar,
		"eicar-padded.txt":  "header line\n" + eicar + "\ntrailer\n",
		"eicar-alt.bin":     strings.Replace(eicar, "-ANTIVIRUS-", "_ANTIVIRUS-", 1),
		"eicar-gap.bin":     strings.Replace(eicar, `\PZX54`, `\ABX54`, 1),
		"eicar-broken.bin":  strings.Replace(eicar, "EICAR", "EICAX", 1),
		"pe-stub.exe":       string(pe),
		"pe-stub-late.bin":  "xx" + string(pe),
		"clean.txt":         "nothing to see here\n",
		"standard-eicar.md": "EICAR then STANDARD",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := a.Scan(ctx, []string{dir}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	for _, d := range ds {
		ours = append(ours, filepath.Base(d.Path)+": "+d.Signature)
	}
	found, _, err := clamav.Scan(ctx, clam, rules, dir)
	if err != nil {
		t.Fatal(err)
	}
	var theirs []string
	for _, f := range found {
		theirs = append(theirs, strings.TrimPrefix(f, dir+string(filepath.Separator)))
	}
	slices.Sort(ours)
	slices.Sort(theirs)
	if len(theirs) < 10 {
		t.Fatalf("clamscan found too little to compare (%d): %s", len(theirs), theirs)
	}
	t.Logf("clamscan: %s", strings.Join(theirs, "; "))
	if !slices.Equal(ours, theirs) {
		t.Errorf("the agent found\n  %s\nclamscan found\n  %s", strings.Join(ours, "\n  "), strings.Join(theirs, "\n  "))
	}
}

// TestRegisterChecksToken: the agent pins the platform's endpoint-token key
// at registration and checks that the token it was given is signed by it;
// a platform whose discovery document names another key is refused.
func TestRegisterChecksToken(t *testing.T) {
	p, _ := testPlatform(t)
	a := register(t, p, "DE")
	if got, want := a.Pinned().EndpointKey, p.Discovery().EndpointKey; got == "" || got != want {
		t.Errorf("pinned endpoint key %q, want the platform's %q", got, want)
	}

	_, other, err := note.GenerateKey(rand.Reader, "vitrine.local/endpoints")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(p.URL())
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(r *http.Response) error {
		if r.Request.URL.Path != "/.well-known/vitrine.json" {
			return nil
		}
		var d map[string]any
		if err := json.NewDecoder(r.Body).Decode(&d); err != nil {
			return err
		}
		r.Body.Close()
		d["endpoint_key"] = other
		b, _ := json.Marshal(d)
		r.Body = io.NopCloser(bytes.NewReader(b))
		r.ContentLength = int64(len(b))
		r.Header.Del("Content-Length")
		return nil
	}
	srv := httptest.NewServer(rp)
	defer srv.Close()
	dir := filepath.Join(t.TempDir(), "agent")
	_, err = agent.Register(context.Background(), dir, srv.URL, p.OperatorToken(), "DE", nil)
	if err == nil || !strings.Contains(err.Error(), "the token the platform gave") {
		t.Fatalf("registering with a platform whose token key is not the published one: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "identity.json")); err == nil {
		t.Error("the refused registration was kept")
	}
}

// TestOpenOldTrust: an agent registered before it kept client.Pins opens
// with its old trust.json, trusting the same keys, and the file is
// rewritten as pins.
func TestOpenOldTrust(t *testing.T) {
	p, _ := testPlatform(t)
	dir := filepath.Join(t.TempDir(), "agent")
	a, err := agent.Register(context.Background(), dir, p.URL(), p.OperatorToken(), "DE", nil)
	if err != nil {
		t.Fatal(err)
	}
	pin := a.Pinned()
	old, _ := json.Marshal(map[string]any{"platform": pin.Platform, "updates_url": pin.UpdatesURL, "root": pin.TUFRoot, "release_key": pin.ReleaseKey,
		"release_log_vkey": pin.LogKeys["release"], "witness_policy": pin.WitnessPolicy})
	if err := os.WriteFile(filepath.Join(dir, "trust.json"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := agent.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := b.Pinned()
	if got.LogKeys["release"] != pin.LogKeys["release"] || got.ReleaseKey != pin.ReleaseKey || got.WitnessPolicy != pin.WitnessPolicy ||
		compact(t, got.TUFRoot) != compact(t, pin.TUFRoot) || got.UpdatesURL != pin.UpdatesURL || got.Platform != pin.Platform {
		t.Errorf("opened the old trust as %+v, want %+v", got, pin)
	}
	f, _ := os.ReadFile(filepath.Join(dir, "trust.json"))
	if !strings.Contains(string(f), `"log_keys"`) || strings.Contains(string(f), "release_log_vkey") {
		t.Errorf("trust.json was not rewritten as pins:\n%s", f)
	}
	if _, err := agent.Open(dir); err != nil {
		t.Errorf("opening the rewritten trust: %v", err)
	}
}

func compact(t *testing.T, b []byte) string {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatal(err)
	}
	return out.String()
}
