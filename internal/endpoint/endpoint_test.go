package endpoint

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

var update = flag.Bool("update", false, "rewrite the test vectors in testdata/")

// testIssuer returns an issuer whose key derives from seed, so that its
// tokens are the same on every run.
func testIssuer(t testing.TB, seed byte) *Issuer {
	t.Helper()
	const name = "vitrine.example/endpoints"
	s := bytes.Repeat([]byte{seed}, ed25519.SeedSize)
	vkey, err := note.NewEd25519VerifierKey(name, ed25519.NewKeyFromSeed(s).Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	hash := strings.SplitN(vkey, "+", 3)[1]
	signer, err := note.NewSigner("PRIVATE+KEY+" + name + "+" + hash + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, s...)))
	if err != nil {
		t.Fatal(err)
	}
	i, err := NewIssuer(signer, vkey)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// fixedIdentity is the identity of the test vectors.
var fixedIdentity = Identity{
	ID:       "ep_aebagbafaydqqcikbmga2dqpca",
	Country:  "DE",
	Region:   "zurich",
	IssuedAt: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
}

func TestRegisterVerify(t *testing.T) {
	iss := testIssuer(t, 1)
	v := iss.Verifier()
	seen := map[string]bool{}
	for _, tc := range []struct{ country, region string }{
		{"DE", "zurich"}, {"US", "zurich"}, {"JP", "zurich"}, {"RU", "moscow"}, {"BR", "moscow"},
		{"AQ", "a"}, {"ZW", strings.Repeat("z", 32)}, {"CH", "eu-west-1"},
	} {
		before := time.Now().Add(-time.Second)
		id, tok, err := iss.Register(tc.country, tc.region)
		if err != nil {
			t.Fatalf("Register(%q, %q) = %v", tc.country, tc.region, err)
		}
		if !ValidID(id.ID) || !strings.HasPrefix(id.ID, "ep_") || len(id.ID) != 29 {
			t.Errorf("id %q is not ep_ and 26 base32 characters", id.ID)
		}
		if seen[id.ID] {
			t.Errorf("id %q issued twice", id.ID)
		}
		seen[id.ID] = true
		if id.Country != tc.country || id.Region != tc.region || id.IssuedAt.Before(before) || id.IssuedAt.After(time.Now()) {
			t.Errorf("Register(%q, %q) = %+v", tc.country, tc.region, id)
		}
		if len(tok) > MaxTokenSize || !strings.HasPrefix(tok, "vt1.") {
			t.Errorf("token %q", tok)
		}
		got, err := v.Verify(tok)
		if err != nil {
			t.Fatalf("Verify(%q) = %v", tok, err)
		}
		if got != id {
			t.Errorf("Verify = %+v, want %+v", got, id)
		}
	}
}

func TestRegisterInvalid(t *testing.T) {
	iss := testIssuer(t, 1)
	for _, tc := range []struct{ country, region string }{
		{"XX", "zurich"}, {"de", "zurich"}, {"", "zurich"}, {"UK", "zurich"},
		{"DE", ""}, {"DE", "Zurich"}, {"DE", strings.Repeat("z", 33)}, {"DE", "zu rich"},
	} {
		if _, tok, err := iss.Register(tc.country, tc.region); err == nil {
			t.Errorf("Register(%q, %q) = %q, want an error", tc.country, tc.region, tok)
		}
	}
	for _, id := range []Identity{
		{ID: "ep_abc", Country: "DE", Region: "zurich", IssuedAt: fixedIdentity.IssuedAt},
		{ID: "ep_aebagbafaydqqcikbmga2dqpcb", Country: "DE", Region: "zurich", IssuedAt: fixedIdentity.IssuedAt}, // non-zero unused bits
		{ID: fixedIdentity.ID, Country: "DE", Region: "zurich"},                                                  // zero time is year 1
		{ID: fixedIdentity.ID, Country: "DE", Region: "zurich", IssuedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if tok, err := iss.Issue(id); err == nil {
			t.Errorf("Issue(%+v) = %q, want an error", id, tok)
		}
	}
}

// TestVectors pins the token format; `go test -run TestVectors -update`
// rewrites testdata/token.txt, and gives the same bytes every time.
func TestVectors(t *testing.T) {
	tok, err := testIssuer(t, 1).Issue(fixedIdentity)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "token.txt")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if tok+"\n" != string(want) {
		t.Errorf("token = %q, testdata has %q", tok, want)
	}
	id, err := testIssuer(t, 1).Verifier().Verify(strings.TrimSpace(string(want)))
	if err != nil || id != fixedIdentity {
		t.Errorf("Verify(testdata token) = %+v, %v", id, err)
	}
	// The payload layout of the package documentation.
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	raw, _ := parseID(fixedIdentity.ID)
	var wantPayload []byte
	wantPayload = append(wantPayload, 1)
	wantPayload = binary.BigEndian.AppendUint32(wantPayload, testIssuer(t, 1).signer.KeyHash())
	wantPayload = binary.BigEndian.AppendUint64(wantPayload, uint64(fixedIdentity.IssuedAt.Unix()))
	wantPayload = append(wantPayload, raw[:]...)
	wantPayload = append(wantPayload, "DE\x06zurich"...)
	if !bytes.Equal(payload, wantPayload) {
		t.Errorf("payload = %x, want %x", payload, wantPayload)
	}
}

