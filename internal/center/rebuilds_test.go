package center

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/internal/rebuilder/rebuildertest"
	"github.com/vitrine-dev/vitrine/release"
)

// standIn is a rebuilder's /rebuilds/ (rebuildertest.Server) with its
// signing key.
type standIn struct {
	*rebuildertest.Server
	key *release.Ed25519Key
}

func newRebuilder(t *testing.T) *standIn {
	t.Helper()
	key, err := release.LoadOrCreateKey(filepath.Join(t.TempDir(), "rebuilder.key"))
	if err != nil {
		t.Fatal(err)
	}
	return &standIn{Server: rebuildertest.New(t, "https://rebuilder.example"), key: key}
}

// pin is the rebuilder as a Center is given it: its URL and its key.
func (s *standIn) pin(t *testing.T) Rebuilder {
	rb, err := ParseRebuilder(s.URL+","+"key.pem", func(string) ([]byte, error) { return release.PublicKey(s.key.Public().(ed25519.PublicKey)).PEM(), nil })
	if err != nil {
		t.Fatal(err)
	}
	return rb
}

// judge signs, with key, a verdict on the release name version, logged
// at index in p's release log: the rebuilt artifacts are the release's,
// but for those in differ.
func (s *standIn) judge(t *testing.T, p *platform.Platform, key *release.Ed25519Key, name, version string, index uint64, differ ...string) {
	t.Helper()
	_, entry := get(t, fmt.Sprintf("%s/releases/%s/%s/release.json", p.URL(), name, version), "")
	s.Judge(t, key, []byte(entry), index, differ...)
}

