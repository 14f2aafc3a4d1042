package tufrepo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/tlog"
	"github.com/vitrine-dev/vitrine/update"
)

const testToken = "operator-token"

// testRepo is a repository served over HTTP as the platform serves it.
type testRepo struct {
	t       testing.TB
	dir     string
	offline string
	repo    *Repo
	srv     *httptest.Server
	release Signer
	// files are the bytes of every target added, by name.
	files map[string][]byte
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newTestRepo opens a repository that makes its own root (3 keys,
// threshold 2) in an offline directory, like `vitrine up`.
func newTestRepo(t testing.TB, exp Expiry) *testRepo {
	t.Helper()
	tr := &testRepo{t: t, dir: t.TempDir(), offline: t.TempDir(), release: KeySigner(newKey(t)), files: map[string][]byte{}}
	tr.open(exp)
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tr.routes().ServeHTTP(w, r) }))
	t.Cleanup(tr.srv.Close)
	return tr
}

func (tr *testRepo) open(exp Expiry) {
	tr.t.Helper()
	r, err := Open(context.Background(), Config{Dir: tr.dir, OfflineDir: tr.offline, TargetsKey: tr.release, Expiry: exp, Logger: quietLogger()})
	if err != nil {
		tr.t.Fatal(err)
	}
	tr.repo = r
}

func (tr *testRepo) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/updates/", http.StripPrefix("/updates", tr.repo.Handler()))
	mux.Handle("POST /updates/root", tr.repo.RootHandler(func(r *http.Request) bool {
		return r.Header.Get("Authorization") == "Bearer "+testToken
	}))
	return mux
}

func (tr *testRepo) url() string { return tr.srv.URL + "/updates" }

// testProof is a syntactically valid tlog-proof; the repository does not
// verify proofs, the agent does.
func testProof(index uint64) []byte {
	return (&tlog.Proof{Index: index, Hashes: [][]byte{bytes.Repeat([]byte{7}, 32)}, Checkpoint: []byte("example.com/log\n9\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— example.com/log AAAAAA==\n")}).Marshal()
}

// addRelease adds a release of the given files, with deltas.
func (tr *testRepo) addRelease(name, version string, index uint64, files map[string][]byte, deltas ...Delta) error {
	tr.t.Helper()
	env := []byte(fmt.Sprintf(`{"payloadType":"application/vnd.in-toto+json","payload":"%s-%s","signatures":[]}`, name, version))
	e := &release.Entry{Name: name, Version: version, Envelope: release.Digest(env)}
	for n, b := range files {
		e.Artifacts = append(e.Artifacts, release.Artifact{Name: n, SHA256: strings.TrimPrefix(release.Digest(b), "sha256:")})
	}
	entry, err := e.Marshal()
	if err != nil {
		tr.t.Fatal(err)
	}
	err = tr.repo.AddRelease(context.Background(), &Release{Name: name, Version: version, Files: files, Envelope: env, Entry: entry, LogIndex: index, Proof: testProof(index), Deltas: deltas})
	if err == nil {
		for n, b := range files {
			tr.files[name+"/"+version+"/"+n] = b
		}
		tr.files[name+"/"+version+"/provenance.json"] = env
		tr.files[name+"/"+version+"/release.json"] = entry
		for _, d := range deltas {
			tr.files[name+"/"+version+"/"+d.Artifact+".delta-"+d.From] = d.Data
		}
	}
	return err
}

// tufClient is an endpoint running go-tuf's client: an Updater serves one
// refresh, so each run makes a new one that trusts the latest root the
// previous runs stored (root.json in its metadata directory), or the
// discovered root the first time.
type tufClient struct {
	t                  testing.TB
	tr                 *testRepo
	root               []byte
	metaDir, targetDir string
}

// client returns an endpoint that starts from root.
func (tr *testRepo) client(root []byte) *tufClient {
	return &tufClient{t: tr.t, tr: tr, root: root, metaDir: tr.t.TempDir(), targetDir: tr.t.TempDir()}
}

// next returns the updater for the client's next run.
func (c *tufClient) next() *updater.Updater {
	c.t.Helper()
	root, err := os.ReadFile(filepath.Join(c.metaDir, "root.json"))
	if err != nil {
		root = c.root
	}
	cfg, err := config.New(c.tr.url(), root)
	if err != nil {
		c.t.Fatal(err)
	}
	cfg.LocalMetadataDir, cfg.LocalTargetsDir = c.metaDir, c.targetDir
	u, err := updater.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	return u
}

