package ruledb

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Database layout, format version 1. Integers in the header are big-endian;
// "uvarint" is encoding/binary's unsigned varint in its shortest form.
//
//	offset  size  field
//	0       8     magic "VTRULEDB"
//	8       2     format version (1)
//	10      2     reserved, zero
//	12      8     database version
//	20      4×3   record counts of the MD5, SHA-256 and body sections
//	32      8×3   byte lengths of the MD5, SHA-256 and body sections
//	56            the three sections, in that order
//	end-32  32    SHA-256 of every preceding byte
//
// Records (str = uvarint length, then bytes):
//
//	MD5, SHA-256  hash (16 or 32 bytes), uvarint size+1 (0: unknown),
//	              uvarint min flevel, uvarint max flevel, str name
//	body          str name, uvarint target, uvarint offset+1 (0: any),
//	              str pattern, uvarint min flevel, uvarint max flevel
//
// Within a section records are sorted by their encoded bytes, strictly
// ascending, so a set of signatures has exactly one encoding.
const (
	magic         = "VTRULEDB"
	formatVersion = 1
	headerSize    = 56
	digestSize    = sha256.Size
)

// minRecord is the smallest encoded record of each section, used to bound
// counts before allocating.
var minRecord = [numKinds]int{16 + 4, 32 + 4, 2 + 2 + 2 + 2}

// ErrInvalid is wrapped by every error Open and ApplyDelta return for input
// that is not a well-formed database or delta.
var ErrInvalid = errors.New("invalid rule database")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// DB is an opened, validated rule database. It is immutable and safe for
// concurrent use.
type DB struct {
	version uint64
	digest  [digestSize]byte
	// recs holds, per section, the encoded records in order (sub-slices
	// of the database bytes) and sigs the signatures they decode to.
	recs [numKinds][][]byte
	sigs [numKinds][]Signature
}

// Version returns the database version given to Compile.
func (db *DB) Version() uint64 { return db.version }

// Digest returns the SHA-256 stored at the end of the database.
func (db *DB) Digest() [digestSize]byte { return db.digest }

// Len returns the number of signatures.
func (db *DB) Len() int {
	n := 0
	for _, s := range db.sigs {
		n += len(s)
	}
	return n
}

// Signatures returns every signature: MD5, then SHA-256, then body
// signatures, each in database order. The caller may modify the slice but
// not the Hash bytes.
func (db *DB) Signatures() []Signature {
	out := make([]Signature, 0, db.Len())
	for _, s := range db.sigs {
		out = append(out, s...)
	}
	return out
}

// Compile builds the database of version from the signatures of sources.
// The result depends only on the set of signatures and the version: source
// and line order do not matter, and a signature given twice is stored once.
// A signature that Parse could not have produced is an error.
func Compile(sources []*Source, version uint64) ([]byte, error) {
	var recs [numKinds][][]byte
	var arena [numKinds][]byte
	var ends [numKinds][]int
	for _, src := range sources {
		for i := range src.Signatures {
			s := &src.Signatures[i]
			if err := s.check(); err != nil {
				return nil, fmt.Errorf("compiling rule database: %s: signature %d (%s): %v", src.Name, i+1, s.Name, err)
			}
			arena[s.Kind] = appendRecord(arena[s.Kind], s)
			ends[s.Kind] = append(ends[s.Kind], len(arena[s.Kind]))
		}
	}
	for k := range Kind(numKinds) {
		recs[k] = make([][]byte, len(ends[k]))
		start := 0
		for i, end := range ends[k] {
			recs[k][i] = arena[k][start:end:end]
			start = end
		}
		slices.SortFunc(recs[k], bytes.Compare)
		recs[k] = slices.CompactFunc(recs[k], bytes.Equal)
		if uint64(len(recs[k])) > math.MaxUint32 {
			return nil, fmt.Errorf("compiling rule database: %d %s signatures exceed the format's limit", len(recs[k]), k)
		}
	}
	return encode(version, &recs), nil
}

