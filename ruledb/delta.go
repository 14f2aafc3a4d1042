package ruledb

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Delta layout, format version 1 (integers big-endian as in the database):
//
//	offset  size  field
//	0       8     magic "VTRDELTA"
//	8       2     format version (1)
//	10      2     reserved, zero
//	12      32    digest of the old database
//	44      8     version of the new database
//	52      32    digest of the new database
//	84            per section (MD5, SHA-256, body): uvarint number of
//	              operations, then each operation: uvarint copy, uvarint
//	              skip, uvarint insert, and insert records
//	end-32  32    SHA-256 of every preceding byte
//
// An operation copies the next copy records of the old section, drops the
// next skip, then appends insert records carried in the delta. Operations
// must consume the old section exactly.
const (
	deltaMagic      = "VTRDELTA"
	deltaHeaderSize = 84
)

// ErrNotNewer is wrapped by Delta and ApplyDelta errors for an update that
// does not raise the database version, so an old database cannot be
// replayed as an update.
var ErrNotNewer = errors.New("database version does not increase")

// Changes is what Diff finds between two databases.
type Changes struct {
	Added     []Signature
	Removed   []Signature
	Unchanged int
}

// Diff lists the signatures of new that old lacks (Added) and those of old
// that new lacks (Removed), each in database order.
func Diff(old, new *DB) Changes {
	var c Changes
	for k := range numKinds {
		mergeRecords(old.recs[k], new.recs[k], func(i, j int) {
			switch {
			case i < 0:
				c.Added = append(c.Added, new.sigs[k][j])
			case j < 0:
				c.Removed = append(c.Removed, old.sigs[k][i])
			default:
				c.Unchanged++
			}
		})
	}
	return c
}

// mergeRecords walks two sorted record lists, calling f(i, j) for a record
// in both, f(i, -1) for one only in a, f(-1, j) for one only in b.
func mergeRecords(a, b [][]byte, f func(i, j int)) {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		c := 0
		switch {
		case i == len(a):
			c = 1
		case j == len(b):
			c = -1
		default:
			c = bytes.Compare(a[i], b[j])
		}
		switch {
		case c == 0:
			f(i, j)
			i++
			j++
		case c < 0:
			f(i, -1)
			i++
		default:
			f(-1, j)
			j++
		}
	}
}

// Delta returns the update that turns the database old into new. Both are
// validated with Open first, and new must have a higher version.
func Delta(oldData, newData []byte) ([]byte, error) {
	old, err := Open(oldData)
	if err != nil {
		return nil, fmt.Errorf("computing delta: old database: %w", err)
	}
	new, err := Open(newData)
	if err != nil {
		return nil, fmt.Errorf("computing delta: new database: %w", err)
	}
	if new.version <= old.version {
		return nil, fmt.Errorf("computing delta: %w: version %d does not follow %d", ErrNotNewer, new.version, old.version)
	}
	b := []byte(deltaMagic)
	b = binary.BigEndian.AppendUint16(b, formatVersion)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = append(b, old.digest[:]...)
	b = binary.BigEndian.AppendUint64(b, new.version)
	b = append(b, new.digest[:]...)
	for k := range numKinds {
		type op struct {
			copy, skip int
			ins        [][]byte
		}
		var ops []op
		cur := op{}
		mergeRecords(old.recs[k], new.recs[k], func(i, j int) {
			switch {
			case i >= 0 && j >= 0:
				if cur.skip > 0 || len(cur.ins) > 0 {
					ops = append(ops, cur)
					cur = op{}
				}
				cur.copy++
			case j < 0:
				cur.skip++
			default:
				cur.ins = append(cur.ins, new.recs[k][j])
			}
		})
		if cur.copy > 0 || cur.skip > 0 || len(cur.ins) > 0 {
			ops = append(ops, cur)
		}
		b = binary.AppendUvarint(b, uint64(len(ops)))
		for _, o := range ops {
			b = binary.AppendUvarint(b, uint64(o.copy))
			b = binary.AppendUvarint(b, uint64(o.skip))
			b = binary.AppendUvarint(b, uint64(len(o.ins)))
			for _, r := range o.ins {
				b = append(b, r...)
			}
		}
	}
	d := sha256.Sum256(b)
	return append(b, d[:]...), nil
}

// ApplyDelta applies delta to the database old and returns the new database.
// It refuses, with an error wrapping ErrInvalid, a corrupted delta, a delta
// made for another database or that does not raise its version, and a
// result whose digest is not the one the delta promises; a returned database
// is therefore byte-for-byte the one Delta was given.
func ApplyDelta(oldData, delta []byte) ([]byte, error) {
	old, err := Open(oldData)
	if err != nil {
		return nil, fmt.Errorf("applying delta: old database: %w", err)
	}
	body, err := checkFrame("delta", deltaMagic, deltaHeaderSize, delta)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(delta[12:44], old.digest[:]) {
		return nil, invalidf("delta: made for another database (base digest %x, have %x)", delta[12:44], old.digest)
	}
	version := binary.BigEndian.Uint64(delta[44:])
	if version <= old.version {
		return nil, invalidf("delta: %v: version %d does not follow %d", ErrNotNewer, version, old.version)
	}
	want := delta[52:84]
	d := decoder{b: body, off: deltaHeaderSize}
	var recs [numKinds][][]byte
	for k := range Kind(numKinds) {
		oldRecs := old.recs[k]
		nops := d.uvarint()
		if d.err == nil && nops > uint64(len(body)) {
			return nil, invalidf("delta: %s section: %d operations", k, nops)
		}
		for o := uint64(0); o < nops && d.err == nil; o++ {
			cp, skip, ins := d.uvarint(), d.uvarint(), d.uvarint()
			if d.err != nil {
				break
			}
			if cp > uint64(len(oldRecs)) || skip > uint64(len(oldRecs))-cp {
				return nil, invalidf("delta: %s section: operation %d runs past the old database", k, o)
			}
			if ins > uint64(len(body)-d.off)/uint64(minRecord[k]) {
				return nil, invalidf("delta: %s section: operation %d inserts %d records", k, o, ins)
			}
			recs[k] = append(recs[k], oldRecs[:cp]...)
			oldRecs = oldRecs[cp+skip:]
			for range ins {
				_, n, err := decodeRecord(k, body[d.off:])
				if err != nil {
					return nil, invalidf("delta: %s section: operation %d: %v", k, o, err)
				}
				recs[k] = append(recs[k], body[d.off:d.off+n])
				d.off += n
			}
		}
		if d.err != nil {
			return nil, invalidf("delta: %s section: %v", k, d.err)
		}
		if len(oldRecs) != 0 {
			return nil, invalidf("delta: %s section: %d old records left unaccounted for", k, len(oldRecs))
		}
	}
	if d.off != len(body) {
		return nil, invalidf("delta: %d bytes after the last section", len(body)-d.off)
	}
	out := encode(version, &recs)
	if !bytes.Equal(out[len(out)-digestSize:], want) {
		return nil, invalidf("delta: result digest %x, want %x", out[len(out)-digestSize:], want)
	}
	if _, err := Open(out); err != nil {
		return nil, fmt.Errorf("applying delta: result: %w", err)
	}
	return out, nil
}
