package tufrepo

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/internal/keys"
)

// Signer signs TUF metadata: an Ed25519 key in a file, the release key, or
// a key in a KMS. It is the shape of release.Signer without DSSE.
type Signer interface {
	Sign(ctx context.Context, data []byte) ([]byte, error)
	Public() crypto.PublicKey
}

// KeySigner returns a Signer for an Ed25519 private key.
func KeySigner(priv ed25519.PrivateKey) Signer { return keySigner(priv) }

type keySigner ed25519.PrivateKey

func (k keySigner) Sign(_ context.Context, data []byte) ([]byte, error) {
	return ed25519.Sign(ed25519.PrivateKey(k), data), nil
}

func (k keySigner) Public() crypto.PublicKey { return ed25519.PrivateKey(k).Public() }

// tufSigner lets go-tuf's Metadata.Sign use a Signer.
type tufSigner struct {
	ctx context.Context
	s   Signer
}

var _ signature.Signer = tufSigner{}

func (t tufSigner) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return t.s.Public(), nil
}

func (t tufSigner) SignMessage(msg io.Reader, _ ...signature.SignOption) ([]byte, error) {
	b, err := io.ReadAll(msg)
	if err != nil {
		return nil, err
	}
	return t.s.Sign(t.ctx, b)
}

// tufKey returns pub as TUF key and its TUF key id (which is not the
// release key id: TUF hashes the canonical JSON of the key).
func tufKey(pub crypto.PublicKey) (*metadata.Key, string, error) {
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return nil, "", err
	}
	id, err := k.ID()
	return k, id, err
}

// KeyID returns the TUF key id of an Ed25519 public key.
func KeyID(pub ed25519.PublicKey) string {
	_, id, err := tufKey(pub)
	if err != nil {
		panic(err) // an Ed25519 key always encodes
	}
	return id
}

// LoadOrCreateKey reads an Ed25519 private key (PKCS #8 in PEM) from path,
// creating it with mode 0600 if it does not exist, and writes its public
// half beside it as pubPath (PKIX in PEM) when pubPath is not empty.
func LoadOrCreateKey(path, pubPath string) (ed25519.PrivateKey, error) {
	priv, err := LoadKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		if priv, err = NewKey(path); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	if pubPath != "" {
		if err := atomicfile.Write(pubPath, PublicPEM(priv.Public().(ed25519.PublicKey)), 0o644); err != nil {
			return nil, fmt.Errorf("writing %s: %w", pubPath, err)
		}
	}
	return priv, nil
}

// NewKey generates an Ed25519 key and writes it to path (PKCS #8 in PEM,
// mode 0600), refusing to replace an existing file.
func NewKey(path string) (ed25519.PrivateKey, error) { return keys.NewEd25519File(path) }

// LoadKey reads an Ed25519 private key (PKCS #8 in PEM) from path. A
// missing file gives an error matching fs.ErrNotExist.
func LoadKey(path string) (ed25519.PrivateKey, error) { return keys.ReadEd25519File(path) }

// ParsePublicKey reads an Ed25519 public key from a PEM "PUBLIC KEY"
// (PKIX), or takes the public half of a PEM "PRIVATE KEY" (PKCS #8), so
// that either file of a key pair names it.
func ParsePublicKey(b []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("not a PEM key")
	}
	var k any
	var err error
	switch blk.Type {
	case "PUBLIC KEY":
		k, err = x509.ParsePKIXPublicKey(blk.Bytes)
	case "PRIVATE KEY":
		var priv any
		if priv, err = x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
			if p, ok := priv.(ed25519.PrivateKey); ok {
				k = p.Public()
			}
		}
	default:
		return nil, fmt.Errorf("PEM block %q is not a PUBLIC KEY or PRIVATE KEY", blk.Type)
	}
	if err != nil {
		return nil, err
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("not an Ed25519 key")
	}
	return pub, nil
}

// PublicPEM encodes pub as a PEM "PUBLIC KEY" (PKIX).
func PublicPEM(pub ed25519.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err) // an Ed25519 key always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}