// encode writes a database of sorted, distinct records.
func encode(version uint64, recs *[numKinds][][]byte) []byte {
	var lens [numKinds]int
	total := headerSize + digestSize
	for k, rs := range recs {
		for _, r := range rs {
			lens[k] += len(r)
		}
		total += lens[k]
	}
	b := make([]byte, 0, total)
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint16(b, formatVersion)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint64(b, version)
	for _, rs := range recs {
		b = binary.BigEndian.AppendUint32(b, uint32(len(rs)))
	}
	for _, n := range lens {
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	for _, rs := range recs {
		for _, r := range rs {
			b = append(b, r...)
		}
	}
	d := sha256.Sum256(b)
	return append(b, d[:]...)
}

// Open validates data as a database and returns it. It refuses, with an
// error wrapping ErrInvalid, anything Compile could not have produced: a
// wrong magic, format version or digest, inconsistent counts or lengths, a
// malformed or out-of-order record. The DB keeps references to data, which
// the caller must not modify afterwards.
func Open(data []byte) (*DB, error) {
	body, err := checkFrame("database", magic, headerSize, data)
	if err != nil {
		return nil, err
	}
	db := &DB{version: binary.BigEndian.Uint64(data[12:])}
	copy(db.digest[:], data[len(body):])
	rest := body[headerSize:]
	for k := range Kind(numKinds) {
		count := uint64(binary.BigEndian.Uint32(data[20+4*k:]))
		n := binary.BigEndian.Uint64(data[32+8*k:])
		if n > uint64(len(rest)) {
			return nil, invalidf("%s section length %d exceeds the data", k, n)
		}
		if count > n/uint64(minRecord[k]) {
			return nil, invalidf("%s section: %d records cannot fit in %d bytes", k, count, n)
		}
		sec := rest[:n]
		rest = rest[n:]
		recs, sigs, sec, err := decodeRecords(k, sec, int(count))
		if err != nil {
			return nil, invalidf("%s section: %v", k, err)
		}
		if len(sec) != 0 {
			return nil, invalidf("%s section: %d bytes after the last record", k, len(sec))
		}
		db.recs[k], db.sigs[k] = recs, sigs
	}
	if len(rest) != 0 {
		return nil, invalidf("%d bytes after the sections", len(rest))
	}
	return db, nil
}

// checkFrame checks what databases and deltas share: at least headerSize
// bytes before the digest, the magic, the format version, zero reserved
// bytes and the trailing SHA-256. It returns data without the digest.
func checkFrame(what, magic string, headerSize int, data []byte) ([]byte, error) {
	if len(data) < headerSize+digestSize {
		return nil, invalidf("%s: %d bytes is too short", what, len(data))
	}
	if string(data[:len(magic)]) != magic {
		return nil, invalidf("%s: bad magic", what)
	}
	if v := binary.BigEndian.Uint16(data[8:]); v != formatVersion {
		return nil, invalidf("%s: format version %d, want %d", what, v, formatVersion)
	}
	if binary.BigEndian.Uint16(data[10:]) != 0 {
		return nil, invalidf("%s: reserved header bytes are not zero", what)
	}
	body := data[:len(data)-digestSize]
	if d := sha256.Sum256(body); !bytes.Equal(d[:], data[len(body):]) {
		return nil, invalidf("%s: digest mismatch", what)
	}
	return body, nil
}

// decodeRecords reads count records of kind k from the front of sec,
// checking each is canonical and greater than the one before, and returns
// them with the bytes that follow.
func decodeRecords(k Kind, sec []byte, count int) ([][]byte, []Signature, []byte, error) {
	recs := make([][]byte, count)
	sigs := make([]Signature, count)
	for i := range count {
		s, n, err := decodeRecord(k, sec)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("record %d: %v", i, err)
		}
		recs[i], sigs[i] = sec[:n:n], s
		sec = sec[n:]
		if i > 0 && bytes.Compare(recs[i-1], recs[i]) >= 0 {
			return nil, nil, nil, fmt.Errorf("record %d out of order", i)
		}
	}
	return recs, sigs, sec, nil
}

// decodeRecord decodes one record of kind k at the start of b, returning the
// signature and the record's length. It accepts only the canonical encoding
// of a valid signature.
func decodeRecord(k Kind, b []byte) (Signature, int, error) {
	d := decoder{b: b}
	s := Signature{Kind: k}
	if k == KindBody {
		s.Name = d.str()
		s.Target = d.u32()
		s.Offset = int64(d.uvarint()) - 1
		s.Pattern = d.str()
		s.MinFLevel = d.u32()
		s.MaxFLevel = d.u32()
	} else {
		s.Hash = d.bytes(k.hashLen())
		s.Size = int64(d.uvarint()) - 1
		s.MinFLevel = d.u32()
		s.MaxFLevel = d.u32()
		s.Name = d.str()
	}
	if d.err != nil {
		return s, 0, d.err
	}
	if err := s.check(); err != nil {
		return s, 0, err
	}
	// Reject non-minimal varints and anything else that would not
	// re-encode to the same bytes.
	if !bytes.Equal(appendRecord(nil, &s), b[:d.off]) {
		return s, 0, errors.New("not in canonical encoding")
	}
	return s, d.off, nil
}

// appendRecord appends the encoding of s, which must be valid.
func appendRecord(b []byte, s *Signature) []byte {
	if s.Kind == KindBody {
		b = appendStr(b, s.Name)
		b = binary.AppendUvarint(b, uint64(s.Target))
		b = binary.AppendUvarint(b, uint64(s.Offset+1))
		b = appendStr(b, s.Pattern)
		b = binary.AppendUvarint(b, uint64(s.MinFLevel))
		return binary.AppendUvarint(b, uint64(s.MaxFLevel))
	}
	b = append(b, s.Hash...)
	b = binary.AppendUvarint(b, uint64(s.Size+1))
	b = binary.AppendUvarint(b, uint64(s.MinFLevel))
	b = binary.AppendUvarint(b, uint64(s.MaxFLevel))
	return appendStr(b, s.Name)
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads fields from b, remembering the first error.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.err = errors.New("truncated or overlong varint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) u32() uint32 {
	v := d.uvarint()
	if v > 1<<32-1 {
		d.err = errors.New("value out of range")
	}
	return uint32(v)
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b)-d.off {
		d.err = errors.New("truncated")
		return nil
	}
	v := bytes.Clone(d.b[d.off : d.off+n])
	d.off += n
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err = errors.New("truncated string")
		return ""
	}
	return string(d.bytes(int(n)))
}
