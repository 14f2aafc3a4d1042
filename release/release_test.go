package release

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	provenance "github.com/in-toto/attestation/go/predicates/provenance/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

func testBuild() *Build {
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	return &Build{
		Recipe: json.RawMessage(`{"name":"vitrine","source":{"git":"https://example.com/vitrine.git","commit":"0123456789abcdef0123456789abcdef01234567"}}`),
		Source: "git+https://example.com/vitrine.git@0123456789abcdef0123456789abcdef01234567", Archive: strings.Repeat("ab", 32),
		Toolchain: "go1.26.8", Env: map[string]string{"CGO_ENABLED": "0", "GOFLAGS": "-trimpath"},
		BuilderID: "https://vitrine.dev/conveyer@zurich", InvocationID: "build-1", Started: t0, Finished: t0.Add(time.Minute),
	}
}

func TestSignAndVerify(t *testing.T) {
	ctx := context.Background()
	key, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "release.key"))
	if err != nil {
		t.Fatal(err)
	}
	arts := []Artifact{{"vitrine_linux_amd64", strings.Repeat("01", 32)}, {"vitrine_linux_arm64", strings.Repeat("02", 32)}}
	st, err := Statement(arts, testBuild())
	if err != nil {
		t.Fatal(err)
	}
	env, err := Sign(ctx, key, st)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey(PublicKey(key.Public().(ed25519.PublicKey)).PEM())
	if err != nil {
		t.Fatal(err)
	}
	v, err := Verify(ctx, env, pub)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Subjects) != 2 || v.Subjects[1] != arts[1] {
		t.Errorf("subjects %+v", v.Subjects)
	}
	// The predicate reads back as in-toto's Provenance and validates.
	pj, err := protojson.Marshal(v.Statement.Predicate)
	if err != nil {
		t.Fatal(err)
	}
	var p provenance.Provenance
	if err := protojson.Unmarshal(pj, &p); err != nil {
		t.Fatal(err)
	}
	if err := p.Validate(); err != nil || p.BuildDefinition.ResolvedDependencies[0].Digest["sha256"] != strings.Repeat("ab", 32) {
		t.Errorf("provenance %v: %v", &p, err)
	}

	// Tampering is caught, and said where.
	other, _ := LoadOrCreateKey(filepath.Join(t.TempDir(), "other.key"))
	if _, err := Verify(ctx, env, PublicKey(other.Public().(ed25519.PublicKey))); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("verified under another key: %v", err)
	}
	var e map[string]any
	json.Unmarshal(env, &e)
	payload, _ := base64.StdEncoding.DecodeString(e["payload"].(string))
	e["payload"] = base64.StdEncoding.EncodeToString(bytes.Replace(payload, []byte("0101"), []byte("0102"), 1))
	tampered, _ := json.Marshal(e)
	if _, err := Verify(ctx, tampered, pub); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("a tampered payload verified: %v", err)
	}
	if _, err := Verify(ctx, []byte("{}"), pub); err == nil {
		t.Error("an empty envelope verified")
	}

}

func TestKeyReloads(t *testing.T) {
	p := filepath.Join(t.TempDir(), "release.key")
	a, err := LoadOrCreateKey(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateKey(p)
	if err != nil {
		t.Fatal(err)
	}
	ida, _ := a.KeyID()
	idb, _ := b.KeyID()
	if ida != idb {
		t.Errorf("the key changed on reload: %s, %s", ida, idb)
	}
}

func TestEntry(t *testing.T) {
	e := &Entry{Name: "vitrine", Version: "1.0.0", Envelope: Digest([]byte("env")),
		Artifacts: []Artifact{{"b", strings.Repeat("02", 32)}, {"a", strings.Repeat("01", 32)}}}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":1,"kind":"release","name":"vitrine","version":"1.0.0","artifacts":[{"name":"a","sha256":"` + strings.Repeat("01", 32) +
		`"},{"name":"b","sha256":"` + strings.Repeat("02", 32) + `"}],"envelope":"` + Digest([]byte("env")) + `"}`
	if string(b) != want {
		t.Fatalf("entry\n%s\nwant\n%s", b, want)
	}
	got, err := ParseEntry(b)
	if err != nil || got.Artifacts[0].Name != "a" {
		t.Fatalf("ParseEntry: %+v %v", got, err)
	}
	for _, bad := range []string{
		strings.Replace(want, `"v":1`, `"v":2`, 1),
		strings.Replace(want, `{"name":"a"`, `{ "name":"a"`, 1),
		strings.Replace(want, `"envelope"`, `"extra":1,"envelope"`, 1),
		strings.Replace(want, `"name":"a"`, `"name":"b"`, 1),
		want + "\n",
	} {
		if _, err := ParseEntry([]byte(bad)); err == nil {
			t.Errorf("ParseEntry accepted %s", bad)
		}
	}
}

func FuzzParseEntry(f *testing.F) {
	e := &Entry{Name: "vitrine", Version: "1.0.0", Envelope: Digest(nil), Artifacts: []Artifact{{"a", strings.Repeat("01", 32)}}}
	b, _ := e.Marshal()
	f.Add(b)
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEntry(b)
		if err != nil {
			return
		}
		again, err := e.Marshal()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("parsed %q, which marshals to %q, %v", b, again, err)
		}
	})
}
