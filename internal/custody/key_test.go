package custody

import (
	"bytes"
	"crypto/hpke"
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// testPublicKey derives a fixed key, so that seeds and vectors are the
// same bytes every run.
func testPublicKey(t testing.TB, region string) *PublicKey {
	t.Helper()
	sk, err := kem.DeriveKeyPair([]byte("vitrine custody test key " + region))
	if err != nil {
		t.Fatal(err)
	}
	return &PublicKey{region: region, pk: sk.PublicKey()}
}

func TestPublicKeyText(t *testing.T) {
	k := testPublicKey(t, "zurich")
	s := k.String()
	if !strings.HasPrefix(s, "vitrine-region-key v1 zurich ") {
		t.Fatalf("String() = %.40q…", s)
	}
	got, err := ParsePublicKey(s)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != s || got.Region() != "zurich" || !bytes.Equal(got.pk.Bytes(), k.pk.Bytes()) {
		t.Error("ParsePublicKey(String()) differs")
	}
	b64 := base64.StdEncoding.EncodeToString(k.pk.Bytes())
	bad := map[string]string{
		"empty":            "",
		"trailing newline": s + "\n",
		"leading space":    " " + s,
		"double space":     "vitrine-region-key v1  zurich " + b64,
		"version":          "vitrine-region-key v2 zurich " + b64,
		"no key":           "vitrine-region-key v1 zurich",
		"bad region":       "vitrine-region-key v1 Zurich " + b64,
		"extra field":      s + " x",
		"short key":        "vitrine-region-key v1 zurich " + b64[:len(b64)-8],
		"unpadded":         "vitrine-region-key v1 zurich " + strings.TrimRight(base64.StdEncoding.EncodeToString(k.pk.Bytes()[1:]), "="),
		"url base64":       "vitrine-region-key v1 zurich " + base64.URLEncoding.EncodeToString(k.pk.Bytes()),
		"private key":      "vitrine-region-private-key v1 zurich " + base64.StdEncoding.EncodeToString(make([]byte, 32)),
	}
	for name, in := range bad {
		if _, err := ParsePublicKey(in); err == nil {
			t.Errorf("%s: ParsePublicKey(%.60q…) succeeded", name, in)
		}
	}
}

func TestWrapAndKeyID(t *testing.T) {
	dir := t.TempDir()
	k, err := loadOrCreateKey(dir, "zurich")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.pub.Wrap(make([]byte, 31)); err == nil {
		t.Error("Wrap of a 31-byte key succeeded")
	}
	dk := bytes.Repeat([]byte{7}, DataKeySize)
	w1, err := k.pub.Wrap(dk)
	if err != nil {
		t.Fatal(err)
	}
	w2, _ := k.pub.Wrap(dk)
	if len(w1) != WrappedKeySize || bytes.Equal(w1, w2) {
		t.Errorf("wrapped key is %d bytes (want %d), or wrapping is deterministic", len(w1), WrappedKeySize)
	}
	if id := KeyID(w1); !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(id) || id == KeyID(w2) {
		t.Errorf("KeyID = %q", id)
	}
	got, err := k.unwrap(w1)
	if err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("unwrap = %x, %v", got, err)
	}
	// The info string binds the region: the same KEM key sealed for
	// another region's purpose does not open.
	other, err := hpke.Seal(k.pub.pk, kdf, aead, info("moscow"), dk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.unwrap(other); err == nil {
		t.Error("a key sealed with moscow's info string unwrapped as zurich's")
	}
}

func TestKeysPersist(t *testing.T) {
	dir := t.TempDir()
	k1, err := loadOrCreateKey(dir, "zurich")
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "zurich.key"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	k2, err := loadOrCreateKey(dir, "zurich")
	if err != nil {
		t.Fatal(err)
	}
	if k1.pub.String() != k2.pub.String() {
		t.Error("second load made a new key")
	}
	// A key file renamed to another region is refused, not trusted.
	b, _ := os.ReadFile(filepath.Join(dir, "zurich.key"))
	os.WriteFile(filepath.Join(dir, "moscow.key"), b, 0o600)
	if _, err := loadOrCreateKey(dir, "moscow"); err == nil {
		t.Error("zurich's key was accepted as moscow's")
	}
	os.WriteFile(filepath.Join(dir, "paris.key"), []byte("garbage\n"), 0o600)
	if _, err := loadOrCreateKey(dir, "paris"); err == nil {
		t.Error("a garbage key file was accepted")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}
