package policylog

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/internal/logserver"
	"github.com/vitrine-dev/vitrine/residency"
)

// newKeeper is a keeper over a real log, logging to logs.
func newKeeper(t *testing.T, logs io.Writer) (*Keeper, *logserver.Log) {
	t.Helper()
	l, err := logserver.Open(context.Background(), logserver.Config{Dir: t.TempDir(), Origin: "example.com/logs/policy", CheckpointInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	skey, vkey, err := note.GenerateKey(rand.Reader, "example.com/policy")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	return &Keeper{Log: l, Signer: s, Verifier: v, Logger: slog.New(slog.NewTextHandler(logs, nil))}, l
}

func size(t *testing.T, l *logserver.Log) uint64 {
	t.Helper()
	cp, err := l.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cp.Size
}

// TestActivate: the first start logs the policy and returns once it is
// witnessed; the same policy again logs nothing; a changed policy under an
// old version is refused; a newer version in the log (a relocation) wins
// over an older configuration; an entry that is no valid policy is
// reported and skipped.
func TestActivate(t *testing.T) {
	ctx := context.Background()
	var logs bytes.Buffer
	k, l := newKeeper(t, &logs)
	v1 := residency.Default()
	got, err := k.Activate(ctx, v1)
	if err != nil || got.Version != v1.Version || size(t, l) != 1 {
		t.Fatalf("first activation: %v, %v; log size %d", got, err, size(t, l))
	}
	if got, err := k.Activate(ctx, v1); err != nil || got.Version != v1.Version || size(t, l) != 1 {
		t.Fatalf("the same policy again: %v, %v; log size %d, want nothing logged", got, err, size(t, l))
	}
	changed, err := v1.Move("BR", "zurich")
	if err != nil {
		t.Fatal(err)
	}
	changed.Version = v1.Version
	if _, err := k.Activate(ctx, changed); err == nil || !strings.Contains(err.Error(), "give the new policy a new version") {
		t.Errorf("a changed policy under version %d: %v", v1.Version, err)
	}
	moved, err := v1.Move("BR", "zurich")
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Append(ctx, moved); err != nil {
		t.Fatal(err)
	}
	// Not a policy, and a policy signed by another key: both skipped.
	if _, err := l.Append(ctx, []byte("not a policy")); err != nil {
		t.Fatal(err)
	}
	other, _ := newKeeper(t, io.Discard)
	forged, err := residency.Sign(&residency.Policy{Version: 99, Default: "moscow", Regions: moved.Regions}, other.Signer)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := l.Append(ctx, forged)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AwaitWitnessed(ctx, idx); err != nil {
		t.Fatal(err)
	}
	got, err = k.Activate(ctx, v1)
	if err != nil || got.Version != moved.Version {
		t.Fatalf("an older configuration under a relocated log: %v, %v; want version %d", got, err, moved.Version)
	}
	if r, _ := got.RegionFor("BR"); r != "zurich" {
		t.Errorf("BR is in %s under the logged version, want zurich", r)
	}
	for _, want := range []string{"index=2", "not a residency policy", "index=3", "does not verify"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the skipped entries were not reported (%q):\n%s", want, logs.String())
		}
	}
}
