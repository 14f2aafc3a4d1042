// Package endpoint issues endpoint identities and the tokens that carry
// them, and checks those tokens anywhere without a shared database.
//
// # Identities and tokens
//
// Registering an endpoint gives it an [Identity] — a random id, its country
// and its home region — and a token that binds them under the issuer's
// Ed25519 signature:
//
//	vt1.<base64url(payload)>.<base64url(signature)>
//
// Any region holding the issuer's public key (a [Verifier]) can check a
// token and learn the endpoint's home region from it alone, so a region can
// refuse foreign data without asking anyone. A new token for the same id
// (after a relocation, say) is made with [Issuer.Issue].
//
// # Expiry and revocation
//
// A token carries its expiry, under the signature: [Issuer.Register] gives
// [DefaultLifetime], 90 days, after which the endpoint registers again.
// Tokens of version 1, made before tokens carried an expiry, expire
// DefaultLifetime after the issue time they carry. A [Revocations] list,
// kept durably by the platform, revokes an endpoint id before then; a
// verifier holding it ([Verifier.WithRevocations]) refuses the id's tokens
// from the moment it is revoked.
//
// The payload is a fixed binary layout, big-endian:
//
//	version      1 byte, 2 (1 in tokens without expiry)
//	key hash     4 bytes, the signed-note key hash of the issuer key
//	issued at    8 bytes, Unix seconds, 0 ≤ t < year 10000
//	expires at   8 bytes, Unix seconds, issued at < t < year 10000
//	             (version 2 only)
//	id           16 bytes, the random part of the endpoint id
//	country      2 bytes, an ISO 3166-1 alpha-2 code in upper case
//	region len   1 byte, 1 to 32
//	region       the region name, [a-z][a-z0-9-]{0,31}
//
// The signature is Ed25519 over "vitrine endpoint token v1\x00" followed by
// the payload; the prefix keeps a token signature from ever passing for a
// signature on anything else, such as a signed note (whose text cannot
// contain a NUL byte). The issuer's key is a signed-note key, stored the
// way every Vitrine key is (see internal/keys) and published as a
// signed-note verifier key.
//
// Every part has exactly one accepted encoding, so a token the issuer did
// not make, including a re-encoding of one it did, never verifies.
//
// # Pseudonyms
//
// [Pseudonym] turns an endpoint id (or any other identifier of a person)
// into the "hmac-sha256:" form that access records and processing use.
package endpoint

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/residency"
)

// Identity is who an endpoint is, as its token states it.
type Identity struct {
	// ID is "ep_" followed by 26 lower-case base32 characters: 128 random
	// bits.
	ID string
	// Country is the endpoint's ISO 3166-1 alpha-2 country code.
	Country string
	// Region is the endpoint's home region: the only region that stores
	// its data.
	Region string
	// IssuedAt is when the token was made, to the second, in UTC.
	IssuedAt time.Time
	// ExpiresAt is when the token stops being valid, to the second, in
	// UTC; zero for a version 1 token, which carries no expiry (see
	// [Identity.Expiry]).
	ExpiresAt time.Time
}

// LegacyExpiry is the earliest a version 1 token (issued before tokens
// carried an expiry) stops being valid: 90 days after the release that
// brought expiry in, so that upgrading cuts no endpoint off at once. The
// endpoints register again (or are revoked) before then.
var LegacyExpiry = time.Date(2027, 3, 6, 0, 0, 0, 0, time.UTC)

// Expiry returns when id's token stops being valid: ExpiresAt, or for a
// token without one, the later of IssuedAt plus [DefaultLifetime] and
// [LegacyExpiry].
func (id Identity) Expiry() time.Time {
	if id.ExpiresAt.IsZero() {
		if t := id.IssuedAt.Add(DefaultLifetime); t.After(LegacyExpiry) {
			return t
		}
		return LegacyExpiry
	}
	return id.ExpiresAt
}

// idPrefix starts every endpoint id.
const idPrefix = "ep_"