// TestTamper changes every character of a token in turn: none of the
// results verifies.
func TestTamper(t *testing.T) {
	_, v, tok := fixture(t)
	for i := range len(tok) {
		for _, c := range []byte{'A', 'B', 'g', 'Q', '-', '_', '.', '=', '\n'} {
			if tok[i] == c {
				continue
			}
			bad := tok[:i] + string(c) + tok[i+1:]
			if id, err := v.Verify(bad); err == nil {
				t.Fatalf("Verify accepted %q (character %d changed to %q): %+v", bad, i, c, id)
			} else if !errors.Is(err, ErrMalformedToken) && !errors.Is(err, ErrBadToken) {
				t.Fatalf("Verify(%q) = %v, matching neither sentinel", bad, err)
			}
		}
	}
	// Truncated and extended.
	for _, bad := range []string{tok[:len(tok)-1], tok + "A", tok + "\n", " " + tok, tok + ".", tok[:strings.LastIndex(tok, ".")]} {
		if _, err := v.Verify(bad); err == nil {
			t.Errorf("Verify accepted %q", bad)
		}
	}
}

func TestOtherIssuer(t *testing.T) {
	a, b := testIssuer(t, 1), testIssuer(t, 2)
	tok, err := b.Issue(fixedIdentity)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verifier().Verify(tok); !errors.Is(err, ErrBadToken) {
		t.Errorf("A's verifier on B's token: %v, want ErrBadToken", err)
	}
	// A verifier trusting both (a key rotation) accepts both.
	both, err := NewVerifier(a.VerifierKey(), b.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	tokA, _ := a.Issue(fixedIdentity)
	for _, tk := range []string{tok, tokA} {
		if _, err := both.Verify(tk); err != nil {
			t.Errorf("verifier with both keys: %v", err)
		}
	}
	// B's signature under A's key hash: still not A's signature.
	p, s := decodeToken(t, tok)
	binary.BigEndian.PutUint32(p[1:5], a.signer.KeyHash())
	if _, err := a.Verifier().Verify(encodeToken(p, s)); !errors.Is(err, ErrBadToken) {
		t.Errorf("B's signature relabelled as A's: %v, want ErrBadToken", err)
	}
}

// TestForge shows that the region and country cannot be changed: a token
// re-encoded with another region or country, or with the payload of one
// token and the signature of another, is refused as a bad signature.
func TestForge(t *testing.T) {
	iss, v, tok := fixture(t)
	p, s := decodeToken(t, tok)
	for name, edit := range map[string]func([]byte) []byte{
		"region":    func(p []byte) []byte { return append(append(p[:31:31], 6), "moscow"...) },
		"country":   func(p []byte) []byte { q := bytes.Clone(p); copy(q[29:31], "RU"); return q },
		"id":        func(p []byte) []byte { q := bytes.Clone(p); q[20] ^= 1; return q },
		"issued at": func(p []byte) []byte { q := bytes.Clone(p); q[12]++; return q },
	} {
		if _, err := v.Verify(encodeToken(edit(p), s)); !errors.Is(err, ErrBadToken) {
			t.Errorf("token with %s changed: %v, want ErrBadToken", name, err)
		}
	}
	other := fixedIdentity
	other.Region, other.Country = "moscow", "RU"
	tok2, _ := iss.Issue(other)
	p2, s2 := decodeToken(t, tok2)
	if _, err := v.Verify(encodeToken(p2, s)); !errors.Is(err, ErrBadToken) {
		t.Errorf("moscow payload with zurich signature: %v, want ErrBadToken", err)
	}
	if _, err := v.Verify(encodeToken(p, s2)); !errors.Is(err, ErrBadToken) {
		t.Errorf("zurich payload with moscow signature: %v, want ErrBadToken", err)
	}
	// A signature over the payload without the domain prefix does not verify.
	raw := ed25519.Sign(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32)), p)
	if _, err := v.Verify(encodeToken(p, raw)); !errors.Is(err, ErrBadToken) {
		t.Errorf("signature without the domain prefix: %v, want ErrBadToken", err)
	}
}

