package relocate

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"slices"

	"github.com/vitrine-dev/vitrine/internal/store"
)

// sum collects the content hashes of a set of batches.
type sum struct {
	hashes [][sha256.Size]byte
}

// digest is "sha256:" and the SHA-256 of the batches' content hashes in
// ascending order: independent of the order in which a store lists them.
func (s *sum) digest() string {
	slices.SortFunc(s.hashes, func(a, b [sha256.Size]byte) int { return bytes.Compare(a[:], b[:]) })
	h := sha256.New()
	for _, x := range s.hashes {
		h.Write(x[:])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// contentHash hashes everything of b that must arrive unchanged: the
// endpoint's pseudonym and country, the batch id and time, the key id the
// sealed halves are bound to, and each record's threat fields and sealed
// half. The wrapped key is left out: a relocation rewraps it.
func contentHash(h hash.Hash, b *store.Batch) [sha256.Size]byte {
	h.Reset()
	var n [8]byte
	field := func(s []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write(s)
	}
	num := func(x int64) {
		binary.BigEndian.PutUint64(n[:], uint64(x))
		h.Write(n[:])
	}
	field([]byte(b.Pseudonym))
	field([]byte(b.Country))
	field([]byte(b.BatchID))
	num(b.Received.UnixMicro())
	field([]byte(bindingKeyID(b)))
	num(int64(len(b.Records)))
	for i := range b.Records {
		r := &b.Records[i]
		num(r.Time.UnixMicro())
		field([]byte(r.Kind))
		field([]byte(r.SHA256))
		num(r.Size)
		field([]byte(r.Detection))
		field([]byte(r.Product))
		num(int64(r.RuleDB))
		field(b.Sealed.Records[i])
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}
