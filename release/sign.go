package release

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/vitrine-dev/vitrine/internal/keys"
)

// Signer signs releases. It is the DSSE signer interface with the public
// key added, so that a hardware key or a KMS can stand in for a key file.
type Signer interface {
	dsse.Signer
	Public() crypto.PublicKey
}

// Ed25519Key is a release key held in a file.
type Ed25519Key struct {
	priv ed25519.PrivateKey
}

var _ dsse.SignerVerifier = (*Ed25519Key)(nil)

// LoadOrCreateKey reads the Ed25519 release key from path (PKCS #8 in PEM,
// mode 0600), creating it on first use.
func LoadOrCreateKey(path string) (*Ed25519Key, error) {
	priv, err := keys.ReadEd25519File(path)
	if errors.Is(err, fs.ErrNotExist) {
		priv, err = keys.NewEd25519File(path)
	}
	if err != nil {
		return nil, fmt.Errorf("release key: %w", err)
	}
	return &Ed25519Key{priv: priv}, nil
}

// Sign signs data (the DSSE pre-authentication encoding).
func (k *Ed25519Key) Sign(_ context.Context, data []byte) ([]byte, error) {
	return ed25519.Sign(k.priv, data), nil
}

// Verify checks sig over data.
func (k *Ed25519Key) Verify(ctx context.Context, data, sig []byte) error {
	return PublicKey(k.priv.Public().(ed25519.PublicKey)).Verify(ctx, data, sig)
}

// KeyID is the key's id: the hex SHA-256 of its PKIX encoding.
func (k *Ed25519Key) KeyID() (string, error) { return keyID(k.priv.Public()) }

// Public returns the public key.
func (k *Ed25519Key) Public() crypto.PublicKey { return k.priv.Public() }

// PublicKey is a release key's public half: what verifies envelopes.
type PublicKey ed25519.PublicKey

var _ dsse.Verifier = PublicKey(nil)

// ParsePublicKey reads a PEM "PUBLIC KEY" (PKIX) holding an Ed25519 key,
// the form cosign and openssl use.
func ParsePublicKey(b []byte) (PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM public key")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("not an Ed25519 public key")
	}
	return PublicKey(pub), nil
}

// PEM returns the key as a PEM "PUBLIC KEY" (PKIX).
func (p PublicKey) PEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(ed25519.PublicKey(p))
	if err != nil {
		panic(err) // an Ed25519 key always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Verify checks sig over data.
func (p PublicKey) Verify(_ context.Context, data, sig []byte) error {
	if len(p) != ed25519.PublicKeySize || !ed25519.Verify(ed25519.PublicKey(p), data, sig) {
		return errors.New("signature does not verify under the release key")
	}
	return nil
}

// KeyID is the key's id: the hex SHA-256 of its PKIX encoding.
func (p PublicKey) KeyID() (string, error) { return keyID(ed25519.PublicKey(p)) }

// Public returns the key.
func (p PublicKey) Public() crypto.PublicKey { return ed25519.PublicKey(p) }

func keyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:]), nil
}
