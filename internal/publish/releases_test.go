package publish

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/release"
)

func testRelease(t *testing.T, version string) *Release {
	t.Helper()
	bin := []byte("binary " + version)
	env := []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"","signatures":[]}`)
	entry, err := (&release.Entry{Name: "vitrine", Version: version, Envelope: release.Digest(env),
		Artifacts: []release.Artifact{{Name: "vitrine_linux_amd64", SHA256: strings.TrimPrefix(release.Digest(bin), "sha256:")}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return &Release{Entry: entry, Envelope: env, Source: []byte("tar"), Artifacts: map[string][]byte{"vitrine_linux_amd64": bin}, Index: 7}
}

func TestPublishAndServe(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := testRelease(t, "1.0.0")
	if err := s.Publish(r); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(r); !errors.Is(err, ErrExists) {
		t.Errorf("publishing twice: %v", err)
	}
	bad := testRelease(t, "1.0.1")
	bad.Artifacts["vitrine_linux_amd64"] = []byte("tampered")
	if err := s.Publish(bad); err == nil {
		t.Error("published an artifact that differs from the entry")
	}
	bad = testRelease(t, "1.0.2")
	bad.Envelope = []byte("{}")
	if err := s.Publish(bad); err == nil {
		t.Error("published an envelope the entry does not bind")
	}
	srv := httptest.NewServer(http.StripPrefix("/releases", s.Handler(nil)))
	defer srv.Close()
	get := func(p string) (int, []byte) {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	code, b := get("/releases/")
	var idx struct{ Releases []Listed }
	if code != 200 || json.Unmarshal(b, &idx) != nil || len(idx.Releases) != 1 || idx.Releases[0].Version != "1.0.0" || idx.Releases[0].LogIndex != 7 {
		t.Fatalf("index: %d %s", code, b)
	}
	if code, b := get("/releases/vitrine/1.0.0/artifacts/vitrine_linux_amd64"); code != 200 || string(b) != "binary 1.0.0" {
		t.Errorf("artifact: %d %s", code, b)
	}
	if code, b := get("/releases/vitrine/1.0.0/release.json"); code != 200 || string(b) != string(r.Entry) {
		t.Errorf("entry: %d %s", code, b)
	}
	// The URL the index gives lists the release's files, each of which
	// is served with the size listed (it was once a 404).
	code, b = get("/releases/" + idx.Releases[0].URL)
	var rel ReleaseIndex
	if code != 200 || json.Unmarshal(b, &rel) != nil || rel.Name != "vitrine" || rel.Version != "1.0.0" || rel.LogIndex != 7 {
		t.Fatalf("release index: %d %s", code, b)
	}
	var paths []string
	for _, f := range rel.Files {
		paths = append(paths, f.Path)
		code, b := get("/releases/vitrine/1.0.0/" + f.Path)
		if code != 200 || int64(len(b)) != f.Size || f.About == "" {
			t.Errorf("listed file %+v: GET answers %d with %d bytes", f, code, len(b))
		}
	}
	if want := []string{"release.json", "provenance.json", "source.tar.gz", "artifacts/vitrine_linux_amd64"}; !reflect.DeepEqual(paths, want) {
		t.Errorf("release index lists %q, want %q", paths, want)
	}
	for _, p := range []string{"/releases/vitrine/1.0.1/release.json", "/releases/vitrine/1.0.1/", "/releases/vitrine/.publish-x/", "/releases/../../etc/passwd", "/releases/vitrine/.publish-x/a"} {
		if code, _ := get(p); code != 404 {
			t.Errorf("GET %s: %d, want 404", p, code)
		}
	}
}

// TestLoad: a published release reads back as published; one whose
// artifact changed on disk, or that is not there, does not load.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := testRelease(t, "1.0.0")
	if err := s.Publish(r); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load("vitrine", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Errorf("loaded %+v, published %+v", got, r)
	}
	if _, err := s.Load("vitrine", "2.0.0"); err == nil {
		t.Error("loaded a release never published")
	}
	if _, err := s.Load("..", "1.0.0"); err == nil {
		t.Error("loaded a release named ..")
	}
	if err := os.WriteFile(filepath.Join(dir, "vitrine", "1.0.0", "artifacts", "vitrine_linux_amd64"), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load("vitrine", "1.0.0"); err == nil || !strings.Contains(err.Error(), "differs from the entry") {
		t.Errorf("loading a tampered artifact: %v", err)
	}
}

// TestStage: a staged release reads back, logged once its index is
// recorded; it is neither listed nor served; publishing it removes it.
func TestStage(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := testRelease(t, "1.0.0")
	if got, logged, err := s.Staged("vitrine", "1.0.0"); got != nil || logged || err != nil {
		t.Fatalf("Staged before Stage = %v, %v, %v", got, logged, err)
	}
	if err := s.Stage(r); err != nil {
		t.Fatal(err)
	}
	if got, logged, err := s.Staged("vitrine", "1.0.0"); err != nil || logged || got == nil || !bytes.Equal(got.Entry, r.Entry) {
		t.Fatalf("Staged = %v, logged %v, %v; want the release, not logged", got, logged, err)
	}
	if l, _ := s.StagedLogged(); len(l) != 0 {
		t.Errorf("StagedLogged = %v before Logged", l)
	}
	other, err := (&release.Entry{Name: "vitrine", Version: "1.0.0", Envelope: release.Digest([]byte("{}")),
		Artifacts: []release.Artifact{{Name: "vitrine_linux_amd64", SHA256: strings.Repeat("0", 64)}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Logged(other, 7); err == nil {
		t.Error("recorded a log index for an entry the stage does not hold")
	}
	if err := s.Logged(r.Entry, 7); err != nil {
		t.Fatal(err)
	}
	got, logged, err := s.Staged("vitrine", "1.0.0")
	if err != nil || !logged || !reflect.DeepEqual(got, r) {
		t.Fatalf("Staged after Logged = %+v, %v, %v; want %+v logged", got, logged, err, r)
	}
	if l, _ := s.StagedLogged(); len(l) != 1 || !reflect.DeepEqual(l[0], r) {
		t.Errorf("StagedLogged = %v", l)
	}
	if l, _ := s.List(); len(l) != 0 {
		t.Errorf("List shows a staged release: %v", l)
	}
	srv := httptest.NewServer(s.Handler(nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/.pending/vitrine/1.0.0/release.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("a staged file is served: %d", resp.StatusCode)
	}
	if err := s.Publish(r); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Staged("vitrine", "1.0.0"); got != nil {
		t.Error("still staged once published")
	}
	if left, _ := os.ReadDir(filepath.Join(s.dir, ".pending")); len(left) != 0 {
		t.Errorf("an empty folder stays under .pending once the release is published: %v", left)
	}
	bad := testRelease(t, "2.0.0")
	bad.Envelope = []byte("{}")
	if err := s.Stage(bad); err == nil {
		t.Error("staged an envelope the entry does not bind")
	}

	// A stage cut short: unlogged, it is none; logged, it is an error.
	r3 := testRelease(t, "3.0.0")
	if err := s.Stage(r3); err != nil {
		t.Fatal(err)
	}
	art := filepath.Join(s.stagePath("vitrine", "3.0.0"), "artifacts", "vitrine_linux_amd64")
	if err := os.Remove(art); err != nil {
		t.Fatal(err)
	}
	if got, logged, err := s.Staged("vitrine", "3.0.0"); got != nil || logged || err != nil {
		t.Errorf("a broken unlogged stage = %v, %v, %v; want none", got, logged, err)
	}
	if _, err := os.Stat(s.stagePath("vitrine", "3.0.0")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the broken unlogged stage is still there: %v", err)
	}
	if err := s.Stage(r3); err != nil {
		t.Fatal(err)
	}
	if err := s.Logged(r3.Entry, 9); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(art); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Staged("vitrine", "3.0.0"); err == nil {
		t.Error("a broken logged stage read as none: publishing again would log it twice")
	}
}