// idEncoding writes the random part of an id. Lower case, so that ids read
// well in URLs and logs.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// idLen is the length of an endpoint id.
var idLen = len(idPrefix) + idEncoding.EncodedLen(16)

// newID returns a fresh random id and its 16 random bytes.
func newID() (string, [16]byte) {
	var b [16]byte
	rand.Read(b[:]) // never fails; see crypto/rand.Read
	return idPrefix + idEncoding.EncodeToString(b[:]), b
}

// parseID returns the random bytes of a well-formed id.
func parseID(id string) ([16]byte, bool) {
	var b [16]byte
	s, ok := strings.CutPrefix(id, idPrefix)
	if !ok || len(id) != idLen {
		return b, false
	}
	n, err := idEncoding.Decode(b[:], []byte(s))
	// The last character carries two unused bits; requiring the canonical
	// encoding gives each id one spelling.
	if err != nil || n != len(b) || idEncoding.EncodeToString(b[:]) != s {
		return b, false
	}
	return b, true
}

// ValidID reports whether id is a well-formed endpoint id: "ep_" and the
// canonical lower-case base32 encoding of 16 bytes.
func ValidID(id string) bool {
	_, ok := parseID(id)
	return ok
}

// MinPseudonymKeySize is the shortest key [Pseudonym] accepts.
const MinPseudonymKeySize = 16

// Pseudonym returns the pseudonym of id under key: "hmac-sha256:" followed
// by the lower-case hex HMAC-SHA256 of id keyed with key. It is the form in
// which access records name data subjects (docs/architecture.md, "Access
// records"). The supervisor, who holds the key, can recompute it from an id
// with any HMAC tool; without the key, pseudonyms cannot be linked to ids.
//
// Pseudonym panics if key is shorter than MinPseudonymKeySize bytes: a
// missing or short key is a configuration error that would make pseudonyms
// guessable, and must not pass silently.
func Pseudonym(key []byte, id string) string {
	if len(key) < MinPseudonymKeySize {
		panic(fmt.Sprintf("endpoint.Pseudonym: key of %d bytes, want at least %d", len(key), MinPseudonymKeySize))
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

// Pseudonyms computes the pseudonyms of endpoint ids: with the key in
// this process ([PseudonymKey]), or by asking the supervisor who holds it
// (internal/supervisor's client). An error means the pseudonym cannot be
// had now: the caller fails closed.
type Pseudonyms interface {
	Pseudonym(ctx context.Context, id string) (string, error)
}

// PseudonymKey is a pseudonymisation key held in this process.
type PseudonymKey []byte

// Pseudonym returns [Pseudonym] of id under k; it never fails.
func (k PseudonymKey) Pseudonym(_ context.Context, id string) (string, error) {
	return Pseudonym(k, id), nil
}

// checkIdentity checks the fields a token carries.
func checkIdentity(id Identity) error {
	if !ValidID(id.ID) {
		return fmt.Errorf("endpoint id %q is not ep_ and 26 base32 characters", id.ID)
	}
	if !residency.ValidCountry(id.Country) {
		return fmt.Errorf("country %q is not an ISO 3166-1 alpha-2 code", id.Country)
	}
	if !residency.ValidRegionName(id.Region) {
		return fmt.Errorf("region name %q is not valid", id.Region)
	}
	if t := id.IssuedAt.Unix(); t < 0 || t >= maxIssuedAt {
		return fmt.Errorf("issue time %v is outside the years 1970 to 9999", id.IssuedAt)
	}
	if t := id.ExpiresAt.Unix(); !id.ExpiresAt.IsZero() && (t <= id.IssuedAt.Unix() || t >= maxIssuedAt) {
		return fmt.Errorf("expiry %v is not after the issue time %v and before the year 10000", id.ExpiresAt, id.IssuedAt)
	}
	return nil
}

// maxIssuedAt is 10000-01-01T00:00:00Z in Unix seconds.
const maxIssuedAt = 253402300800
