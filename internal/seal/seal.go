// Package seal encrypts the personal half of telemetry records at rest.
//
// Each batch gets a fresh 32-byte data key. The region wraps it to its
// custody key (package custody) and stores only the wrapped key; the
// personal fields of each record — the endpoint id, the URL and the path —
// are sealed under the data key with AES-256-GCM, bound to the wrapped
// key's id and to the record's threat fields, so that a sealed half cannot
// be moved to another record or batch unnoticed. Reading them back needs
// the data key, which only custody can unwrap, and only for a logged access.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/vitrine-dev/vitrine/telemetry"
)

// KeySize is the size of a data key.
const KeySize = 32

// Personal is the personal half of one record.
type Personal struct {
	EndpointID string `json:"endpoint"`
	URL        string `json:"url"`
	Path       string `json:"path"`
}

// Binding is what a sealed half is bound to: the id of its batch's wrapped
// data key and the record's threat fields that identify it.
type Binding struct {
	KeyID  string
	SHA256 string
	Time   time.Time
}

func (b Binding) additionalData() []byte {
	ad := []byte("vitrine personal v1\x00")
	ad = append(ad, b.KeyID...)
	ad = append(ad, 0)
	ad = append(ad, b.SHA256...)
	ad = append(ad, 0)
	return strconv.AppendInt(ad, b.Time.UnixMicro(), 10)
}

// KeyID is the id of a wrapped data key: "sha256:" and the lowercase hex
// SHA-256 of the wrapped key. Access-log entries name the keys an access
// may unwrap by these ids, and custody checks them.
func KeyID(wrapped []byte) string {
	h := sha256.Sum256(wrapped)
	return "sha256:" + hex.EncodeToString(h[:])
}

// A Wrapper wraps data keys to a region's custody key (custody.PublicKey).
type Wrapper interface {
	Wrap(dataKey []byte) ([]byte, error)
}

// NewKey returns a fresh data key.
func NewKey() []byte {
	k := make([]byte, KeySize)
	rand.Read(k)
	return k
}

// ErrOpen means a sealed half did not open: the key, the binding or the
// ciphertext is wrong.
var ErrOpen = errors.New("sealed personal fields do not open with this key and binding")

// Seal seals p under key, bound to b. The result is a 12-byte nonce
// followed by the ciphertext.
func Seal(key []byte, b Binding, p Personal) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	plain, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	rand.Read(out)
	return aead.Seal(out, out, plain, b.additionalData()), nil
}

// Open opens a half that Seal sealed under key and b.
func Open(key []byte, b Binding, sealed []byte) (Personal, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return Personal{}, err
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return Personal{}, fmt.Errorf("%w: %d bytes is too short", ErrOpen, len(sealed))
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], b.additionalData())
	if err != nil {
		return Personal{}, ErrOpen
	}
	var p Personal
	if err := json.Unmarshal(plain, &p); err != nil {
		return Personal{}, fmt.Errorf("%w: %v", ErrOpen, err)
	}
	return p, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("a data key is %d bytes, not %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Records seals the personal halves of the records of one endpoint's batch
// under a fresh data key wrapped by w, and clears them in recs. It returns
// the wrapped key and the sealed halves, in the order of recs.
func Records(w Wrapper, endpointID string, recs []telemetry.Record) (wrapped []byte, sealed [][]byte, err error) {
	key := NewKey()
	defer clear(key)
	if wrapped, err = w.Wrap(key); err != nil {
		return nil, nil, fmt.Errorf("wrapping the data key: %w", err)
	}
	id := KeyID(wrapped)
	sealed = make([][]byte, len(recs))
	for i := range recs {
		r := &recs[i]
		if sealed[i], err = Seal(key, Binding{KeyID: id, SHA256: r.SHA256, Time: r.Time}, Personal{EndpointID: endpointID, URL: r.URL, Path: r.Path}); err != nil {
			return nil, nil, err
		}
		r.URL, r.Path = "", ""
	}
	return wrapped, sealed, nil
}
