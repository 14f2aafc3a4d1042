package rebuild

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/release"
)

var update = flag.Bool("update", false, "rewrite the test vectors in testdata/")

// seedSigner is an Ed25519 release.Signer from a fixed seed, so that the
// vectors come out the same every time.
type seedSigner struct{ priv ed25519.PrivateKey }

func newSeedSigner(seed string) *seedSigner {
	s := sha256.Sum256([]byte(seed))
	return &seedSigner{ed25519.NewKeyFromSeed(s[:])}
}

func (s *seedSigner) Sign(_ context.Context, data []byte) ([]byte, error) {
	return ed25519.Sign(s.priv, data), nil
}
func (s *seedSigner) KeyID() (string, error) { return s.pub().KeyID() }
func (s *seedSigner) Public() crypto.PublicKey {
	return s.priv.Public()
}
func (s *seedSigner) pub() release.PublicKey {
	return release.PublicKey(s.priv.Public().(ed25519.PublicKey))
}

func digest(s string) string { return release.Digest([]byte(s)) }

func hexOf(s string) string { return strings.TrimPrefix(digest(s), "sha256:") }

// vector is one verdict of the test vectors.
type vector struct {
	file     string
	subjects []release.Artifact
	pred     Predicate
}

func vectors() []vector {
	start := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	rel := Release{Name: "hello", Version: "2", LogIndex: 7, Entry: digest("entry"), Envelope: digest("envelope")}
	subjects := []release.Artifact{{Name: "hello_linux_amd64", SHA256: hexOf("bin")}, {Name: "sample", SHA256: hexOf("db")}}
	tc := Toolchain{Original: "go1.26.8", Rebuild: "go1.26.8"}
	good := Predicate{Release: rel, Source: digest("src"), Toolchain: tc, Rebuilder: "https://rebuilder.example",
		Started: start, Finished: start.Add(42 * time.Second)}
	good.Compare(map[string]string{"hello_linux_amd64": digest("bin"), "sample": digest("db")},
		map[string]string{"hello_linux_amd64": digest("bin"), "sample": digest("db")})
	differ := good
	differ.Compare(map[string]string{"hello_linux_amd64": digest("bin"), "sample": digest("db")},
		map[string]string{"hello_linux_amd64": digest("other bin"), "sample": digest("db"), "extra": digest("x")})
	failed := good
	failed.Source = ""
	failed.Toolchain.Rebuild = ""
	failed.Error = "source: the served source.tar.gz is sha256:…, the provenance names sha256:…"
	failed.Compare(nil, nil)
	return []vector{
		{"reproduced.json", subjects, good},
		{"differ.json", subjects, differ},
		{"failed.json", subjects, failed},
	}
}

