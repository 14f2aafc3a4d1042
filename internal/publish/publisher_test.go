package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/logserver"
	"github.com/vitrine-dev/vitrine/internal/tufrepo"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/ruledb"
)

// newPublisher is a publisher over a real release log and a real update
// repository, in t's temporary directories.
func newPublisher(t *testing.T) *Publisher {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	l, err := logserver.Open(ctx, logserver.Config{Dir: filepath.Join(dir, "log"), Origin: "example.com/logs/release", CheckpointInterval: 100 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	key, err := release.LoadOrCreateKey(filepath.Join(dir, "release.key"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := Open(filepath.Join(dir, "releases"))
	if err != nil {
		t.Fatal(err)
	}
	repo, err := tufrepo.Open(ctx, tufrepo.Config{Dir: filepath.Join(dir, "updates"), OfflineDir: filepath.Join(dir, "offline"), TargetsKey: key, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return &Publisher{Store: store, Log: l, Key: key, Updates: repo, Logger: quiet}
}

// TestPublishUnrecordedIndex: a release whose entry was logged but whose
// index could not be written to its stage (the disk) is finished by the
// next publish in the same process with the index kept in memory, not
// logged again.
func TestPublishUnrecordedIndex(t *testing.T) {
	ctx := context.Background()
	p := newPublisher(t)
	src, err := ruledb.Parse("test.hdb", strings.NewReader("44d88612fea8a8f36de82e1278abb02f:68:EICAR-Test-File\n"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := ruledb.Compile([]*ruledb.Source{src}, 1)
	if err != nil {
		t.Fatal(err)
	}
	source := []byte("rules")
	build := &release.Build{
		Recipe: json.RawMessage(`{"name":"db"}`), Source: "dir:.", Archive: strings.TrimPrefix(release.Digest(source), "sha256:"),
		Toolchain: "go1.26.8", Env: map[string]string{"CGO_ENABLED": "0"}, BuilderID: "https://example.com/conveyer", InvocationID: "db",
		Started: time.Now().Add(-time.Minute), Finished: time.Now(),
	}
	// What Publish did before recording the index failed: staged,
	// appended, index kept in memory.
	arts := []release.Artifact{{Name: "sample", SHA256: strings.TrimPrefix(release.Digest(db), "sha256:")}}
	st, err := release.Statement(arts, build)
	if err != nil {
		t.Fatal(err)
	}
	env, err := release.Sign(ctx, p.Key, st)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := (&release.Entry{Name: "db", Version: "1", Artifacts: arts, Envelope: release.Digest(env)}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Store.Stage(&Release{Entry: entry, Envelope: env, Source: source, Artifacts: map[string][]byte{"sample": db}}); err != nil {
		t.Fatal(err)
	}
	idx, err := p.Log.Append(ctx, entry)
	if err != nil {
		t.Fatal(err)
	}
	p.unrecorded = map[string]unrecorded{stageKey("db", "1"): {entry: entry, index: idx}}

	got, err := p.Publish(ctx, "db", "1", map[string][]byte{"sample": db}, source, build)
	if err != nil || got.LogIndex != idx {
		t.Fatalf("publish again = %+v, %v; want entry %d", got, err, idx)
	}
	if r, err := p.Store.Load("db", "1"); err != nil || !bytes.Equal(r.Entry, entry) || !p.Finished("db", "1") {
		t.Fatalf("published %v, %v; want the logged entry's bytes, in the update repository", r, err)
	}
	if len(p.unrecorded) != 0 {
		t.Errorf("unrecorded = %v after the publish", p.unrecorded)
	}
	if next, err := p.Log.Append(ctx, []byte("x")); err != nil || next != idx+1 {
		t.Errorf("next entry %d, %v; want %d (nothing logged twice)", next, err, idx+1)
	}
}
