package endpoint

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// FuzzVerify checks that Verify never panics, that each error matches
// exactly one sentinel, and that it accepts only tokens the issuer made:
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
	} {
		for _, i := range []*Issuer{iss, other} {
			tok, err := i.Issue(id)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(tok)
		}
	}
	if b, err := os.ReadFile("testdata/token.txt"); err == nil {
		f.Add(strings.TrimSpace(string(b)))
	}
	f.Add("vt1..")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := v.Verify(tok)
		if err != nil {
			if errors.Is(err, ErrMalformedToken) == errors.Is(err, ErrBadToken) {
				t.Fatalf("Verify(%q) = %v, which must match exactly one sentinel", tok, err)
			}
			return
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
