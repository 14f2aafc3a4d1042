package release

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/logserver"
	"github.com/vitrine-dev/vitrine/internal/witness"
	"github.com/vitrine-dev/vitrine/tlog"
)

// witnessedLog opens a real release log whose checkpoints a witness
// cosigns over HTTP.
func witnessedLog(t *testing.T) *logserver.Log {
	t.Helper()
	ctx := context.Background()
	dir, origin := t.TempDir(), "vitrine.test/logs/release"
	vkey, err := logserver.LoadOrCreateKey(dir, origin)
	if err != nil {
		t.Fatal(err)
	}
	w, err := witness.Open(ctx, witness.Config{Dir: t.TempDir(), Name: "vitrine.test/witness", Logs: []witness.LogKey{{Origin: origin, VKey: vkey}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	srv := httptest.NewServer(w.Handler())
	t.Cleanup(srv.Close)
	policy, err := tlog.SingleWitnessPolicy("supervisor", w.VKey(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	l, err := logserver.Open(ctx, logserver.Config{Dir: dir, Origin: origin, WitnessPolicy: policy, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		l.Close(ctx)
	})
	return l
}

func TestVerifyArtifact(t *testing.T) {
	ctx := context.Background()
	l := witnessedLog(t)
	key, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "release.key"))
	if err != nil {
		t.Fatal(err)
	}
	bin := []byte("the vitrine binary")
	sum := sha256.Sum256(bin)
	arts := []Artifact{{"vitrine_linux_amd64", hex.EncodeToString(sum[:])}, {"vitrine_linux_arm64", hex.EncodeToString(make([]byte, 32))}}
	st, err := Statement(arts, testBuild())
	if err != nil {
		t.Fatal(err)
	}
	env, err := Sign(ctx, key, st)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := (&Entry{Name: "vitrine", Version: "1.0.0", Artifacts: arts, Envelope: Digest(env)}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	prove := func(e []byte) []byte {
		i, err := l.Append(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		p, err := l.Prove(wctx, i)
		if err != nil {
			t.Fatal(err)
		}
		return p.Marshal()
	}
	proof := prove(entry)
	trust := &Trust{Key: PublicKey(key.Public().(ed25519.PublicKey)), Log: l.Verifier(), Witness: l.Policy()}
	got, err := VerifyArtifact(ctx, "vitrine_linux_amd64", bin, &Evidence{Entry: entry, Proof: proof, Envelope: env}, trust)
	if err != nil || got.Version != "1.0.0" {
		t.Fatalf("a good release: %+v, %v", got, err)
	}
	// The digest a TUF client computed stands for the bytes; a digest that
	// is not one is refused before anything else.
	ev := &Evidence{Entry: entry, Proof: proof, Envelope: env}
	if _, err := VerifyArtifactDigest(ctx, "vitrine_linux_amd64", strings.TrimPrefix(Digest(bin), "sha256:"), ev, trust); err != nil {
		t.Errorf("VerifyArtifactDigest of the good digest: %v", err)
	}
	for _, d := range []string{strings.TrimPrefix(Digest([]byte("other")), "sha256:"), "", strings.ToUpper(strings.TrimPrefix(Digest(bin), "sha256:"))} {
		if _, err := VerifyArtifactDigest(ctx, "vitrine_linux_amd64", d, ev, trust); err == nil || !strings.HasPrefix(err.Error(), "artifact:") {
			t.Errorf("VerifyArtifactDigest(%q) = %v, want the artifact check to fail", d, err)
		}
	}

	otherEntry, _ := (&Entry{Name: "vitrine", Version: "1.0.1", Artifacts: arts, Envelope: Digest(env)}).Marshal()
	otherProof := prove(otherEntry)
	// The proof's checkpoint without the witness's cosignature: a split
	// view the supervisor never saw.
	pp, err := tlog.ParseProof(proof)
	if err != nil {
		t.Fatal(err)
	}
	var kept []byte
	body, sigs, _ := bytes.Cut(pp.Checkpoint, []byte("\n\n"))
	kept = append(append(kept, body...), "\n\n"...)
	for _, line := range bytes.SplitAfter(sigs, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("— "+l.Origin()+" ")) {
			kept = append(kept, line...)
		}
	}
	pp.Checkpoint = kept
	unwitnessed := pp.Marshal()
	other, _ := LoadOrCreateKey(filepath.Join(t.TempDir(), "other.key"))
	otherEnv, _ := Sign(ctx, other, st)
	for _, tc := range []struct {
		name, artifact string
		bin            []byte
		ev             Evidence
		trust          *Trust
		check          string
	}{
		{"tampered artifact", "vitrine_linux_amd64", []byte("the vitrine binarY"), Evidence{entry, proof, env}, trust, "artifact"},
		{"artifact not in the release", "vitrine_windows_amd64", bin, Evidence{entry, proof, env}, trust, "artifact"},
		{"envelope signed by another key", "vitrine_linux_amd64", bin, Evidence{entry, proof, otherEnv}, trust, "signature"},
		{"entry of another envelope", "vitrine_linux_amd64", bin, Evidence{entry, proof, append(env[:len(env):len(env)], ' ')}, trust, "entry"},
		{"proof of another entry", "vitrine_linux_amd64", bin, Evidence{entry, otherProof, env}, trust, "inclusion"},
		{"entry not the one proven", "vitrine_linux_amd64", bin, Evidence{otherEntry, proof, env}, trust, "inclusion"},
		{"checkpoint without the witness", "vitrine_linux_amd64", bin, Evidence{entry, unwitnessed, env}, trust, "inclusion"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyArtifact(ctx, tc.artifact, tc.bin, &tc.ev, tc.trust)
			var ce *CheckError
			if !errors.As(err, &ce) || ce.Check != tc.check {
				t.Errorf("VerifyArtifact = %v, want the %s check to fail", err, tc.check)
			}
		})
	}
}

// TestVerifyProvenance: an envelope is the provenance of a release-log
// entry only if the entry binds its digest, it verifies under the release
// key and its subjects are the entry's artifacts; each failure is named.
func TestVerifyProvenance(t *testing.T) {
	ctx := context.Background()
	key, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "release.key"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	arts := []Artifact{{"a", strings.Repeat("01", 32)}, {"b", strings.Repeat("02", 32)}}
	sign := func(k *Ed25519Key, arts []Artifact) []byte {
		st, err := Statement(arts, testBuild())
		if err != nil {
			t.Fatal(err)
		}
		env, err := Sign(ctx, k, st)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	pub := PublicKey(key.Public().(ed25519.PublicKey))
	honest := sign(key, arts)
	byOther := sign(other, arts)
	fewer := sign(key, arts[:1])
	swapped := sign(key, []Artifact{{"a", arts[1].SHA256}, {"b", arts[0].SHA256}})
	entry := func(env []byte) *Entry {
		return &Entry{Name: "x", Version: "1", Artifacts: arts, Envelope: Digest(env)}
	}
	for _, c := range []struct {
		name     string
		envelope []byte
		entry    *Entry
		check    string // "" verifies
	}{
		{"honest", honest, entry(honest), ""},
		{"another envelope than the entry binds", fewer, entry(honest), "envelope"},
		{"signed by another key", byOther, entry(byOther), "signature"},
		{"fewer subjects", fewer, entry(fewer), "subjects"},
		{"digests swapped", swapped, entry(swapped), "subjects"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, err := VerifyProvenance(ctx, c.envelope, c.entry, pub)
			var ce *CheckError
			switch {
			case c.check == "" && (err != nil || len(v.Subjects) != 2):
				t.Errorf("got %v, want verified", err)
			case c.check != "" && (!errors.As(err, &ce) || ce.Check != c.check):
				t.Errorf("got %v, want the %s check to fail", err, c.check)
			}
		})
	}
	if SameArtifacts([]Artifact{arts[0], arts[0]}, []Artifact{arts[0], arts[1]}) || !SameArtifacts(arts, []Artifact{arts[1], arts[0]}) {
		t.Error("SameArtifacts: a file named twice, or order, judged wrong")
	}
}
