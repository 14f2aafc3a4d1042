package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/release"

	"github.com/vitrine-dev/vitrine/internal/gotest"
	"github.com/vitrine-dev/vitrine/internal/platform"
)

// TestReleasesProcess runs the releases (the conveyer, the release key, the
// published releases and the update repository) in a process of their own
// (`vitrine serve --role releases`), beside the logs' process and the
// platform's, each from one configuration file. A rule database is built
// there; the platform's discovery document names that process's releases,
// release key and update root, and go-tuf's client verifies every update
// from discovery alone. An auditor's review goes through the platform,
// which reads the release from the releases process and checks it against
// the release log and the provenance: honest, it is recorded; when the
// releases process serves a doctored source archive or another entry, or
// is down, the review is refused with a 503 and nothing is logged.
func TestReleasesProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes; skipped in -short mode")
	}
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	coreData, logsData, relData := filepath.Join(dir, "core"), filepath.Join(dir, "logs"), filepath.Join(dir, "releases")
	coreAddr, logsAddr, relAddr := freeAddr(t), freeAddr(t), freeAddr(t)

	// The platform reaches the releases process through a proxy that
	// answers honestly until told to lie.
	var lie atomic.Value // "", "source", "entry", "unlogged", "other"
	lie.Store("")
	// unlogged is a release signed with the releases process's own key
	// but never logged: its entry and provenance, served in place of the
	// logged ones.
	var unlogged atomic.Pointer[[2][]byte]
	relURL, _ := url.Parse("http://" + relAddr)
	rp := httputil.NewSingleHostReverseProxy(relURL)
	rp.ModifyResponse = func(resp *http.Response) error {
		mode := lie.Load().(string)
		if mode == "" || resp.StatusCode != http.StatusOK {
			return nil
		}
		p := resp.Request.URL.Path
		if u := unlogged.Load(); mode == "unlogged" && u != nil && (strings.HasSuffix(p, "/release.json") || strings.HasSuffix(p, "/provenance.json")) {
			b := u[0]
			if strings.HasSuffix(p, "/provenance.json") {
				b = u[1]
			}
			resp.Body.Close()
			resp.Body = io.NopCloser(bytes.NewReader(b))
			resp.ContentLength = int64(len(b))
			resp.Header.Del("Content-Length")
			return nil
		}
		if mode == "source" && strings.HasSuffix(p, "/source.tar.gz") || mode == "entry" && strings.HasSuffix(p, "/release.json") {
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			resp.Body.Close()
			b = bytes.Clone(b)
			b[len(b)/2] ^= 1
			resp.Body = io.NopCloser(bytes.NewReader(b))
			resp.ContentLength = int64(len(b))
			resp.Header.Del("Content-Length")
		}
		return nil
	}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// "other": release 1 is asked for, release 2 is served.
		if lie.Load() == "other" {
			r.URL.Path = strings.Replace(r.URL.Path, "/1/", "/2/", 1)
		}
		rp.ServeHTTP(w, r)
	}))
	defer front.Close()

	cfg := map[string]any{
		"name": "releases.test", "data": coreData, "listen": coreAddr,
		"logs_url": "http://" + logsAddr, "logs_token": filepath.Join(logsData, "logs.token"),
		"releases_url":        front.URL,
		"build_source_roots":  gotest.SourceRoots(t),
		"tuf_offline":         filepath.Join(dir, "offline"),
		"checkpoint_interval": "200ms", "commitment_interval": "1h",
		"monitor": map[string]any{"off": true},
	}
	cfgFile := writeConfig(t, filepath.Join(dir, "vitrine.json"), cfg)
	logs := startServing(t, bin, logsAddr, "/readyz", http.StatusOK, "serve", "--config", cfgFile, "--role", "logs", "--listen", logsAddr, "--data", logsData)
	t.Cleanup(logs.kill)
	startReleases := func() *upProcess {
		return startServing(t, bin, relAddr, "/readyz", http.StatusOK, "serve", "--config", cfgFile, "--role", "releases", "--listen", relAddr, "--data", relData, "--public-url", front.URL)
	}
	rel := startReleases()
	t.Cleanup(func() { rel.kill() })
	core := startUpArgs(t, bin, coreAddr, "serve", "--config", cfgFile, "--role", "all")
	t.Cleanup(core.kill)

	// The platform holds no release key; discovery names the releases
	// process's.
	if _, err := os.Stat(filepath.Join(coreData, "release.key")); err == nil {
		t.Fatal("the platform's process made a release key")
	}
	var desc platform.ReleasesDescription
	gotest.Call(t, "GET", "http://"+relAddr+platform.ReleasesPath, "", "", "", &desc)
	d := discover(t, core.base)
	if d.Releases != desc.Releases || d.Updates.URL != front.URL+"/updates/" || !bytes.Equal(d.Updates.Root, desc.Updates.Root) {
		t.Fatalf("discovery lists releases %+v and updates at %s; the releases process describes %+v", d.Releases, d.Updates.URL, desc)
	}

	// A rule database built and published by the releases process, with
	// its own operator token; the platform's builds nothing.
	recipe := filepath.Join(dir, "recipe.json")
	if err := os.WriteFile(recipe, repoRecipe(t, "sample-ruledb.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runVitrine(t, bin, "build", "--url", front.URL, "--token", filepath.Join(relData, "operator.token"), "--json", recipe)
	if err != nil {
		t.Fatalf("build at the releases process: %v\n%s\n%s", err, out, rel.out)
	}
	var pub platform.Published
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &pub); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	var r2 map[string]any
	if err := json.Unmarshal(repoRecipe(t, "sample-ruledb.json"), &r2); err != nil {
		t.Fatal(err)
	}
	r2["version"] = "2"
	b2, _ := json.Marshal(r2)
	if err := os.WriteFile(recipe+"2", b2, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runVitrine(t, bin, "build", "--url", front.URL, "--token", filepath.Join(relData, "operator.token"), recipe+"2"); err != nil {
		t.Fatalf("build 2: %v\n%s", err, out)
	}
	// The platform's process builds and serves no release.
	for _, route := range [][2]string{{"POST", platform.BuildPath}, {"GET", "/releases/"}, {"GET", "/updates/1.root.json"}, {"POST", "/updates/root"}} {
		gotest.Call(t, route[0], core.base+route[1], strings.TrimSpace(string(mustRead(t, filepath.Join(coreData, "operator.token")))), "{}", "", nil, http.StatusNotFound)
	}
	if fi, err := os.Stat(filepath.Join(coreData, "releases.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the pinned description: %v %v", fi, err)
	}
	// go-tuf's client verifies every update from discovery alone.
	if out, err := runVitrine(t, bin, "tuf", "verify", "--platform", core.base); err != nil || !strings.Contains(out, pub.Name) {
		t.Fatalf("tuf verify: %v\n%s", err, out)
	}

	op, err := os.ReadFile(filepath.Join(coreData, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	var auditor struct{ Token string }
	gotest.Call(t, "POST", core.base+"/v1/principals", strings.TrimSpace(string(op)), `{"id":"auditor:ida","role":"auditor","location":"CH","regions":["zurich"]}`, "", &auditor)
	// review asks for a review naming files, and wants the status and,
	// in the answer, the text.
	review := func(files []string, want int, text string) {
		t.Helper()
		fj, _ := json.Marshal(files)
		body := `{"name":"` + pub.Name + `","version":"` + pub.Version + `","verdict":"approved","notes":"read it","files":` + string(fj) + `}`
		req, _ := http.NewRequest("POST", core.base+platform.ReviewPath, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+auditor.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || !strings.Contains(string(got), text) {
			t.Fatalf("review: %d %s, want %d …%s…", resp.StatusCode, got, want, text)
		}
	}
	reviews := func() int {
		l, err := d.OpenLog("review", []byte(d.WitnessPolicy), nil)
		if err != nil {
			t.Fatal(err)
		}
		entries, _, err := l.Entries(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	src, err := get(t.Context(), "http://"+relAddr+"/releases/"+pub.Name+"/"+pub.Version+"/source.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	file := firstFile(t, src)
	review([]string{file}, http.StatusCreated, `"index":`)
	// The releases process, holding the release key, signs a release of
	// the same name and version with other artifacts and serves it in
	// place of the logged one: only the release log tells them apart.
	key, err := release.LoadOrCreateKey(filepath.Join(relData, "release.key"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(src)
	arts := []release.Artifact{{Name: "sample", SHA256: strings.Repeat("ab", 32)}}
	stmt, err := release.Statement(arts, &release.Build{Recipe: json.RawMessage(`{}`), Source: "dir:.", Archive: hex.EncodeToString(sum[:]),
		Toolchain: "go1.26.8", BuilderID: front.URL + "/conveyer", InvocationID: "00", Started: time.Now().UTC(), Finished: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	env, err := release.Sign(t.Context(), key, stmt)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := (&release.Entry{Name: pub.Name, Version: pub.Version, Artifacts: arts, Envelope: release.Digest(env)}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	unlogged.Store(&[2][]byte{entry, env})
	for _, l := range []struct{ mode, text string }{
		{"source", "the source served has sha256"},
		{"entry", "is not the release log's entry 0"},
		{"unlogged", "is not the release log's entry 0"},
		{"other", "the release log's entry 1 is of another release"},
	} {
		lie.Store(l.mode)
		review([]string{file}, http.StatusBadGateway, l.text)
	}
	lie.Store("")
	rel.kill()
	review(nil, http.StatusServiceUnavailable, "")
	// Discovery is still served, from what the platform pinned.
	if d2 := discover(t, core.base); d2.Releases != d.Releases || !bytes.Equal(d2.Updates.Root, d.Updates.Root) {
		t.Fatalf("discovery with the releases process down: %+v", d2.Releases)
	}
	rel = startReleases()
	review(nil, http.StatusCreated, `"index":`)
	if n := reviews(); n != 2 {
		t.Fatalf("the review log holds %d reviews, want the 2 recorded", n)
	}
	// A releases process with another key (and another root): the
	// platform does not start against it.
	rel.kill()
	core.kill()
	cfg["tuf_offline"] = filepath.Join(dir, "offline-other")
	otherCfg := writeConfig(t, filepath.Join(dir, "other.json"), cfg)
	other := startServing(t, bin, relAddr, "/readyz", http.StatusOK, "serve", "--config", otherCfg, "--role", "releases", "--listen", relAddr, "--data", filepath.Join(dir, "other"), "--public-url", front.URL)
	defer other.kill()
	if out, err := runVitrine(t, bin, "serve", "--config", cfgFile, "--role", "all"); err == nil || !strings.Contains(out, "pinned") {
		t.Fatalf("the platform started against a releases process with another key (%v):\n%s", err, out)
	}
}

// firstFile returns the name of the first regular file of a .tar.gz.
func firstFile(t *testing.T, archive []byte) string {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no regular file in the archive: %v", err)
		}
		if h.Typeflag == tar.TypeReg {
			return strings.TrimPrefix(h.Name, "./")
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