// TestReleaseRebuilds: a release's page shows every known rebuilder's
// verdict, each checked under the key the Center pinned for it: a
// reproduced one, one that did not reproduce with the file that differs,
// one signed by another key than the pinned one (not accepted, said so),
// a rebuilder with no verdict yet and one out of reach. The overview
// sums them up for the release.
func TestReleaseRebuilds(t *testing.T) {
	p, px := startPlatform(t)
	good, bad, forged, silent, down := newRebuilder(t), newRebuilder(t), newRebuilder(t), newRebuilder(t), newRebuilder(t)
	good.judge(t, p, good.key, "tool", "1.2.3", 0)
	bad.judge(t, p, bad.key, "tool", "1.2.3", 0, "tool_linux_amd64")
	other, err := release.LoadOrCreateKey(filepath.Join(t.TempDir(), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	forged.judge(t, p, other, "tool", "1.2.3", 0)
	var pinned []Rebuilder
	for _, rb := range []*standIn{good, bad, forged, silent, down} {
		pinned = append(pinned, rb.pin(t))
	}
	down.Close()
	c, err := New(Config{Platform: px.URL, Dir: t.TempDir(), CacheFor: time.Nanosecond, Rebuilders: pinned, IndexEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	base := newServer(t, c)
	code, body := get(t, base+"/center/releases/tool/1.2.3", "application/json")
	var rp ReleasePage
	if code != 200 || json.Unmarshal([]byte(body), &rp) != nil || len(rp.Rebuilds) != 5 {
		t.Fatalf("the release's page: %d %s", code, body)
	}
	g, b, f, s, d := rp.Rebuilds[0], rp.Rebuilds[1], rp.Rebuilds[2], rp.Rebuilds[3], rp.Rebuilds[4]
	if !g.Verified || !g.Reproduced || g.ID != "https://rebuilder.example" || len(g.Artifacts) != 1 || g.URL != good.URL+"/rebuilds/tool/1.2.3.json" {
		t.Errorf("the reproducing verdict: %+v", g)
	}
	if !b.Verified || b.Reproduced || len(b.Differ) != 1 || b.Differ[0] != "tool_linux_amd64" {
		t.Errorf("the verdict that did not reproduce: %+v", b)
	}
	if f.Verified || !f.Found || !strings.Contains(f.Problem, "does not verify under the key pinned") {
		t.Errorf("the verdict signed by another key: %+v", f)
	}
	if s.Verified || s.Found || s.Problem != "" {
		t.Errorf("the rebuilder with no verdict: %+v", s)
	}
	if d.Verified || !strings.Contains(d.Problem, "could not be read") {
		t.Errorf("the rebuilder out of reach: %+v", d)
	}
	_, html := get(t, base+"/center/releases/tool/1.2.3", "")
	for _, want := range []string{"✓ Reproduced:", "✗ NOT reproduced.", "Files that differ: <code>tool_linux_amd64</code>", "does not verify under the key pinned", "No verdict on this release yet"} {
		if !strings.Contains(html, want) {
			t.Errorf("the release's page does not say %q", want)
		}
	}

	code, body = get(t, base+"/", "application/json")
	var o Overview
	if code != 200 || json.Unmarshal([]byte(body), &o) != nil || len(o.Releases) != 1 || o.Releases[0].Rebuilds == nil {
		t.Fatalf("the overview: %d %s", code, body)
	}
	if got, want := *o.Releases[0].Rebuilds, (RebuildSummary{Rebuilders: 5, Reproduced: 1, NotReproduced: 1, Pending: 1, Unverified: 2}); got != want {
		t.Errorf("the overview's rebuild status: %+v, want %+v", got, want)
	}
	if _, html := get(t, base+"/", ""); !strings.Contains(html, "2 of 5 verdicts do not verify") {
		t.Errorf("the overview does not show the verdicts that do not verify")
	}

	for _, spec := range []string{"", "http://x", "ftp://x,k.pem", ",k.pem", "http://x,missing.pem"} {
		if _, err := ParseRebuilder(spec, func(string) ([]byte, error) { return nil, fmt.Errorf("no such file") }); err == nil {
			t.Errorf("ParseRebuilder(%q) accepted", spec)
		}
	}
	if _, err := ParseRebuilder("http://x,k.pem", func(string) ([]byte, error) { return []byte("not a key"), nil }); err == nil {
		t.Error("ParseRebuilder accepted a file that is no key")
	}
}

// rewrite is a transport that answers the paths it holds with its bytes
// and the rest from the network: an update repository's server that
// lies about some of its files.
type rewrite map[string][]byte

func (rw rewrite) RoundTrip(r *http.Request) (*http.Response, error) {
	if b, ok := rw[r.URL.Path]; ok {
		rec := httptest.NewRecorder()
		rec.Write(b)
		return rec.Result(), nil
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestReleaseUpdates: read with go-tuf's client, the update repository
// offers the release's artifact, with its digest and this release-log
// entry. A repository that serves an older timestamp, still validly
// signed, offers a newer release nothing: its page says it is not
// offered. A timestamp with one byte changed does not verify: the page
// says so and shows nothing as offered.
func TestReleaseUpdates(t *testing.T) {
	p, px := startPlatform(t)
	_, old := get(t, px.URL+"/updates/timestamp.json", "")
	src := []byte("source of tool 1.2.4")
	pub, err := p.Publish(context.Background(), "tool", "1.2.4", map[string][]byte{"tool_linux_amd64": []byte("\x7fELF tool 1.2.4")}, src, &release.Build{
		Recipe: json.RawMessage(`{"name":"tool"}`), Source: "dir:.", Archive: strings.TrimPrefix(release.Digest(src), "sha256:"),
		Toolchain: "go1.26.8", BuilderID: p.URL() + "/conveyer", InvocationID: "2", Started: time.Now().Add(-time.Minute), Finished: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	page := func(hc *http.Client, version string) *UpdateState {
		t.Helper()
		c, err := New(Config{Platform: px.URL, Dir: t.TempDir(), HTTPClient: hc, IndexEvery: -1})
		if err != nil {
			t.Fatal(err)
		}
		code, body := get(t, newServer(t, c)+"/center/releases/tool/"+version, "application/json")
		var rp ReleasePage
		if code != 200 || json.Unmarshal([]byte(body), &rp) != nil || rp.Updates == nil {
			t.Fatalf("the release's page: %d %s", code, body)
		}
		if rp.Index != pub.LogIndex && version == "1.2.4" {
			t.Errorf("tool 1.2.4 at index %d, published at %d", rp.Index, pub.LogIndex)
		}
		return rp.Updates
	}
	for _, v := range []string{"1.2.3", "1.2.4"} {
		u := page(&http.Client{}, v)
		if u.Problem != "" || len(u.Artifacts) != 1 || !u.Artifacts[0].Offered || u.Artifacts[0].Target != "tool/"+v+"/tool_linux_amd64" {
			t.Errorf("tool %s in an honest repository: %+v", v, u)
		}
	}
	stale := &http.Client{Transport: rewrite{"/updates/timestamp.json": []byte(old)}}
	if u := page(stale, "1.2.3"); u.Problem != "" || !u.Artifacts[0].Offered {
		t.Errorf("tool 1.2.3 in the repository as it was: %+v", u)
	}
	if u := page(stale, "1.2.4"); u.Problem != "" || u.Artifacts[0].Offered || !strings.HasPrefix(u.Artifacts[0].Problem, "not offered") {
		t.Errorf("tool 1.2.4 in the repository before it: %+v", u)
	}
	// One byte of what the timestamp role signed: the year it expires.
	doctored := strings.Replace(old, `"expires":"2`, `"expires":"3`, 1)
	if doctored == old {
		t.Fatalf("no expiry in the timestamp: %s", old)
	}
	if u := page(&http.Client{Transport: rewrite{"/updates/timestamp.json": []byte(doctored)}}, "1.2.3"); !strings.Contains(u.Problem, "do not verify") || len(u.Artifacts) != 0 {
		t.Errorf("a doctored timestamp: %+v", u)
	}
}
