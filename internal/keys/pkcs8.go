package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/vitrine-dev/vitrine/internal/atomicfile"
)

// NewEd25519File generates an Ed25519 key and writes it to path as PKCS #8
// in PEM, mode 0600, refusing to replace an existing file. The release
// key, and the TUF repository's online and offline keys, are such files.
func NewEd25519File(path string) (ed25519.PrivateKey, error) {
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("key %s exists; not replacing it", path)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("writing key %s: %w", path, err)
	}
	return priv, nil
}

// ReadEd25519File reads an Ed25519 private key (PKCS #8 in PEM) from path.
// A missing file gives an error matching fs.ErrNotExist.
func ReadEd25519File(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("key %s is not a PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key %s is not an Ed25519 key", path)
	}
	return priv, nil
}
