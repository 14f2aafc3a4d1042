package endpoint

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/residency"
)

// Errors that [Verifier.Verify] returns, wrapped with %w; test with
// errors.Is. Every error Verify returns matches exactly one of them.
var (
	// ErrMalformedToken means the string is not a well-formed endpoint
	// token: wrong prefix, size, encoding or payload. It is a client bug or
	// garbage, not necessarily an attack.
	ErrMalformedToken = errors.New("malformed endpoint token")
	// ErrBadToken means a well-formed token does not carry a valid
	// signature by a key the verifier trusts: forged, altered, or issued
	// by someone else.
	ErrBadToken = errors.New("endpoint token signature does not verify")
	// ErrExpiredToken means a token the issuer made has expired (see
	// [Identity.Expiry]): the endpoint registers again.
	ErrExpiredToken = errors.New("endpoint token expired")
	// ErrRevokedToken means a token the issuer made belongs to an endpoint
	// that was revoked (see [Revocations]).
	ErrRevokedToken = errors.New("endpoint revoked")
)

// MaxTokenSize is the longest string [Verifier.Verify] looks at. The
// longest valid token has 187 characters.
const MaxTokenSize = 256

// DefaultLifetime is how long a token stays valid: what [Issuer.Register]
// gives a new token, and the expiry of a version 1 token, which carries
// none, counted from its issue time.
const DefaultLifetime = 90 * 24 * time.Hour

const (
	tokenPrefix = "vt1."
	// payloadV1 carries no expiry; payloadV2 adds it after the issue
	// time. Issue writes version 1 only for an identity without one.
	payloadV1 = 1
	payloadV2 = 2
	// signingPrefix separates token signatures from every other use of
	// the key.
	signingPrefix = "vitrine endpoint token v1\x00"
	// fixedPayload is the payload size of version 1 before the region
	// name; version 2 has 8 bytes more.
	fixedPayload = 1 + 4 + 8 + 16 + 2 + 1
	sigSize      = 64
)

// timeNow is the clock of a verifier made without [Verifier.WithClock].
var timeNow = time.Now

// Issuer makes endpoint identities and signs their tokens. It is safe for
// concurrent use.
type Issuer struct {
	signer  note.Signer
	vkey    string
	revoked *Revocations
}

// NewIssuer returns an issuer that signs with signer, an Ed25519
// signed-note key whose verifier key is vkey. It checks that the two
// belong together.
func NewIssuer(signer note.Signer, vkey string) (*Issuer, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("creating endpoint token issuer: %w", err)
	}
	msg := []byte(signingPrefix + "key check")
	sig, err := signer.Sign(msg)
	if err != nil {
		return nil, fmt.Errorf("creating endpoint token issuer: %w", err)
	}
	if v.Name() != signer.Name() || v.KeyHash() != signer.KeyHash() || len(sig) != sigSize || !v.Verify(msg, sig) {
		return nil, errors.New("creating endpoint token issuer: the verifier key does not match the signing key")
	}
	return &Issuer{signer: signer, vkey: vkey}, nil
}

// LoadOrCreateIssuer returns an issuer whose key is stored at skeyPath
// (mode 0600), generating an Ed25519 signed-note key named name on first
// use, and writes its verifier key to vkeyPath; see
// keys.LoadOrCreateSigner. Tokens stay valid across restarts only while
// the key file does.
func LoadOrCreateIssuer(skeyPath, vkeyPath, name string) (*Issuer, error) {
	signer, vkey, err := keys.LoadOrCreateSigner(skeyPath, vkeyPath, name)
	if err != nil {
		return nil, fmt.Errorf("loading endpoint token key: %w", err)
	}
	return NewIssuer(signer, vkey)
}

// VerifierKey returns the signed-note verifier key that checks the
// issuer's tokens, for [NewVerifier] and for publication.
func (i *Issuer) VerifierKey() string { return i.vkey }

// WithRevocations returns a copy of the issuer whose verifiers refuse the
// tokens of the endpoints revoked in r.
func (i *Issuer) WithRevocations(r *Revocations) *Issuer {
	c := *i
	c.revoked = r
	return &c
}

// Verifier returns a verifier for the issuer's tokens, which refuses
// expired ones and those of the endpoints revoked in the issuer's
// revocations (see [Issuer.WithRevocations]).
func (i *Issuer) Verifier() *Verifier {
	v, err := NewVerifier(i.vkey)
	if err != nil {
		panic("endpoint: issuer holds an invalid verifier key: " + err.Error()) // NewIssuer parsed it
	}
	return v.WithRevocations(i.revoked)
}

