// Package keys keeps the secrets a Vitrine process holds on disk: signed-note
// signing keys and bearer tokens.
//
// Secrets are generated on first use, written atomically with mode 0600 and
// read back on later starts. They are never taken from flags and never
// logged. Bearer tokens are compared in constant time.
package keys

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/internal/atomicfile"
)

// LoadOrCreateSigner returns the signed-note signer stored at skeyPath,
// generating an Ed25519 key named name on first use. It also writes the
// verifier key to vkeyPath (mode 0644) so that verifiers can pick it up.
//
// An existing key whose name differs from name is an error: the name is the
// log origin, and changing it silently would fork the log's identity.
func LoadOrCreateSigner(skeyPath, vkeyPath, name string) (note.Signer, string, error) {
	skey, err := os.ReadFile(skeyPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s, v, err := note.GenerateKey(rand.Reader, name)
		if err != nil {
			return nil, "", fmt.Errorf("generating key %q: %w", name, err)
		}
		if err := WriteFileAtomic(skeyPath, []byte(s+"\n"), 0o600); err != nil {
			return nil, "", fmt.Errorf("storing signing key: %w", err)
		}
		skey = []byte(s)
		if err := WriteFileAtomic(vkeyPath, []byte(v+"\n"), 0o644); err != nil {
			return nil, "", fmt.Errorf("storing verifier key: %w", err)
		}
	case err != nil:
		return nil, "", fmt.Errorf("reading signing key: %w", err)
	}
	signer, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		return nil, "", fmt.Errorf("parsing signing key %s: %w", skeyPath, err)
	}
	if signer.Name() != name {
		return nil, "", fmt.Errorf("signing key %s is for %q, not %q", skeyPath, signer.Name(), name)
	}
	vkey, err := VerifierKey(strings.TrimSpace(string(skey)))
	if err != nil {
		return nil, "", err
	}
	if cur, err := os.ReadFile(vkeyPath); err != nil || strings.TrimSpace(string(cur)) != vkey {
		if err := WriteFileAtomic(vkeyPath, []byte(vkey+"\n"), 0o644); err != nil {
			return nil, "", fmt.Errorf("storing verifier key: %w", err)
		}
	}
	return signer, vkey, nil
}

// VerifierKey derives the signed-note verifier key of an Ed25519 skey.
func VerifierKey(skey string) (string, error) {
	// skey = PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>
	const prefix = "PRIVATE+KEY+"
	if !strings.HasPrefix(skey, prefix) {
		return "", errors.New("deriving verifier key: malformed signing key")
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		return "", fmt.Errorf("deriving verifier key: %w", err)
	}
	// Key names cannot contain "+", but base64 can.
	parts := strings.SplitN(skey[len(prefix):], "+", 3)
	if len(parts) != 3 {
		return "", errors.New("deriving verifier key: malformed signing key")
	}
	seed, err := decodeKey(parts[2])
	if err != nil {
		return "", err
	}
	return ed25519VKey(s.Name(), seed)
}

// LoadOrCreateToken returns the bearer token stored at path, generating a
// random 256-bit token on first use.
func LoadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		buf := make([]byte, 32)
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("generating token: %w", err)
		}
		tok := hex.EncodeToString(buf)
		if err := WriteFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("storing token: %w", err)
		}
		return tok, nil
	case err != nil:
		return "", fmt.Errorf("reading token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 32 {
		return "", fmt.Errorf("token in %s is too short to be a secret", path)
	}
	return tok, nil
}

// Bearer returns the token of the request's "Authorization: Bearer
// <token>", or "".
func Bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	const p = "Bearer "
	if len(h) < len(p) || !strings.EqualFold(h[:len(p)], p) {
		return ""
	}
	return strings.TrimSpace(h[len(p):])
}

// BearerEqual reports whether the request carries "Authorization: Bearer
// <token>" for token. The comparison takes constant time.
func BearerEqual(r *http.Request, token string) bool {
	b := Bearer(r)
	return b != "" && subtle.ConstantTimeCompare([]byte(b), []byte(token)) == 1
}

// WriteFileAtomic writes data to path atomically and durably; see
// atomicfile.Write.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return atomicfile.Write(path, data, perm)
}
