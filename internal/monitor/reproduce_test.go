package monitor

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/internal/rebuilder/rebuildertest"
	"github.com/vitrine-dev/vitrine/release"
)

// verdicts is a rebuilder's /rebuilds/, with verdicts the test signs.
type verdicts struct{ *rebuildertest.Server }

// add signs a verdict on the published release with key: the rebuilt
// artifacts are the release's, except those in differ.
func (v *verdicts) add(t *testing.T, tp *testPlatform, key *release.Ed25519Key, pub *platform.Published, differ ...string) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("%s/releases/%s/%s/release.json", tp.URL(), pub.Name, pub.Version))
	if err != nil {
		t.Fatal(err)
	}
	entry, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	v.Judge(t, key, entry, pub.LogIndex, differ...)
}

// TestReleaseNotReproduced: a release whose rebuild did not reproduce it
// is a critical alert naming what differs, grounded in the release log; a
// reproduced one is none; one that no rebuilder has judged is one after
// ReproduceWithin; a verdict signed by another key counts for nothing.
func TestReleaseNotReproduced(t *testing.T) {
	tp := startPlatform(t)
	ctx := context.Background()
	key, err := release.LoadOrCreateKey(filepath.Join(t.TempDir(), "rebuilder.key"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := release.LoadOrCreateKey(filepath.Join(t.TempDir(), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	v := &verdicts{rebuildertest.New(t, "https://rebuilder.example")}
	srv := v.Server
	publish := func(name, version string) *platform.Published {
		src := []byte("source of " + name)
		pub, err := tp.Publish(ctx, name, version, map[string][]byte{name + "_linux_amd64": []byte("\x7fELF " + name)}, src, &release.Build{
			Recipe: json.RawMessage(`{"name":"` + name + `"}`), Source: "dir:.", Archive: strings.TrimPrefix(release.Digest(src), "sha256:"),
			Toolchain: "go1.26.8", Env: map[string]string{"CGO_ENABLED": "0"}, BuilderID: tp.URL() + "/conveyer", InvocationID: name + version,
			Started: time.Now().Add(-time.Minute), Finished: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return pub
	}
	bad, good, late, forged := publish("tool", "1.0.0"), publish("lib", "2.0.0"), publish("late", "3.0.0"), publish("forged", "4.0.0")
	v.add(t, tp, key, bad, "tool_linux_amd64")
	v.add(t, tp, key, good)
	v.add(t, tp, other, forged, "forged_linux_amd64")

	c := &clock{t: time.Now()}
	m, err := New(ctx, Config{Dir: t.TempDir(), Platforms: []string{tp.URL()}, Now: c.now, ReproduceWithin: time.Hour,
		Rebuilders: []Rebuilder{{Platform: tp.URL(), URL: srv.URL, Key: release.PublicKey(key.Public().(ed25519.PublicKey))}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	pass := func() ([]Alert, error) { return passFor(m, "release-not-reproduced") }
	got, err := pass()
	if err == nil || !strings.Contains(err.Error(), "verdict signature") {
		t.Errorf("the pass with a forged verdict: %v, want its signature refused", err)
	}
	if len(got) != 1 || *got[0].Index != bad.LogIndex || got[0].Severity != "critical" || !strings.Contains(got[0].Detail, "artifacts differ: tool_linux_amd64") {
		t.Fatalf("after the verdicts: %+v, want one alert on tool 1.0.0", got)
	}
	checkGrounded(t, tp.Platform, got[0])
	if got, _ := pass(); len(got) != 0 {
		t.Errorf("the next pass: %+v, want nothing new", got)
	}
	c.add(2 * time.Hour)
	got, _ = pass()
	indexes := map[uint64]bool{}
	for _, a := range got {
		indexes[*a.Index] = true
		if !strings.Contains(a.Detail, "within 1h0m0s") {
			t.Errorf("a late release's alert: %s", a.Detail)
		}
		checkGrounded(t, tp.Platform, a)
	}
	if len(got) != 2 || !indexes[late.LogIndex] || !indexes[forged.LogIndex] || indexes[good.LogIndex] {
		t.Errorf("two hours on: %+v, want late 3.0.0 and forged 4.0.0 (whose only verdict proves nothing), not lib 2.0.0", got)
	}
}

// TestSecondRebuilderFails: with two pinned rebuilders, a release the
// first reproduced waits for the second, whose failing verdict is a
// critical alert; a release only the first judged is done, without an
// alert, once ReproduceWithin passes.
func TestSecondRebuilderFails(t *testing.T) {
	tp := startPlatform(t)
	ctx := context.Background()
	var rbs []Rebuilder
	var servers []*verdicts
	var keys []*release.Ed25519Key
	for i := range 2 {
		key, err := release.LoadOrCreateKey(filepath.Join(t.TempDir(), fmt.Sprintf("rebuilder%d.key", i)))
		if err != nil {
			t.Fatal(err)
		}
		v := &verdicts{rebuildertest.New(t, fmt.Sprintf("https://rebuilder%d.example", i))}
		srv := v.Server
		rbs = append(rbs, Rebuilder{Platform: tp.URL(), URL: srv.URL, Key: release.PublicKey(key.Public().(ed25519.PublicKey))})
		servers, keys = append(servers, v), append(keys, key)
	}
	publish := func(name string) *platform.Published {
		src := []byte("source of " + name)
		pub, err := tp.Publish(ctx, name, "1.0.0", map[string][]byte{name + "_linux_amd64": []byte("\x7fELF " + name)}, src, &release.Build{
			Recipe: json.RawMessage(`{"name":"` + name + `"}`), Source: "dir:.", Archive: strings.TrimPrefix(release.Digest(src), "sha256:"),
			Toolchain: "go1.26.8", Env: map[string]string{"CGO_ENABLED": "0"}, BuilderID: tp.URL() + "/conveyer", InvocationID: name,
			Started: time.Now().Add(-time.Minute), Finished: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return pub
	}
	disputed, single := publish("disputed"), publish("single")
	servers[0].add(t, tp, keys[0], disputed)
	servers[0].add(t, tp, keys[0], single)

	c := &clock{t: time.Now()}
	m, err := New(ctx, Config{Dir: t.TempDir(), Platforms: []string{tp.URL()}, Now: c.now, ReproduceWithin: time.Hour, Rebuilders: rbs})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	pass := func() []Alert {
		t.Helper()
		got, err := passFor(m, "release-not-reproduced")
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := pass(); len(got) != 0 {
		t.Fatalf("both reproduced by the first rebuilder: %+v", got)
	}
	servers[1].add(t, tp, keys[1], disputed, "disputed_linux_amd64")
	got := pass()
	if len(got) != 1 || *got[0].Index != disputed.LogIndex || !strings.Contains(got[0].Detail, rbs[1].URL) {
		t.Fatalf("the second rebuilder's failing verdict: %+v", got)
	}
	checkGrounded(t, tp.Platform, got[0])
	c.add(2 * time.Hour)
	if got := pass(); len(got) != 0 {
		t.Errorf("two hours on: %+v; the release the first reproduced is done without an alert", got)
	}
	if open, err := m.store.openReleases(ctx, tp.URL()); err != nil || len(open) != 0 {
		t.Errorf("open releases: %+v, %v; want none", open, err)
	}
}