// Register makes a new endpoint identity in country with home region
// region, issued now and expiring after [DefaultLifetime], and returns it
// with its token. The caller picks the region, normally with
// residency.Policy.RegionFor; Register checks only that country is an
// assigned ISO 3166-1 alpha-2 code and that region is a valid region
// name. Registering again is how an endpoint gets a new token, under a
// new id, when its token expires or is revoked.
func (i *Issuer) Register(country, region string) (Identity, string, error) {
	id, _ := newID()
	issued := time.Unix(time.Now().Unix(), 0).UTC()
	ident := Identity{ID: id, Country: country, Region: region, IssuedAt: issued, ExpiresAt: issued.Add(DefaultLifetime)}
	tok, err := i.Issue(ident)
	if err != nil {
		return Identity{}, "", fmt.Errorf("registering endpoint: %w", err)
	}
	return ident, tok, nil
}

// Issue returns the token for id, which must be well formed: a valid id,
// country and region name, an issue time from 1970 to 9999, and an expiry
// after it and before the year 10000, or zero (only whole seconds are
// kept). An identity without expiry gets a version 1 token, which expires
// after [DefaultLifetime] from its issue time. Issue is deterministic: the
// same identity and key always give the same token. It is how an endpoint
// gets a new token for its existing id, after a relocation for instance.
func (i *Issuer) Issue(id Identity) (string, error) {
	if err := checkIdentity(id); err != nil {
		return "", fmt.Errorf("issuing endpoint token: %w", err)
	}
	raw, _ := parseID(id.ID)
	p := make([]byte, 0, fixedPayload+8+len(id.Region))
	if id.ExpiresAt.IsZero() {
		p = append(p, payloadV1)
	} else {
		p = append(p, payloadV2)
	}
	p = binary.BigEndian.AppendUint32(p, i.signer.KeyHash())
	p = binary.BigEndian.AppendUint64(p, uint64(id.IssuedAt.Unix()))
	if !id.ExpiresAt.IsZero() {
		p = binary.BigEndian.AppendUint64(p, uint64(id.ExpiresAt.Unix()))
	}
	p = append(p, raw[:]...)
	p = append(p, id.Country...)
	p = append(p, byte(len(id.Region)))
	p = append(p, id.Region...)
	sig, err := i.signer.Sign(append([]byte(signingPrefix), p...))
	if err != nil {
		return "", fmt.Errorf("issuing endpoint token: %w", err)
	}
	if len(sig) != sigSize {
		return "", fmt.Errorf("issuing endpoint token: the key made a %d-byte signature, not an Ed25519 one", len(sig))
	}
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(p) + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// Verifier checks endpoint tokens with public keys only, and their expiry
// and revocation. It is safe for concurrent use.
type Verifier struct {
	keys    map[uint32]note.Verifier
	now     func() time.Time
	revoked *Revocations
}

// NewVerifier returns a verifier that accepts tokens signed by any of the
// keys, given as signed-note verifier keys (see [Issuer.VerifierKey]).
// Several keys let tokens from a retired key stay valid during a rotation.
func NewVerifier(vkeys ...string) (*Verifier, error) {
	if len(vkeys) == 0 {
		return nil, errors.New("creating endpoint token verifier: no keys")
	}
	v := &Verifier{keys: make(map[uint32]note.Verifier, len(vkeys)), now: timeNow}
	for _, k := range vkeys {
		nv, err := note.NewVerifier(k)
		if err != nil {
			return nil, fmt.Errorf("creating endpoint token verifier: %w", err)
		}
		if _, dup := v.keys[nv.KeyHash()]; dup {
			return nil, fmt.Errorf("creating endpoint token verifier: two keys with hash %08x", nv.KeyHash())
		}
		v.keys[nv.KeyHash()] = nv
	}
	return v, nil
}

// WithRevocations returns a copy of v that also refuses the tokens of the
// endpoints revoked in r, from the moment r records them. A nil r revokes
// nothing.
func (v *Verifier) WithRevocations(r *Revocations) *Verifier {
	c := *v
	c.revoked = r
	return &c
}

// WithClock returns a copy of v that reads the time from now (default
// time.Now).
func (v *Verifier) WithClock(now func() time.Time) *Verifier {
	c := *v
	c.now = now
	return &c
}

// Verify checks token and returns the identity it carries. A token that is
// not well formed is an error matching [ErrMalformedToken]; one that is
// well formed but not signed by one of the verifier's keys matches
// [ErrBadToken]; one the issuer made that has expired [ErrExpiredToken];
// and one of a revoked endpoint [ErrRevokedToken]. Only a token an issuer
// made, byte for byte, verifies, and only until it expires or its
// endpoint is revoked.
func (v *Verifier) Verify(token string) (Identity, error) {
	payload, sig, err := splitToken(token)
	if err != nil {
		return Identity{}, fmt.Errorf("verifying endpoint token: %w", err)
	}
	id, keyHash, err := parsePayload(payload)
	if err != nil {
		return Identity{}, fmt.Errorf("verifying endpoint token: %w", err)
	}
	key, ok := v.keys[keyHash]
	if !ok {
		return Identity{}, fmt.Errorf("verifying endpoint token: %w: signed by unknown key %08x", ErrBadToken, keyHash)
	}
	// ed25519.Verify, which the note verifier calls, rejects
	// non-canonical signatures, so a valid token has one signature.
	if !key.Verify(append([]byte(signingPrefix), payload...), sig) {
		return Identity{}, fmt.Errorf("verifying endpoint token: %w", ErrBadToken)
	}
	if exp := id.Expiry(); !v.now().Before(exp) {
		return Identity{}, fmt.Errorf("verifying endpoint token: %w at %s; register the endpoint again", ErrExpiredToken, exp.Format(time.RFC3339))
	}
	if v.revoked.Revoked(id.ID) {
		return Identity{}, fmt.Errorf("verifying endpoint token: %w: %s", ErrRevokedToken, id.ID)
	}
	return id, nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedToken, fmt.Sprintf(format, args...))
}

