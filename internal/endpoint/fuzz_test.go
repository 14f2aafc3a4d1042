package endpoint

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// FuzzVerify checks that Verify never panics, that each error matches
// exactly one sentinel, and that it accepts only tokens the issuer made
// (of either payload version) that have not expired:
// an accepted token must be, byte for byte, the token the issuer gives the
// identity it carries. Seeds are valid tokens, which the fuzzer mutates.
func FuzzVerify(f *testing.F) {
	iss := testIssuer(f, 1)
	other := testIssuer(f, 2)
	v := iss.Verifier()
	for _, id := range []Identity{
		fixedIdentity,
		{ID: "ep_aaaaaaaaaaaaaaaaaaaaaaaaaa", Country: "RU", Region: "moscow", IssuedAt: time.Unix(0, 0)},
		{ID: "ep_77777777777777777777777774", Country: "ZW", Region: strings.Repeat("a", 32), IssuedAt: time.Unix(maxIssuedAt-1, 0)},
		{ID: fixedIdentity.ID, Country: "US", Region: "a", IssuedAt: fixedIdentity.IssuedAt},
		fixedIdentityV2,
		{ID: "ep_77777777777777777777777774", Country: "ZW", Region: strings.Repeat("a", 32), IssuedAt: time.Unix(0, 0), ExpiresAt: time.Unix(maxIssuedAt-1, 0)},
		{ID: "ep_aaaaaaaaaaaaaaaaaaaaaaaaaa", Country: "RU", Region: "moscow", IssuedAt: time.Unix(0, 0), ExpiresAt: time.Unix(1, 0)},
	} {
		for _, i := range []*Issuer{iss, other} {
			tok, err := i.Issue(id)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(tok)
		}
	}
	for _, name := range []string{"testdata/token.txt", "testdata/token-v2.txt"} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(strings.TrimSpace(string(b)))
		}
	}
	f.Add("vt1..")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := v.Verify(tok)
		if err != nil {
			n := 0
			for _, s := range []error{ErrMalformedToken, ErrBadToken, ErrExpiredToken, ErrRevokedToken} {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("Verify(%q) = %v, which must match exactly one sentinel", tok, err)
			}
			return
		}
		if !testNow.Before(id.Expiry()) {
			t.Fatalf("Verify accepted %q, which expired at %v", tok, id.Expiry())
		}
		want, err := iss.Issue(id)
		if err != nil {
			t.Fatalf("Verify accepted %q with identity %+v that Issue refuses: %v", tok, id, err)
		}
		if want != tok {
			t.Fatalf("Verify accepted %q, but the issuer's token for %+v is %q", tok, id, want)
		}
	})
}
