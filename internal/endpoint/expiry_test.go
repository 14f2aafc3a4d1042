package endpoint

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testNow is the time of every verifier the tests make without a clock of
// their own: an hour after the vectors' issue time, so that tests do not
// expire with the calendar.
var testNow = fixedIdentity.IssuedAt.Add(time.Hour)

func init() { timeNow = func() time.Time { return testNow } }

// fixedIdentityV2 is the identity of the version 2 test vector.
var fixedIdentityV2 = Identity{
	ID:        fixedIdentity.ID,
	Country:   "DE",
	Region:    "zurich",
	IssuedAt:  fixedIdentity.IssuedAt,
	ExpiresAt: fixedIdentity.IssuedAt.Add(DefaultLifetime),
}

// TestVectorsV2 pins the version 2 format; `go test -run TestVectorsV2
// -update` rewrites testdata/token-v2.txt, and gives the same bytes every
// time. testdata/token.txt stays the version 1 vector, a token issued
// before tokens carried an expiry.
func TestVectorsV2(t *testing.T) {
	iss := testIssuer(t, 1)
	tok, err := iss.Issue(fixedIdentityV2)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "token-v2.txt")
	if *update {
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
	if id, err := iss.Verifier().Verify(tok); err != nil || id != fixedIdentityV2 {
		t.Errorf("Verify(testdata token) = %+v, %v", id, err)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	raw, _ := parseID(fixedIdentityV2.ID)
	var wantPayload []byte
	wantPayload = append(wantPayload, 2)
	wantPayload = binary.BigEndian.AppendUint32(wantPayload, iss.signer.KeyHash())
	wantPayload = binary.BigEndian.AppendUint64(wantPayload, uint64(fixedIdentityV2.IssuedAt.Unix()))
	wantPayload = binary.BigEndian.AppendUint64(wantPayload, uint64(fixedIdentityV2.ExpiresAt.Unix()))
	wantPayload = append(wantPayload, raw[:]...)
	wantPayload = append(wantPayload, "DE\x06zurich"...)
	if !bytes.Equal(payload, wantPayload) {
		t.Errorf("payload = %x, want %x", payload, wantPayload)
	}
	long := fixedIdentityV2
	long.Region = strings.Repeat("z", 32)
	if tok, _ := iss.Issue(long); len(tok) != 187 {
		t.Errorf("the longest token has %d characters, want 187", len(tok))
	}
}

// TestExpiry: a token verifies until its expiry and is refused with
// ErrExpiredToken from then on; a version 1 token expires DefaultLifetime
// after its issue time.
func TestExpiry(t *testing.T) {
	iss := testIssuer(t, 1)
	at := func(tm time.Time) *Verifier { return iss.Verifier().WithClock(func() time.Time { return tm }) }
	short := fixedIdentity
	short.ExpiresAt = short.IssuedAt.Add(time.Minute)
	v2, _ := iss.Issue(short)
	v1, _ := iss.Issue(fixedIdentity)
	for _, tc := range []struct {
		name  string
		tok   string
		at    time.Time
		valid bool
	}{
		{"v2 before expiry", v2, short.ExpiresAt.Add(-time.Second), true},
		{"v2 at expiry", v2, short.ExpiresAt, false},
		{"v2 after expiry", v2, short.ExpiresAt.Add(time.Hour), false},
		// Issued 2026-11-22: its default lifetime ends before LegacyExpiry,
		// which an upgrade grants every version 1 token.
		{"v1 after its default lifetime, before LegacyExpiry", v1, fixedIdentity.IssuedAt.Add(DefaultLifetime), true},
		{"v1 before LegacyExpiry", v1, LegacyExpiry.Add(-time.Second), true},
		{"v1 at LegacyExpiry", v1, LegacyExpiry, false},
	} {
		id, err := at(tc.at).Verify(tc.tok)
		switch {
		case tc.valid && err != nil:
			t.Errorf("%s: Verify = %v", tc.name, err)
		case !tc.valid && (!errors.Is(err, ErrExpiredToken) || errors.Is(err, ErrBadToken)):
			t.Errorf("%s: Verify = %+v, %v; want ErrExpiredToken", tc.name, id, err)
		}
	}
	// The version 1 vector, a token issued before expiry existed, still
	// verifies within its default lifetime.
	b, err := os.ReadFile("testdata/token.txt")
	if err != nil {
		t.Fatal(err)
	}
	if id, err := iss.Verifier().Verify(strings.TrimSpace(string(b))); err != nil || !id.ExpiresAt.IsZero() || !id.Expiry().Equal(LegacyExpiry) {
		t.Errorf("version 1 vector: %+v, %v", id, err)
	}
	// Register gives DefaultLifetime.
	id, tok, err := iss.Register("DE", "zurich")
	if err != nil {
		t.Fatal(err)
	}
	if !id.ExpiresAt.Equal(id.IssuedAt.Add(DefaultLifetime)) {
		t.Errorf("Register: expires %v, issued %v", id.ExpiresAt, id.IssuedAt)
	}
	if _, err := at(id.IssuedAt).Verify(tok); err != nil {
		t.Errorf("a registered token: %v", err)
	}
	if _, err := at(id.ExpiresAt).Verify(tok); !errors.Is(err, ErrExpiredToken) {
		t.Errorf("a registered token at its expiry: %v", err)
	}
	// Forged expiries do not verify; impossible ones are malformed.
	p, s := decodeToken(t, v2)
	binary.BigEndian.PutUint64(p[13:21], uint64(short.ExpiresAt.Add(DefaultLifetime).Unix()))
	if _, err := at(testNow).Verify(encodeToken(p, s)); !errors.Is(err, ErrBadToken) {
		t.Errorf("a token with its expiry moved: %v, want ErrBadToken", err)
	}
	for name, exp := range map[string]time.Time{
		"expires at issue":   short.IssuedAt,
		"expires before":     short.IssuedAt.Add(-time.Second),
		"expires year 10000": time.Unix(maxIssuedAt, 0),
	} {
		bad := short
		bad.ExpiresAt = exp
		if tok, err := iss.Issue(bad); err == nil {
			t.Errorf("%s: Issue = %q", name, tok)
		}
		binary.BigEndian.PutUint64(p[13:21], uint64(exp.Unix()))
		sig, _ := iss.signer.Sign(append([]byte(signingPrefix), p...))
		if _, err := at(testNow).Verify(encodeToken(p, sig)); !errors.Is(err, ErrMalformedToken) {
			t.Errorf("%s, signed: %v, want ErrMalformedToken", name, err)
		}
	}
}

// TestRevocations: a revoked endpoint's tokens are refused by every
// verifier holding the list, at once and after reopening it, and by the
// verifiers of an issuer given the list.
func TestRevocations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revoked.json")
	rl, err := OpenRevocations(path)
	if err != nil {
		t.Fatal(err)
	}
	iss := testIssuer(t, 1).WithRevocations(rl)
	a, tokA, _ := iss.Register("DE", "zurich")
	_, tokB, _ := iss.Register("RU", "moscow")
	v := iss.Verifier()
	for _, tok := range []string{tokA, tokB} {
		if _, err := v.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if err := rl.Revoke(a.ID, testNow); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tokA); !errors.Is(err, ErrRevokedToken) || errors.Is(err, ErrBadToken) {
		t.Errorf("revoked token: %v, want ErrRevokedToken", err)
	}
	if _, err := iss.Verifier().Verify(tokA); !errors.Is(err, ErrRevokedToken) {
		t.Errorf("revoked token, new verifier: %v, want ErrRevokedToken", err)
	}
	if _, err := v.Verify(tokB); err != nil {
		t.Errorf("another endpoint's token: %v", err)
	}
	// A token re-issued for the revoked id is refused too.
	again := a
	again.IssuedAt = a.IssuedAt.Add(time.Second)
	if tok, _ := iss.Issue(again); tok != "" {
		if _, err := v.Verify(tok); !errors.Is(err, ErrRevokedToken) {
			t.Errorf("re-issued token of a revoked id: %v", err)
		}
	}
	if err := rl.Revoke(a.ID, testNow.Add(time.Hour)); err != nil {
		t.Errorf("revoking again: %v", err)
	}
	if err := rl.Revoke("ep_nope", testNow); err == nil {
		t.Error("Revoke of a malformed id succeeded")
	}

	rl2, err := OpenRevocations(path)
	if err != nil {
		t.Fatal(err)
	}
	if !rl2.Revoked(a.ID) || rl2.ids[a.ID] != testNow.Truncate(time.Second) {
		t.Errorf("after reopening: %v", rl2.ids)
	}
	if _, err := testIssuer(t, 1).WithRevocations(rl2).Verifier().Verify(tokA); !errors.Is(err, ErrRevokedToken) {
		t.Errorf("after reopening: %v", err)
	}
	var none *Revocations
	if none.Revoked(a.ID) {
		t.Error("a nil list revokes")
	}
}

func TestRevocationsStoreFailure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sub")
	rl, err := OpenRevocations(filepath.Join(dir, "revoked.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rl.Revoke(fixedIdentity.ID, testNow); err == nil {
		t.Fatal("Revoke with an unwritable file succeeded")
	}
	if rl.Revoked(fixedIdentity.ID) {
		t.Error("a revocation that was not stored holds")
	}
}

func TestOpenRevocationsRejects(t *testing.T) {
	for name, file := range map[string]string{
		"not JSON":      `{`,
		"unknown field": `{"version":1,"revoked":[],"x":1}`,
		"version":       `{"version":2,"revoked":[]}`,
		"trailing data": `{"version":1,"revoked":[]} {}`,
		"bad id":        `{"version":1,"revoked":[{"id":"ep_x","time":"2026-11-22T10:00:00Z"}]}`,
	} {
		path := filepath.Join(t.TempDir(), "revoked.json")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenRevocations(path); err == nil {
			t.Errorf("%s: OpenRevocations succeeded", name)
		}
	}
}