// splitToken decodes the two base64url parts of a token, accepting only
// the one canonical encoding.
func splitToken(token string) (payload, sig []byte, err error) {
	if len(token) > MaxTokenSize {
		return nil, nil, malformed("longer than %d characters", MaxTokenSize)
	}
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return nil, nil, malformed("does not start with %q", tokenPrefix)
	}
	p64, s64, ok := strings.Cut(rest, ".")
	if !ok {
		return nil, nil, malformed("no signature")
	}
	if payload, err = decodePart(p64); err != nil {
		return nil, nil, malformed("payload: %v", err)
	}
	if sig, err = decodePart(s64); err != nil {
		return nil, nil, malformed("signature: %v", err)
	}
	if len(sig) != sigSize {
		return nil, nil, malformed("signature of %d bytes, want %d", len(sig), sigSize)
	}
	return payload, sig, nil
}

// decodePart decodes unpadded base64url. The standard decoder skips
// newlines and, without Strict, accepts non-zero trailing bits; both would
// give one token several spellings, so the alphabet is checked here and
// the decoding must be canonical.
func decodePart(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("empty")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return nil, fmt.Errorf("character %q is not unpadded base64url", c)
		}
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || base64.RawURLEncoding.EncodeToString(b) != s {
		return nil, errors.New("not canonical unpadded base64url")
	}
	return b, nil
}

// parsePayload reads the binary payload; see the package documentation.
func parsePayload(p []byte) (Identity, uint32, error) {
	if len(p) == 0 {
		return Identity{}, 0, malformed("empty payload")
	}
	fixed := fixedPayload
	switch p[0] {
	case payloadV1:
	case payloadV2:
		fixed += 8
	default:
		return Identity{}, 0, malformed("payload version %d, want %d or %d", p[0], payloadV1, payloadV2)
	}
	if len(p) < fixed+1 {
		return Identity{}, 0, malformed("payload of %d bytes is too short", len(p))
	}
	keyHash := binary.BigEndian.Uint32(p[1:5])
	issued := binary.BigEndian.Uint64(p[5:13])
	var expires uint64
	rest := p[13:]
	if p[0] == payloadV2 {
		expires, rest = binary.BigEndian.Uint64(rest[:8]), rest[8:]
	}
	var raw [16]byte
	copy(raw[:], rest[:16])
	country := string(rest[16:18])
	n := int(rest[18])
	if len(p) != fixed+n {
		return Identity{}, 0, malformed("payload of %d bytes, but its region name implies %d", len(p), fixed+n)
	}
	region := string(rest[19:])
	if issued >= maxIssuedAt {
		return Identity{}, 0, malformed("issue time %d is past the year 9999", issued)
	}
	var expiresAt time.Time
	if p[0] == payloadV2 {
		if expires <= issued || expires >= maxIssuedAt {
			return Identity{}, 0, malformed("expiry %d is not after the issue time %d and before the year 10000", expires, issued)
		}
		expiresAt = time.Unix(int64(expires), 0).UTC()
	}
	if !residency.ValidCountry(country) {
		return Identity{}, 0, malformed("country %q is not an ISO 3166-1 alpha-2 code", country)
	}
	if !residency.ValidRegionName(region) {
		return Identity{}, 0, malformed("region name %q is not valid", region)
	}
	return Identity{
		ID:        idPrefix + idEncoding.EncodeToString(raw[:]),
		Country:   country,
		Region:    region,
		IssuedAt:  time.Unix(int64(issued), 0).UTC(),
		ExpiresAt: expiresAt,
	}, keyHash, nil
}