// TestMalformed checks the strict parsing. The payloads here are signed by
// the issuer's key, so that only the parsing can refuse them.
func TestMalformed(t *testing.T) {
	iss, v, tok := fixture(t)
	p, s := decodeToken(t, tok)
	signed := func(p []byte) string {
		sig, err := iss.signer.Sign(append([]byte(signingPrefix), p...))
		if err != nil {
			t.Fatal(err)
		}
		return encodeToken(p, sig)
	}
	p64, s64, _ := strings.Cut(strings.TrimPrefix(tok, "vt1."), ".")
	for _, tc := range []struct{ name, token string }{
		{"empty", ""},
		{"prefix only", "vt1."},
		{"other version", "vt2." + p64 + "." + s64},
		{"upper-case prefix", "VT1." + p64 + "." + s64},
		{"no signature", "vt1." + p64},
		{"empty signature", "vt1." + p64 + "."},
		{"empty payload", "vt1.." + s64},
		{"three parts", tok + ".AAAA"},
		{"padding", "vt1." + base64.URLEncoding.EncodeToString(p) + "." + s64},
		{"standard alphabet", "vt1." + strings.NewReplacer("-", "+", "_", "/").Replace(p64) + "." + s64 + "+"},
		{"newline", "vt1." + p64[:10] + "\n" + p64[10:] + "." + s64},
		{"space", tok + " "},
		{"too long", tok + strings.Repeat("A", MaxTokenSize)},
		{"short signature", encodeToken(p, s[:63])},
		{"long signature", encodeToken(p, append(bytes.Clone(s), 0))},
		{"non-canonical base64", "vt1." + p64 + "." + s64[:len(s64)-1] + nextChar(s64[len(s64)-1])},
		{"payload version 2 without expiry", signed(append([]byte{2}, p[1:]...))},
		{"payload version 3", signed(append([]byte{3}, p[1:]...))},
		{"short payload", signed(p[:fixedPayload])},
		{"trailing byte", signed(append(bytes.Clone(p), 'x'))},
		{"region length too long", signed(append(bytes.Clone(p[:31]), 7, 'm', 'o', 's', 'c', 'o', 'w'))},
		{"empty region", signed(append(bytes.Clone(p[:31]), 0))},
		{"upper-case region", signed(append(bytes.Clone(p[:31]), 6, 'Z', 'u', 'r', 'i', 'c', 'h'))},
		{"unknown country", signed(func() []byte { q := bytes.Clone(p); copy(q[29:31], "XX"); return q }())},
		{"lower-case country", signed(func() []byte { q := bytes.Clone(p); copy(q[29:31], "de"); return q }())},
		{"year 10000", signed(func() []byte { q := bytes.Clone(p); binary.BigEndian.PutUint64(q[5:13], maxIssuedAt); return q }())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := v.Verify(tc.token)
			if !errors.Is(err, ErrMalformedToken) || errors.Is(err, ErrBadToken) {
				t.Errorf("Verify(%q) = %+v, %v; want ErrMalformedToken", tc.token, id, err)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "verifying endpoint token: malformed endpoint token: ") {
				t.Errorf("error %q does not name the operation", err)
			}
		})
	}
}

// nextChar returns another base64url character that differs from c only in
// its lowest bits, which the last character of an encoding of 64 bytes
// does not use.
func nextChar(c byte) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, c)
	return string(alphabet[i^1])
}

