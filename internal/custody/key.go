package custody

import (
	"crypto/hpke"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/internal/seal"
	"github.com/vitrine-dev/vitrine/residency"
)

// The HPKE ciphersuite of every region key: MLKEM768-X25519 (X-Wing), a
// hybrid of ML-KEM-768 and X25519, so that data keys wrapped today stay
// secret if either one is broken; HKDF-SHA256; ChaCha20Poly1305. The suite
// is fixed by the "v1" of the key text forms.
var (
	kem  = hpke.MLKEM768X25519()
	kdf  = hpke.HKDFSHA256()
	aead = hpke.ChaCha20Poly1305()
)

const (
	// DataKeySize is the size of a data key, the only plaintext Wrap takes.
	DataKeySize = 32
	// WrappedKeySize is the size of a wrapped data key: the X-Wing
	// encapsulated key (1120 bytes), the data key and the Poly1305 tag.
	WrappedKeySize = 1120 + DataKeySize + 16

	publicPrefix  = "vitrine-region-key v1 "
	privatePrefix = "vitrine-region-private-key v1 "
)

// info is the HPKE info string of a region's data keys. It binds the purpose
// and the region, so that a wrapped key cannot be passed off as another
// kind of secret or as another region's key even under a shared KEM key.
func info(region string) []byte {
	return []byte("vitrine data key v1\x00" + region)
}

// A PublicKey is one region's wrapping key. Regions wrap their data keys to
// it; only custody can unwrap them. It holds no secret and is safe for
// concurrent use.
type PublicKey struct {
	region string
	pk     hpke.PublicKey
}

// ParsePublicKey parses the text form of a region key,
// "vitrine-region-key v1 <region> <base64 of the KEM public key>", exactly as
// String writes it: single spaces, canonical padded standard base64, and no
// leading or trailing white space (trim a trailing newline first when
// reading a file). The region must be a valid region name.
func ParsePublicKey(s string) (*PublicKey, error) {
	rest, ok := strings.CutPrefix(s, publicPrefix)
	if !ok {
		return nil, errors.New("parsing region key: does not start with \"" + strings.TrimSpace(publicPrefix) + "\"")
	}
	region, b64, ok := strings.Cut(rest, " ")
	if !ok {
		return nil, errors.New("parsing region key: want \"vitrine-region-key v1 <region> <base64 key>\"")
	}
	if !residency.ValidRegionName(region) {
		return nil, fmt.Errorf("parsing region key: invalid region name %q", region)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || base64.StdEncoding.EncodeToString(b) != b64 {
		return nil, errors.New("parsing region key: key is not canonical base64")
	}
	pk, err := kem.NewPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("parsing region key: %w", err)
	}
	return &PublicKey{region: region, pk: pk}, nil
}

// WrapOnlyKey returns a fresh public key of region whose private half is
// discarded at once: what it wraps can never be unwrapped. It is for
// benchmarks, which must pay for real wrapping but never read back.
func WrapOnlyKey(region string) (*PublicKey, error) {
	if !residency.ValidRegionName(region) {
		return nil, fmt.Errorf("invalid region name %q", region)
	}
	sk, err := kem.GenerateKey()
	if err != nil {
		return nil, err
	}
	return &PublicKey{region: region, pk: sk.PublicKey()}, nil
}

// String returns the text form of k, which ParsePublicKey reads back.
func (k *PublicKey) String() string {
	return publicPrefix + k.region + " " + base64.StdEncoding.EncodeToString(k.pk.Bytes())
}

// Region returns the name of the region the key belongs to.
func (k *PublicKey) Region() string { return k.region }

// Wrap encrypts a 32-byte data key to the region's key with HPKE (base
// mode, single shot). The result is WrappedKeySize bytes; KeyID names it.
func (k *PublicKey) Wrap(dataKey []byte) (wrapped []byte, err error) {
	if len(dataKey) != DataKeySize {
		return nil, fmt.Errorf("wrapping data key: got %d bytes, want %d", len(dataKey), DataKeySize)
	}
	wrapped, err = hpke.Seal(k.pk, kdf, aead, info(k.region), dataKey)
	if err != nil {
		return nil, fmt.Errorf("wrapping data key for %s: %w", k.region, err)
	}
	return wrapped, nil
}

// KeyID returns the identifier of a wrapped data key: "sha256:" and the
// lowercase hex SHA-256 of the wrapped bytes. Access records list the data
// keys an access may unwrap by this identifier; since it is a hash of what
// custody is given, it cannot be made to name another key.
func KeyID(wrapped []byte) string { return seal.KeyID(wrapped) }

// regionKey is a region's private key, held by custody only.
type regionKey struct {
	pub *PublicKey
	sk  hpke.PrivateKey
}

// unwrap decrypts one wrapped data key.
func (k *regionKey) unwrap(wrapped []byte) ([]byte, error) {
	if len(wrapped) != WrappedKeySize {
		return nil, fmt.Errorf("wrapped key is %d bytes, want %d", len(wrapped), WrappedKeySize)
	}
	dk, err := hpke.Open(k.sk, kdf, aead, info(k.pub.region), wrapped)
	if err != nil {
		return nil, err
	}
	if len(dk) != DataKeySize {
		clear(dk)
		return nil, fmt.Errorf("data key is %d bytes, want %d", len(dk), DataKeySize)
	}
	return dk, nil
}

// loadOrCreateKey returns the private key of region stored in dir,
// generating it on first use. The file is created with mode 0600 and never
// replaced: if two processes create it at once, both end up with the one
// that was linked first, so that no region ever has two keys.
func loadOrCreateKey(dir, region string) (*regionKey, error) {
	path := filepath.Join(dir, region+".key")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createKey(dir, path, region); err != nil {
			return nil, fmt.Errorf("creating key of region %s: %w", region, err)
		}
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading key of region %s: %w", region, err)
	}
	k, err := parsePrivateKey(strings.TrimSuffix(string(b), "\n"))
	if err != nil {
		return nil, fmt.Errorf("reading key of region %s from %s: %w", region, path, err)
	}
	if k.pub.region != region {
		return nil, fmt.Errorf("reading key of region %s: %s holds the key of region %q", region, path, k.pub.region)
	}
	return k, nil
}

// createKey writes a new key for region at path through a synced temporary
// file and a hard link, which fails rather than replaces an existing key.
func createKey(dir, path, region string) error {
	sk, err := kem.GenerateKey()
	if err != nil {
		return err
	}
	seed, err := sk.Bytes()
	if err != nil {
		return err
	}
	text := []byte(privatePrefix + region + " " + base64.StdEncoding.EncodeToString(seed) + "\n")
	clear(seed)
	defer clear(text)
	f, err := os.CreateTemp(dir, "."+region+".key.tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(text); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return atomicfile.SyncDir(dir)
}

// parsePrivateKey reads "vitrine-region-private-key v1 <region> <base64
// seed>".
func parsePrivateKey(s string) (*regionKey, error) {
	rest, ok := strings.CutPrefix(s, privatePrefix)
	if !ok {
		return nil, errors.New("not a vitrine region private key")
	}
	region, b64, ok := strings.Cut(rest, " ")
	if !ok || !residency.ValidRegionName(region) {
		return nil, errors.New("malformed region private key")
	}
	seed, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return nil, errors.New("malformed region private key")
	}
	defer clear(seed)
	sk, err := kem.NewPrivateKey(seed)
	if err != nil {
		return nil, fmt.Errorf("malformed region private key: %w", err)
	}
	return &regionKey{pub: &PublicKey{region: region, pk: sk.PublicKey()}, sk: sk}, nil
}
