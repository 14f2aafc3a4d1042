package keys

import (
	"crypto/rand"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

func TestVerifierKeyMatchesGenerated(t *testing.T) {
	// Many keys, so that base64 "+" characters in the key are exercised.
	for i := 0; i < 200; i++ {
		skey, vkey, err := note.GenerateKey(rand.Reader, "example.com/log")
		if err != nil {
			t.Fatal(err)
		}
		got, err := VerifierKey(skey)
		if err != nil {
			t.Fatalf("VerifierKey(%q): %v", skey, err)
		}
		if got != vkey {
			t.Fatalf("VerifierKey = %q, want %q", got, vkey)
		}
	}
	for _, bad := range []string{"", "PRIVATE+KEY+x", "PRIVATE+KEY+x+00000000+AAAA", "vkey+1234+AAAA"} {
		if _, err := VerifierKey(bad); err == nil {
			t.Errorf("VerifierKey(%q) succeeded, want error", bad)
		}
	}
}

func TestLoadOrCreateSigner(t *testing.T) {
	dir := t.TempDir()
	sk, vk := filepath.Join(dir, "log.key"), filepath.Join(dir, "log.vkey")
	s1, v1, err := LoadOrCreateSigner(sk, vk, "example.com/log")
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(sk)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("signing key mode = %v, want 0600", st.Mode().Perm())
	}
	s2, v2, err := LoadOrCreateSigner(sk, vk, "example.com/log")
	if err != nil {
		t.Fatal(err)
	}
	if v1 != v2 || s1.KeyHash() != s2.KeyHash() {
		t.Errorf("second start made a new key: %q then %q", v1, v2)
	}
	if _, _, err := LoadOrCreateSigner(sk, vk, "example.com/other"); err == nil {
		t.Error("opening the key under another name succeeded; want an error")
	}
	// The verifier key file is what verifiers read: it must verify what the signer signs.
	b, _ := os.ReadFile(vk)
	v, err := note.NewVerifier(string(b[:len(b)-1]))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := note.Sign(&note.Note{Text: "hello\n"}, s2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		t.Errorf("log.vkey does not verify the key's signature: %v", err)
	}
}

func TestTokenAndBearer(t *testing.T) {
	p := filepath.Join(t.TempDir(), "add.token")
	tok, err := LoadOrCreateToken(p)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreateToken(p)
	if err != nil || again != tok {
		t.Fatalf("token changed across loads: %q, %q (%v)", tok, again, err)
	}
	tests := []struct {
		header string
		want   bool
	}{
		{"Bearer " + tok, true},
		{"bearer " + tok, true},
		{"Bearer " + tok + "x", false},
		{"Bearer " + tok[:len(tok)-1], false},
		{tok, false},
		{"", false},
		{"Basic " + tok, false},
	}
	for _, tc := range tests {
		r, _ := http.NewRequest("GET", "/", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		if got := BearerEqual(r, tok); got != tc.want {
			t.Errorf("BearerEqual(%q) = %v, want %v", tc.header, got, tc.want)
		}
	}
	if err := os.WriteFile(p, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateToken(p); err == nil {
		t.Error("a short token was accepted")
	}
}
