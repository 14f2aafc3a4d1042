package relocate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"slices"

	"github.com/vitrine-dev/vitrine/internal/store"
)

// sum is what digestBatches counted.
type sum struct {
	records, batches int64
	hashes           [][sha256.Size]byte
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

// batchKey identifies a batch in every store: the endpoint's pseudonym and
// its batch id.
type batchKey [sha256.Size]byte

func keyOf(b *store.Batch) batchKey {
	return sha256.Sum256([]byte(b.Pseudonym + "\x00" + b.BatchID))
}

// digestBatches counts the country's batches in st and hashes their
// content. With only set, it counts only the batches whose keys are in
// it; without, it returns the keys of the batches it counted.
func digestBatches(ctx context.Context, st store.Relocator, country string, only map[batchKey]bool) (*sum, map[batchKey]bool, error) {
	s := &sum{}
	var keys map[batchKey]bool
	if only == nil {
		keys = map[batchKey]bool{}
	}
	h := sha256.New()
	var after int64
	for {
		bs, err := st.Batches(ctx, store.BatchQuery{Country: country, After: after, Limit: store.MaxBatches})
		if err != nil {
			return nil, nil, err
		}
		if len(bs) == 0 {
			return s, keys, nil
		}
		for i := range bs {
			b := &bs[i].Batch
			k := keyOf(b)
			if only != nil && !only[k] {
				continue
			}
			if keys != nil {
				keys[k] = true
			}
			s.hashes = append(s.hashes, contentHash(h, b))
			s.batches++
			s.records += int64(len(b.Records))
		}
		after = bs[len(bs)-1].PK
	}
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