func TestNewIssuerMismatch(t *testing.T) {
	a, b := testIssuer(t, 1), testIssuer(t, 2)
	if _, err := NewIssuer(a.signer, b.vkey); err == nil {
		t.Error("NewIssuer with another key's verifier key succeeded")
	}
	if _, err := NewIssuer(a.signer, "not a key"); err == nil {
		t.Error("NewIssuer with a garbage verifier key succeeded")
	}
}

func TestNewVerifier(t *testing.T) {
	a := testIssuer(t, 1)
	for name, keys := range map[string][]string{
		"none":      nil,
		"garbage":   {"garbage"},
		"duplicate": {a.VerifierKey(), a.VerifierKey()},
	} {
		if _, err := NewVerifier(keys...); err == nil {
			t.Errorf("NewVerifier(%s) succeeded", name)
		}
	}
}

func TestLoadOrCreateIssuer(t *testing.T) {
	dir := t.TempDir()
	sk, vk := filepath.Join(dir, "endpoints.key"), filepath.Join(dir, "endpoints.vkey")
	a, err := LoadOrCreateIssuer(sk, vk, "vitrine.example/endpoints")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(sk); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, %v; want mode 0600", st, err)
	}
	_, tok, err := a.Register("DE", "zurich")
	if err != nil {
		t.Fatal(err)
	}
	// After a restart, old tokens still verify, and the published key is the same.
	b, err := LoadOrCreateIssuer(sk, vk, "vitrine.example/endpoints")
	if err != nil {
		t.Fatal(err)
	}
	if b.VerifierKey() != a.VerifierKey() {
		t.Errorf("verifier key changed across loads")
	}
	published, _ := os.ReadFile(vk)
	v, err := NewVerifier(strings.TrimSpace(string(published)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok); err != nil {
		t.Errorf("published key does not verify a token: %v", err)
	}
}

func TestPseudonym(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	// From `openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef`.
	const want = "hmac-sha256:277f6cc8161209c74100089c0431ee780e0fa12439bf90f64e571052874b8f4e"
	if got := Pseudonym(key, "ep_aaaaaaaaaaaaaaaaaaaaaaaaaa"); got != want {
		t.Errorf("Pseudonym = %q, want %q", got, want)
	}
	if Pseudonym(key, "ep_a") == Pseudonym([]byte("another key of sixteen+ bytes"), "ep_a") {
		t.Error("two keys give the same pseudonym")
	}
	for _, short := range [][]byte{nil, []byte("short")} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Pseudonym with a %d-byte key did not panic", len(short))
				}
			}()
			Pseudonym(short, "ep_a")
		}()
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		fixedIdentity.ID:                 true,
		"ep_aaaaaaaaaaaaaaaaaaaaaaaaaa":  true,
		"ep_aaaaaaaaaaaaaaaaaaaaaaaaab":  false, // unused bits set
		"ep_AAAAAAAAAAAAAAAAAAAAAAAAAA":  false,
		"ep_aaaaaaaaaaaaaaaaaaaaaaaaa":   false,
		"ep_aaaaaaaaaaaaaaaaaaaaaaaaaaa": false,
		"xx_aaaaaaaaaaaaaaaaaaaaaaaaaa":  false,
		"ep_aaaaaaaaaaaaaaaaaaaaaaaa1a":  false,
		"":                               false,
	} {
		if got := ValidID(id); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", id, got, want)
		}
	}
}

// fixture returns the test issuer, its verifier and the token of
// fixedIdentity.
func fixture(t *testing.T) (*Issuer, *Verifier, string) {
	t.Helper()
	iss := testIssuer(t, 1)
	tok, err := iss.Issue(fixedIdentity)
	if err != nil {
		t.Fatal(err)
	}
	return iss, iss.Verifier(), tok
}

func decodeToken(t *testing.T, tok string) (payload, sig []byte) {
	t.Helper()
	parts := strings.Split(tok, ".")
	p, err1 := base64.RawURLEncoding.DecodeString(parts[1])
	s, err2 := base64.RawURLEncoding.DecodeString(parts[2])
	if len(parts) != 3 || err1 != nil || err2 != nil {
		t.Fatalf("cannot take token %q apart", tok)
	}
	return p, s
}

func encodeToken(payload, sig []byte) string {
	return "vt1." + base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(sig)
}