// TestVectors checks the verdicts in testdata against the key in
// testdata/key.pem, and that signing them again gives the same bytes.
// Regenerate them with: go test ./rebuild -run TestVectors -update
func TestVectors(t *testing.T) {
	ctx := context.Background()
	k := newSeedSigner("vitrine rebuild test vectors")
	if *update {
		if err := os.WriteFile(filepath.Join("testdata", "key.pem"), k.pub().PEM(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	keyPEM, err := os.ReadFile(filepath.Join("testdata", "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := release.ParsePublicKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vectors() {
		t.Run(v.file, func(t *testing.T) {
			env, err := Sign(ctx, k, v.subjects, &v.pred)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", v.file)
			if *update {
				if err := os.WriteFile(path, append(env, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(append(env, '\n'), want) {
				t.Errorf("signing again gave other bytes:\n got %s\nwant %s", env, want)
			}
			got, err := VerifyVerdict(ctx, want, key)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Predicate, *normalize(&v.pred)) || !reflect.DeepEqual(got.Subjects, v.subjects) {
				t.Errorf("read back:\n got %+v\nwant %+v", got, v)
			}
		})
	}
}

func TestVerdictSummary(t *testing.T) {
	vs := vectors()
	for i, want := range []string{
		"reproduced: hello 2 (release-log entry 7): 2 artifacts identical",
		"NOT reproduced: hello 2 (release-log entry 7): differ: extra, hello_linux_amd64",
		"NOT reproduced: hello 2 (release-log entry 7): source: the served",
	} {
		if got := vs[i].pred.Summary(); !strings.HasPrefix(got, want) {
			t.Errorf("%s: Summary() = %q, want %q…", vs[i].file, got, want)
		}
	}
}

// TestVerifyVerdictRefuses changes a good verdict in one way each and
// checks that it is refused, for the right reason.
func TestVerifyVerdictRefuses(t *testing.T) {
	ctx := context.Background()
	k := newSeedSigner("rebuilder")
	v := vectors()[1]
	good, err := Sign(ctx, k, v.subjects, &v.pred)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyVerdict(ctx, good, k.pub()); err != nil {
		t.Fatalf("the good verdict: %v", err)
	}
	if _, err := VerifyVerdict(ctx, good, newSeedSigner("someone else").pub()); err == nil || errors.Is(err, ErrInvalid) {
		t.Errorf("under another key: %v, want a signature error", err)
	}

	// resign replaces the payload (changed by edit, as generic JSON) and
	// signs it properly, so only the content is wrong.
	resign := func(edit func(st map[string]any)) []byte {
		var env struct {
			PayloadType string `json:"payloadType"`
			Payload     string `json:"payload"`
		}
		if err := json.Unmarshal(good, &env); err != nil {
			t.Fatal(err)
		}
		p, _ := base64.StdEncoding.DecodeString(env.Payload)
		var st map[string]any
		if err := json.Unmarshal(p, &st); err != nil {
			t.Fatal(err)
		}
		edit(st)
		p, _ = json.Marshal(st)
		return signRaw(t, k, p)
	}
	pred := func(st map[string]any) map[string]any { return st["predicate"].(map[string]any) }
	for _, c := range []struct {
		name string
		edit func(st map[string]any)
	}{
		{"reproduced although artifacts differ", func(st map[string]any) { pred(st)["reproduced"] = true }},
		{"differ leaves one out", func(st map[string]any) { pred(st)["differ"] = []any{"hello_linux_amd64"} }},
		{"an unknown predicate key", func(st map[string]any) { pred(st)["note"] = "x" }},
		{"another predicate type", func(st map[string]any) { st["predicateType"] = "https://slsa.dev/provenance/v1" }},
		{"a subject with another digest", func(st map[string]any) {
			st["subject"].([]any)[0].(map[string]any)["digest"] = map[string]any{"sha256": hexOf("else")}
		}},
		{"a subject the artifacts lack", func(st map[string]any) {
			st["subject"] = append(st["subject"].([]any), map[string]any{"name": "more", "digest": map[string]any{"sha256": hexOf("m")}})
		}},
		{"a malformed entry digest", func(st map[string]any) { pred(st)["release"].(map[string]any)["entry"] = "sha256:00" }},
		{"finished before started", func(st map[string]any) { pred(st)["finished"] = "2020-01-01T00:00:00Z" }},
		{"a log index beyond 2^53", func(st map[string]any) {
			pred(st)["release"].(map[string]any)["log_index"] = json.Number("9007199254740993")
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := VerifyVerdict(ctx, resign(c.edit), k.pub()); !errors.Is(err, ErrInvalid) {
				t.Errorf("got %v, want ErrInvalid", err)
			}
		})
	}
}

func signRaw(t *testing.T, k *seedSigner, payload []byte) []byte {
	t.Helper()
	pae := []byte("DSSEv1 " + itoa(len(release.PayloadType)) + " " + release.PayloadType + " " + itoa(len(payload)) + " ")
	pae = append(pae, payload...)
	sig, _ := k.Sign(context.Background(), pae)
	id, _ := k.KeyID()
	b, _ := json.Marshal(map[string]any{
		"payloadType": release.PayloadType,
		"payload":     base64.StdEncoding.EncodeToString(payload),
		"signatures":  []any{map[string]string{"keyid": id, "sig": base64.StdEncoding.EncodeToString(sig)}},
	})
	return b
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
