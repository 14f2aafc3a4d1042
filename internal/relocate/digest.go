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

// batchSum is what digestBatches keeps of one batch.
type batchSum struct {
	hash    [sha256.Size]byte
	records int64
}

// digestBatches hashes the content of each of the country's batches in
// st, by batch key, reading a few batches at a time to bound memory.
func digestBatches(ctx context.Context, st store.Relocator, country string) (map[batchKey]batchSum, error) {
	out := map[batchKey]batchSum{}
	h := sha256.New()
	var after int64
	for {
		bs, err := st.Batches(ctx, store.BatchQuery{Country: country, After: after, Limit: digestPage})
		if err != nil {
			return nil, err
		}
		if len(bs) == 0 {
			return out, nil
		}
		for i := range bs {
			b := &bs[i].Batch
			out[keyOf(b)] = batchSum{contentHash(h, b), int64(len(b.Records))}
		}
		after = bs[len(bs)-1].PK
	}
}

// digestPage is how many batches digestBatches reads at a time.
const digestPage = 50

// summarize counts and digests the batches of src, and the same batches
// as dst holds them. dst may hold more batches of the country (reported
// there since the policy moved it), which do not count.
func summarize(src, dst map[batchKey]batchSum) (s, d *sum) {
	s, d = &sum{}, &sum{}
	for k, v := range src {
		s.batches++
		s.records += v.records
		s.hashes = append(s.hashes, v.hash)
		if dv, ok := dst[k]; ok {
			d.batches++
			d.records += dv.records
			d.hashes = append(d.hashes, dv.hash)
		}
	}
	return s, d
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
