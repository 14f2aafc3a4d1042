package access

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
)

// Digest returns the resource digest of the records with the given ids:
// "sha256:" and the lower-case hex SHA-256 of the distinct ids in ascending
// order, each as 8 bytes big-endian two's complement. Order and repetition
// in ids do not matter. The digest of no ids is that of the empty string.
func Digest(ids []int64) string {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	h := sha256.New()
	var buf [8]byte
	for _, id := range ids {
		binary.BigEndian.PutUint64(buf[:], uint64(id))
		h.Write(buf[:])
	}
	return digestPrefix + hex.EncodeToString(h.Sum(nil))
}