// fetchAll refreshes u and downloads and checks every target.
func (tr *testRepo) fetchAll(u *updater.Updater) {
	tr.t.Helper()
	if err := u.Refresh(); err != nil {
		tr.t.Fatalf("go-tuf refresh: %v", err)
	}
	targets := u.GetTopLevelTargets()
	if len(targets) != len(tr.files) {
		tr.t.Errorf("the client sees %d targets, want %d", len(targets), len(tr.files))
	}
	for name, want := range tr.files {
		info, err := u.GetTargetInfo(name)
		if err != nil {
			tr.t.Fatalf("target %s: %v", name, err)
		}
		_, got, err := u.DownloadTarget(info, "", "")
		if err != nil {
			tr.t.Fatalf("downloading %s: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			tr.t.Errorf("target %s: got %q, want %q", name, got, want)
		}
		if info.Custom == nil {
			tr.t.Fatalf("target %s has no custom metadata", name)
		}
		c, err := update.ParseCustom(*info.Custom)
		if err != nil {
			tr.t.Fatalf("target %s: %v", name, err)
		}
		if parts := strings.SplitN(name, "/", 3); c.Release != parts[0] || c.Version != parts[1] {
			tr.t.Errorf("target %s: custom names %s %s", name, c.Release, c.Version)
		}
	}
}

func (tr *testRepo) served(name string) []byte {
	tr.t.Helper()
	resp, err := http.Get(tr.url() + "/" + name)
	if err != nil {
		tr.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		tr.t.Fatalf("GET %s: %s: %s", name, resp.Status, b)
	}
	return b
}

func (tr *testRepo) postRoot(body []byte, token string) (int, string) {
	tr.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, tr.url()+"/root", bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tr.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (tr *testRepo) rootKeys() []ed25519.PrivateKey {
	tr.t.Helper()
	keys, err := LoadRootKeys(tr.offline)
	if err != nil {
		tr.t.Fatal(err)
	}
	return keys
}

func TestClientDownloadsEveryTarget(t *testing.T) {
	tr := newTestRepo(t, Expiry{})
	if err := tr.addRelease("vitrine", "0.1.0", 0, map[string][]byte{"vitrine_linux_amd64": []byte("binary one"), "vitrine_darwin_arm64": []byte("binary two")}); err != nil {
		t.Fatal(err)
	}
	if err := tr.addRelease("sample-ruledb", "2", 1, map[string][]byte{"sample": []byte("db v2")}); err != nil {
		t.Fatal(err)
	}
	if err := tr.addRelease("sample-ruledb", "3", 2, map[string][]byte{"sample": []byte("db v3")}, Delta{Artifact: "sample", From: "2", Data: []byte("delta 2->3")}); err != nil {
		t.Fatal(err)
	}
	tr.fetchAll(tr.client(tr.repo.Root()).next())

	// The custom metadata is exactly what the agent expects.
	u := tr.client(tr.repo.Root()).next()
	info, err := u.GetTargetInfo("sample-ruledb/3/sample.delta-2")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"vitrine":{"release":"sample-ruledb","version":"3","delta_from":"2","full":"sample-ruledb/3/sample","full_sha256":"` + sha256hex([]byte("db v3")) + `"}}`
	if got := string(*info.Custom); got != want {
		t.Errorf("delta custom:\n got %s\nwant %s", got, want)
	}
	info, err = u.GetTargetInfo("vitrine/0.1.0/vitrine_linux_amd64")
	if err != nil {
		t.Fatal(err)
	}
	c, err := update.ParseCustom(*info.Custom)
	if err != nil {
		t.Fatal(err)
	}
	if c.LogIndex != 0 || c.Proof != string(testProof(0)) || !strings.HasPrefix(c.Provenance, "sha256:") {
		t.Errorf("artifact custom: %+v", c)
	}
	// The hash-prefixed layout is go-tuf's: targets/<release>/<version>/<sha256>.<file>.
	tr.served("targets/vitrine/0.1.0/" + sha256hex([]byte("binary one")) + ".vitrine_linux_amd64")

	if err := tr.addRelease("vitrine", "0.1.0", 3, map[string][]byte{"vitrine_linux_amd64": []byte("other")}); err == nil {
		t.Error("adding a release twice succeeded")
	}
}

func TestAddReleaseRefusesInconsistentInput(t *testing.T) {
	tr := newTestRepo(t, Expiry{})
	before := tr.served("timestamp.json")
	files := map[string][]byte{"a": []byte("a")}
	env := []byte("envelope")
	entry, err := (&release.Entry{Name: "x", Version: "1", Envelope: release.Digest(env), Artifacts: []release.Artifact{{Name: "a", SHA256: sha256hex([]byte("a"))}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	ok := Release{Name: "x", Version: "1", Files: files, Envelope: env, Entry: entry, LogIndex: 4, Proof: testProof(4)}
	for name, change := range map[string]func(*Release){
		"other file":         func(r *Release) { r.Files = map[string][]byte{"a": []byte("b")} },
		"other envelope":     func(r *Release) { r.Envelope = []byte("other") },
		"other version":      func(r *Release) { r.Version = "2" },
		"proof of other idx": func(r *Release) { r.Proof = testProof(5) },
		"garbage proof":      func(r *Release) { r.Proof = []byte("no") },
		"delta of nothing":   func(r *Release) { r.Deltas = []Delta{{Artifact: "b", From: "0", Data: []byte("d")}} },
		"delta from itself":  func(r *Release) { r.Deltas = []Delta{{Artifact: "a", From: "1", Data: []byte("d")}} },
	} {
		r := ok
		change(&r)
		if err := tr.repo.AddRelease(context.Background(), &r); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if after := tr.served("timestamp.json"); !bytes.Equal(before, after) {
		t.Error("a refused release changed the timestamp")
	}
}

func TestRestartServesSameMetadata(t *testing.T) {
	tr := newTestRepo(t, Expiry{})
	if err := tr.addRelease("vitrine", "1", 0, map[string][]byte{"bin": []byte("x")}); err != nil {
		t.Fatal(err)
	}
	names := []string{"root.json", "1.root.json", "timestamp.json", "2.snapshot.json", "2.targets.json"}
	before := map[string][]byte{}
	for _, n := range names {
		before[n] = tr.served(n)
	}
	initial := tr.repo.Root()
	tr.open(Expiry{})
	for _, n := range names {
		if got := tr.served(n); !bytes.Equal(got, before[n]) {
			t.Errorf("%s changed across a restart", n)
		}
	}
	tr.fetchAll(tr.client(initial).next())

	// Given the root it holds, it opens; given another, it refuses.
	if _, err := Open(context.Background(), Config{Dir: tr.dir, Root: initial, TargetsKey: tr.release, Logger: quietLogger()}); err != nil {
		t.Errorf("reopening with its own root: %v", err)
	}
	other, err := Init(InitConfig{Dir: t.TempDir(), Online: tr.repo.Online()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), Config{Dir: tr.dir, Root: other, TargetsKey: tr.release, Logger: quietLogger()}); err == nil {
		t.Error("reopening with another root succeeded")
	}
}

func TestRootRotation(t *testing.T) {
	tr := newTestRepo(t, Expiry{})
	if err := tr.addRelease("vitrine", "1", 0, map[string][]byte{"bin": []byte("x")}); err != nil {
		t.Fatal(err)
	}
	early := tr.client(tr.repo.Root())
	tr.fetchAll(early.next()) // a client that trusts version 1

	// Version 2 replaces the three root keys by two new ones, threshold 2.
	newKeys, err := NewRootKeys(t.TempDir(), 2)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := Rotate(Rotation{Current: tr.repo.LatestRoot(), Keys: tr.rootKeys(), NewKeys: newKeys, Threshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := tr.postRoot(v2, testToken); code != http.StatusOK {
		t.Fatalf("POST /updates/root: %d %s", code, body)
	}
	// Version 3 needs the new keys: the old ones no longer sign.
	if _, err := Rotate(Rotation{Current: v2, Keys: tr.rootKeys()}); err == nil {
		t.Error("the old root keys signed version 3")
	}
	v3, err := Rotate(Rotation{Current: v2, Keys: newKeys})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := tr.postRoot(v3, testToken); code != http.StatusOK {
		t.Fatalf("POST /updates/root: %d %s", code, body)
	}

	for name, u := range map[string]*updater.Updater{"early client": early.next(), "new client": tr.client(tr.repo.Root()).next()} {
		tr.fetchAll(u)
		if v := u.GetTrustedMetadataSet().Root.Signed.Version; v != 3 {
			t.Errorf("%s trusts root version %d, want 3", name, v)
		}
	}
	if !bytes.Equal(tr.served("root.json"), v3) || !bytes.Equal(tr.served("2.root.json"), v2) {
		t.Error("root.json is not the latest root or 2.root.json is not version 2")
	}
	if !bytes.Equal(tr.repo.Root(), tr.served("1.root.json")) {
		t.Error("Root() is not the initial root")
	}
	// A restart keeps the chain.
	tr.open(Expiry{})
	tr.fetchAll(tr.client(tr.repo.Root()).next())
}

// forgeTargets signs targets, snapshot and timestamp as an attacker who
// holds targetsKey and the online keys (a compromised server) would, adding
// an evil target, and returns the files to serve over the repository's.
func (tr *testRepo) forgeTargets(targetsKey ed25519.PrivateKey) map[string][]byte {
	tr.t.Helper()
	ctx := context.Background()
	r := tr.repo
	r.mu.Lock()
	defer r.mu.Unlock()
	targets := metadata.Targets(time.Now().Add(time.Hour).UTC().Truncate(time.Second))
	targets.Signed.Version = r.targets.Signed.Version + 1
	for n, tf := range r.targets.Signed.Targets {
		targets.Signed.Targets[n] = tf
	}
	evil := []byte("evil")
	tf, err := metadata.TargetFile().FromBytes("vitrine/9/bin", evil, "sha256")
	if err != nil {
		tr.t.Fatal(err)
	}
	targets.Signed.Targets["vitrine/9/bin"] = tf
	if _, err := targets.Sign(tufSigner{ctx, KeySigner(targetsKey)}); err != nil {
		tr.t.Fatal(err)
	}
	tb, _ := targets.ToBytes(false)
	snap := metadata.Snapshot(time.Now().Add(time.Hour).UTC().Truncate(time.Second))
	snap.Signed.Version = r.snapshot.Signed.Version + 1
	snap.Signed.Meta["targets.json"] = metaFile(targets.Signed.Version, tb)
	if _, err := snap.Sign(tufSigner{ctx, r.snapshotKey}); err != nil {
		tr.t.Fatal(err)
	}
	sb, _ := snap.ToBytes(false)
	ts := metadata.Timestamp(time.Now().Add(time.Hour).UTC().Truncate(time.Second))
	ts.Signed.Version = r.timestamp.Signed.Version + 1
	ts.Signed.Meta["snapshot.json"] = metaFile(snap.Signed.Version, sb)
	if _, err := ts.Sign(tufSigner{ctx, r.timestampKey}); err != nil {
		tr.t.Fatal(err)
	}
	tsb, _ := ts.ToBytes(false)
	return map[string][]byte{
		"/updates/timestamp.json":                                       tsb,
		fmt.Sprintf("/updates/%d.snapshot.json", snap.Signed.Version):   sb,
		fmt.Sprintf("/updates/%d.targets.json", targets.Signed.Version): tb,
		"/updates/targets/vitrine/9/" + sha256hex(evil) + ".bin":        evil,
	}
}

// serveOver serves files over the repository until the test ends or the
// returned function is called.
func (tr *testRepo) serveOver(files map[string][]byte) func() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b, ok := files[r.URL.Path]; ok {
			w.Write(b)
			return
		}
		tr.routes().ServeHTTP(w, r)
	}))
	tr.t.Cleanup(srv.Close)
	old := tr.srv
	tr.srv = srv
	return func() { tr.srv = old }
}

func TestRevokeCompromisedTargetsKey(t *testing.T) {
	tr := newTestRepo(t, Expiry{})
	if err := tr.addRelease("vitrine", "1", 0, map[string][]byte{"bin": []byte("x")}); err != nil {
		t.Fatal(err)
	}
	oldKey := tr.release.(keySigner)
	early := tr.client(tr.repo.Root())
	tr.fetchAll(early.next())

	// Before the rotation, the old key's forgery passes: the test's attack
	// is real.
	restore := tr.serveOver(tr.forgeTargets(ed25519.PrivateKey(oldKey)))
	probe := tr.client(tr.repo.Root()).next()
	if err := probe.Refresh(); err != nil {
		t.Fatalf("a forgery with the current targets key is refused before any rotation: %v", err)
	}
	if _, err := probe.GetTargetInfo("vitrine/9/bin"); err != nil {
		t.Fatalf("the forged target is not there: %v", err)
	}
	restore()

	// Rotate to a new targets key. The platform does not hold it yet: 409.
	newTargets := newKey(t)
	v2, err := Rotate(Rotation{Current: tr.repo.LatestRoot(), Keys: tr.rootKeys(), Online: Online{Targets: newTargets.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	before := tr.served("timestamp.json")
	if code, body := tr.postRoot(v2, testToken); code != http.StatusConflict {
		t.Fatalf("a root naming a targets key the platform lacks: %d %s, want 409", code, body)
	}
	if !bytes.Equal(before, tr.served("timestamp.json")) || bytes.Equal(tr.served("root.json"), v2) {
		t.Fatal("a refused root changed the repository")
	}
	// Put the new key in place; now the root is taken and targets re-signed.
	if err := os.WriteFile(filepath.Join(tr.dir, "targets.key"), pemPrivate(t, newTargets), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, body := tr.postRoot(v2, testToken); code != http.StatusOK {
		t.Fatalf("POST /updates/root: %d %s", code, body)
	}
	tr.fetchAll(early.next())
	tr.fetchAll(tr.client(tr.repo.Root()).next())

	// Targets signed with the revoked key are refused by every client.
	tr.serveOver(tr.forgeTargets(ed25519.PrivateKey(oldKey)))
	for name, u := range map[string]*updater.Updater{"early client": early.next(), "new client": tr.client(tr.repo.Root()).next()} {
		err := u.Refresh()
		if err == nil {
			_, err = u.GetTargetInfo("vitrine/9/bin")
		}
		if err == nil {
			t.Errorf("%s accepted targets signed with the revoked key", name)
		} else {
			t.Logf("%s refuses: %v", name, err)
		}
	}

	// After a restart the platform still signs with the new key.
	restore()
	tr.open(Expiry{})
	if err := tr.addRelease("vitrine", "2", 1, map[string][]byte{"bin": []byte("y")}); err != nil {
		t.Fatal(err)
	}
	tr.fetchAll(tr.client(tr.repo.Root()).next())
}

func TestPostRootRefused(t *testing.T) {
	tr := newTestRepo(t, Expiry{})
	cur := tr.repo.LatestRoot()
	stranger, err := Init(InitConfig{Dir: t.TempDir(), Online: tr.repo.Online()})
	if err != nil {
		t.Fatal(err)
	}
	// A version 2 signed only by keys the current root does not name.
	strangerKeys, err := NewRootKeys(t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	forged := resign(t, cur, strangerKeys)
	skip, err := Rotate(Rotation{Current: cur, Keys: tr.rootKeys()})
	if err != nil {
		t.Fatal(err)
	}
	skip3, err := Rotate(Rotation{Current: skip, Keys: tr.rootKeys()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Rotate(Rotation{Current: cur, Keys: tr.rootKeys(), Expires: time.Now().Add(-time.Hour)}); err == nil {
		t.Error("Rotate made an expired root")
	}
	if _, err := Rotate(Rotation{Current: cur, Keys: tr.rootKeys()[:1]}); err == nil {
		t.Error("Rotate signed with fewer keys than the threshold")
	}
	underSigned := stripSignatures(t, skip, 1)

	before := tr.served("timestamp.json")
	for _, c := range []struct {
		name  string
		body  []byte
		token string
		want  int
	}{
		{"no token", skip, "", http.StatusUnauthorized},
		{"wrong token", skip, "nope", http.StatusUnauthorized},
		{"garbage", []byte("garbage"), testToken, http.StatusBadRequest},
		{"empty", nil, testToken, http.StatusBadRequest},
		{"a targets file", tr.served("1.targets.json"), testToken, http.StatusBadRequest},
		{"the current root again", cur, testToken, http.StatusForbidden},
		{"version 3 skipping 2", skip3, testToken, http.StatusForbidden},
		{"signed by strangers", forged, testToken, http.StatusForbidden},
		{"under the threshold", underSigned, testToken, http.StatusForbidden},
		{"another repository's root", stranger, testToken, http.StatusForbidden},
		{"too large", bytes.Repeat([]byte(" "), MaxRootSize+1), testToken, http.StatusRequestEntityTooLarge},
	} {
		if code, body := tr.postRoot(c.body, c.token); code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, code, body, c.want)
		}
	}
	if !bytes.Equal(before, tr.served("timestamp.json")) || !bytes.Equal(cur, tr.served("root.json")) {
		t.Error("a refused root changed the repository")
	}
	if _, err := os.Stat(filepath.Join(tr.dir, "metadata", "2.root.json")); err == nil {
		t.Error("a refused root was stored")
	}
	// The proper version 2 is still taken afterwards.
	if code, body := tr.postRoot(skip, testToken); code != http.StatusOK {
		t.Errorf("version 2: %d %s", code, body)
	}
}

// resign returns the root after cur, signed only by keys.
func resign(t *testing.T, cur []byte, keys []ed25519.PrivateKey) []byte {
	t.Helper()
	root, err := metadata.Root().FromBytes(cur)
	if err != nil {
		t.Fatal(err)
	}
	root.ClearSignatures()
	root.Signed.Version++
	b, err := signRoot(root, keys)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stripSignatures keeps only the first n signatures of a root.
func stripSignatures(t *testing.T, b []byte, n int) []byte {
	t.Helper()
	root, err := metadata.Root().FromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	root.Signatures = root.Signatures[:n]
	out, err := root.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sha256hex(b []byte) string { return strings.TrimPrefix(release.Digest(b), "sha256:") }

func pemPrivate(t *testing.T, k ed25519.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestTimestampResignedBeforeExpiry(t *testing.T) {
	exp := Expiry{Targets: time.Hour, Snapshot: 4 * time.Second, Timestamp: 2 * time.Second}
	tr := newTestRepo(t, exp)
	if err := tr.addRelease("vitrine", "1", 0, map[string][]byte{"bin": []byte("x")}); err != nil {
		t.Fatal(err)
	}
	tr.repo.mu.Lock()
	ts0, snap0 := tr.repo.timestamp.Signed, tr.repo.snapshot.Signed
	tr.repo.mu.Unlock()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.repo.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		tr.repo.mu.Lock()
		ts, snap := tr.repo.timestamp.Signed, tr.repo.snapshot.Signed
		tr.repo.mu.Unlock()
		if ts.Version > ts0.Version && snap.Version > snap0.Version && ts.Expires.After(snap0.Expires) {
			if !ts.Expires.After(ts0.Expires) {
				t.Fatalf("timestamp %d expires %s, not after %s", ts.Version, ts.Expires, ts0.Expires)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("timestamp still version %d, snapshot %d", ts.Version, snap.Version)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A client at a time past the first timestamp's and snapshot's expiry
	// still gets a valid repository.
	u := tr.client(tr.repo.Root()).next()
	u.UnsafeSetRefTime(snap0.Expires.Add(time.Second))
	tr.fetchAll(u)
}

func TestHandlerServesNoKeys(t *testing.T) {
	tr := newTestRepo(t, Expiry{})
	for _, p := range []string{"snapshot.key", "timestamp.key", "../snapshot.key", "targets/../snapshot.key", "targets/..%2fsnapshot.key", "metadata/timestamp.json", "0.root.json", "01.root.json", "targets/"} {
		resp, err := http.Get(tr.url() + "/" + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || bytes.Contains(b, []byte("PRIVATE")) {
			t.Errorf("GET %s: %s", p, resp.Status)
		}
	}
	resp, err := http.Post(tr.url()+"/timestamp.json", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST timestamp.json: %s", resp.Status)
	}
}

// TestIndex: GET /updates/ (advertised in the banner and discovery) says
// what the repository holds instead of a 404, and every metadata file it
// lists is served.
func TestIndex(t *testing.T) {
	tr := newTestRepo(t, Expiry{})
	resp, err := http.Get(tr.url() + "/")
	if err != nil {
		t.Fatal(err)
	}
	var idx Index
	err = json.NewDecoder(resp.Body).Decode(&idx)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("GET /: %s, %v", resp.Status, err)
	}
	if !slices.Contains(idx.Metadata, "1.root.json") || !slices.Contains(idx.Metadata, "timestamp.json") || idx.Root != "root.json" {
		t.Errorf("index %+v lacks the root or the timestamp", idx)
	}
	for _, m := range append(idx.Metadata, idx.Root) {
		resp, err := http.Get(tr.url() + "/" + m)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("listed %s: %s", m, resp.Status)
		}
	}
}

func TestInitWritesOfflineKeys(t *testing.T) {
	dir := t.TempDir()
	online := Online{Targets: newKey(t).Public().(ed25519.PublicKey), Snapshot: newKey(t).Public().(ed25519.PublicKey), Timestamp: newKey(t).Public().(ed25519.PublicKey)}
	b, err := Init(InitConfig{Dir: dir, Keys: 3, Threshold: 2, Online: online})
	if err != nil {
		t.Fatal(err)
	}
	root, err := parseRoot(b)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := LoadRootKeys(dir)
	if err != nil || len(keys) != 3 {
		t.Fatalf("%d root keys, %v", len(keys), err)
	}
	if r := root.Signed.Roles[metadata.ROOT]; r.Threshold != 2 || len(r.KeyIDs) != 3 || !root.Signed.ConsistentSnapshot || root.Signed.Version != 1 {
		t.Errorf("root: %+v", root.Signed)
	}
	for _, k := range keys {
		st, err := os.Stat(filepath.Join(dir, "root-"+KeyID(k.Public().(ed25519.PublicKey))[:16]+".key"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("root key file: %v %v", st, err)
		}
	}
	if !slices.Contains(root.Signed.Roles[metadata.TARGETS].KeyIDs, KeyID(online.Targets)) {
		t.Error("the targets role does not name the targets key")
	}
	if _, err := Init(InitConfig{Dir: dir, Online: online}); err == nil {
		t.Error("Init wrote over a directory holding a root")
	}
}

// TestReplaceTimestampKey: a root naming a new timestamp key is refused
// until the key is in <dir>/timestamp.key, then taken without a restart;
// the timestamp is signed with the new key from then on, clients follow,
// and a restart keeps it.
func TestReplaceTimestampKey(t *testing.T) {
	tr := newTestRepo(t, Expiry{})
	if err := tr.addRelease("vitrine", "1", 0, map[string][]byte{"bin": []byte("x")}); err != nil {
		t.Fatal(err)
	}
	early := tr.client(tr.repo.Root())
	tr.fetchAll(early.next())

	newTS := newKey(t)
	v2, err := Rotate(Rotation{Current: tr.repo.LatestRoot(), Keys: tr.rootKeys(), Online: Online{Timestamp: newTS.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := tr.postRoot(v2, testToken); code != http.StatusConflict {
		t.Fatalf("a root naming a timestamp key the platform lacks: %d %s, want 409", code, body)
	}
	if err := os.WriteFile(filepath.Join(tr.dir, "timestamp.key"), pemPrivate(t, newTS), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, body := tr.postRoot(v2, testToken); code != http.StatusOK {
		t.Fatalf("POST /updates/root: %d %s", code, body)
	}
	check := func() {
		t.Helper()
		ts, err := metadata.Timestamp().FromBytes(tr.served("timestamp.json"))
		if err != nil {
			t.Fatal(err)
		}
		if len(ts.Signatures) != 1 || ts.Signatures[0].KeyID != KeyID(newTS.Public().(ed25519.PublicKey)) {
			t.Errorf("timestamp signed by %v, want the new key only", ts.Signatures)
		}
		pub, err := os.ReadFile(filepath.Join(tr.dir, "timestamp.pub"))
		if err != nil || !bytes.Equal(pub, PublicPEM(newTS.Public().(ed25519.PublicKey))) {
			t.Errorf("timestamp.pub is not the new key's (%v)", err)
		}
	}
	check()
	tr.fetchAll(early.next())
	tr.open(Expiry{})
	if err := tr.addRelease("vitrine", "2", 1, map[string][]byte{"bin": []byte("y")}); err != nil {
		t.Fatal(err)
	}
	check()
	tr.fetchAll(early.next())
}
