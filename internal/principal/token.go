package principal

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
)

const (
	tokenPrefix = "vp1."
	tokenBytes  = 32
)

// tokenLen is the length of every token.
var tokenLen = len(tokenPrefix) + base64.RawURLEncoding.EncodedLen(tokenBytes)

// newToken returns a fresh token and its hash.
func newToken() (string, [sha256.Size]byte) {
	b := make([]byte, tokenBytes)
	rand.Read(b) // never fails; see crypto/rand.Read
	tok := tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return tok, sha256.Sum256([]byte(tok))
}

// wellFormedToken reports whether tok is "vp1." and the canonical unpadded
// base64url encoding of 32 bytes. It only rejects garbage early: a token
// is checked by its hash, which no other spelling has.
func wellFormedToken(tok string) bool {
	if len(tok) != tokenLen || !strings.HasPrefix(tok, tokenPrefix) {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(tok[len(tokenPrefix):])
	return err == nil && len(b) == tokenBytes
}

// bearer returns the token of r's "Authorization: Bearer <token>" header.
// The error matches ErrNoCredential or ErrBadCredential and never contains
// the header's value.
func bearer(r *http.Request) (string, error) {
	vals := r.Header.Values("Authorization")
	switch {
	case len(vals) == 0 || len(vals) == 1 && strings.TrimSpace(vals[0]) == "":
		return "", fmt.Errorf("%w: want an \"Authorization: Bearer <token>\" header", ErrNoCredential)
	case len(vals) > 1:
		return "", fmt.Errorf("%w: more than one Authorization header", ErrBadCredential)
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("%w: the Authorization header is not \"Bearer <token>\"", ErrBadCredential)
	}
	tok = strings.TrimSpace(tok)
	if !wellFormedToken(tok) {
		return "", fmt.Errorf("%w: the bearer token is not a principal token (%q and 43 base64url characters)", ErrBadCredential, tokenPrefix)
	}
	return tok, nil
}

// errUnknownToken is the error for a well-formed token that belongs to no
// principal.
var errUnknownToken = fmt.Errorf("%w: unknown token", ErrBadCredential)

// errExpired is the error for the token of a principal whose expiry has
// passed. It matches ErrBadCredential, so that a caller that knows only
// good and bad credentials refuses it.
var errExpired = fmt.Errorf("%w: %w", ErrBadCredential, ErrExpired)
