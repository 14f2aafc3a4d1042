package access

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/vitrine-dev/vitrine/residency"
)

// The kinds of entry in an access log.
const (
	KindAccess        = "access"         // a [Record]
	KindCommitment    = "commitment"     // a [Commitment]
	KindDeniedSummary = "denied-summary" // a [DeniedSummary]
)

// EntryKind returns the kind of an access-log entry from its first bytes,
// which the canonical encodings fix: [KindAccess], [KindCommitment],
// [KindDeniedSummary], [KindGrant], or "" if the entry begins like none of
// them. It does not validate the entry; [Parse], [ParseCommitment],
// [ParseDeniedSummary] and [ParseGrant] do. A reader skips, or reports,
// kinds it does not know: the log may hold kinds added after it was
// written.
func EntryKind(entry []byte) string {
	for _, k := range []string{KindAccess, KindCommitment, KindDeniedSummary, KindGrant} {
		if bytes.HasPrefix(entry, []byte(`{"v":1,"kind":"`+k+`",`)) {
			return k
		}
	}
	return ""
}

// Commitment is a region's statement of what one of its datasets holds: how
// many records, and a Merkle tree root over them. A region appends one to
// its access log periodically and on demand, beside the access records, so
// that the supervisor, holding the records or a later commitment, can tell
// records that appeared or vanished other than through a logged access.
//
// # Format
//
// A commitment is one compact JSON object, UTF-8, with no whitespace and
// with its keys in exactly this order:
//
//	{"v":1,"kind":"commitment","time":"2026-11-22T10:00:00.123Z","region":"zurich",
//	 "dataset":"telemetry","count":3,"through":17,"root":"sha256:…"}
//
// (wrapped here for reading; a commitment is a single line). The fields:
//
//   - v is the format version, 1; kind is "commitment".
//   - time is when the region began to read the dataset, in UTC with
//     exactly three fractional digits, from 1970 to 9999, as in a [Record].
//     The records covered are those the dataset held at one moment between
//     time and the commitment's append to the log: every record stored
//     before time is covered unless it was deleted before that moment.
//   - region is the region whose log holds the commitment, a region name
//     as in a [Record].
//   - dataset names the dataset, with the syntax of a region name:
//     "telemetry" for the telemetry store.
//   - count is the number of records covered.
//   - through bounds their ids: every record covered has an id of at most
//     through, and every record the region stores later gets a larger id.
//     A record with an id of at most through that a later commitment or
//     the region's data holds, and this commitment does not, appeared
//     outside the rules.
//   - root is "sha256:" and the 64 lower-case hex digits of the Merkle tree
//     hash defined below.
//
// Record ids are positive and distinct, so count is at most through. The
// encoding is canonical as a [Record]'s is: [ParseCommitment] accepts
// exactly the bytes [Commitment.Marshal] writes.
//
// # Root
//
// The root is the Merkle Tree Hash of RFC 6962 (section 2.1), with
// SHA-256, over one leaf per record covered, in ascending order of record
// id. A record's leaf is 48 bytes:
//
//	id    8 bytes, big-endian two's complement (the record's id)
//	hash 32 bytes, the SHA-256 of the file the record reports (its sha256
//	       field decoded from hex)
//	time  8 bytes, big-endian two's complement: the record's time as
//	       microseconds since 1970-01-01T00:00:00Z (Go's time.UnixMicro)
//
// So, as in RFC 6962, a leaf hashes to SHA-256(0x00 || leaf), two subtrees
// to SHA-256(0x01 || left || right), a tree of n > 1 leaves splits at the
// largest power of two smaller than n, and the root of no records is the
// SHA-256 of the empty string. Anyone holding the records recomputes it
// with a [DatasetTree]; the tree is the one a tlog-tiles log of the leaves
// would have, so tools for such logs apply.
type Commitment struct {
	Time    time.Time // encoded in UTC, truncated to the millisecond
	Region  string
	Dataset string
	Count   int64
	Through int64
	Root    string // "sha256:" and the hex root hash
}

const (
	commitmentPrefix  = `{"v":1,"kind":"commitment","time":`
	invalidCommitment = "invalid commitment"
	// LeafSize is the size in bytes of a record's leaf in a commitment's
	// tree.
	LeafSize = 48
)

// ErrMismatch means that records do not match the commitment said to
// cover them.
var ErrMismatch = errors.New("records do not match the commitment")

// EmptyRoot is the root of a commitment to no records: "sha256:" and the
// SHA-256 of the empty string.
var EmptyRoot = digestPrefix + hex.EncodeToString(rfc6962.DefaultHasher.EmptyRoot())

// Validate reports whether c is a commitment [Commitment.Marshal] can
// encode: the rules are in the type's documentation.
func (c *Commitment) Validate() error {
	_, err := c.Marshal()
	return err
}

// Marshal returns the canonical encoding of c, the bytes that go into the
// access log. It validates c first and never encodes an invalid
// commitment.
func (c *Commitment) Marshal() ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", invalidCommitment, err)
	}
	return c.encode(), nil
}

func (c *Commitment) encode() []byte {
	b := make([]byte, 0, 256)
	b = append(b, commitmentPrefix...)
	b = append(b, '"')
	b = c.Time.UTC().Truncate(time.Millisecond).AppendFormat(b, timeLayout)
	b = append(b, `","region":`...)
	b = appendString(b, c.Region)
	b = append(b, `,"dataset":`...)
	b = appendString(b, c.Dataset)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, c.Count, 10)
	b = append(b, `,"through":`...)
	b = strconv.AppendInt(b, c.Through, 10)
	b = append(b, `,"root":`...)
	b = appendString(b, c.Root)
	return append(b, '}')
}

func (c *Commitment) check() error {
	if err := checkTime("time", c.Time); err != nil {
		return err
	}
	if !residency.ValidRegionName(c.Region) {
		return fmt.Errorf("region %q is not a region name (a lower-case letter followed by up to 31 lower-case letters, digits and hyphens)", c.Region)
	}
	if !residency.ValidRegionName(c.Dataset) {
		return fmt.Errorf("dataset %q is not a dataset name (a lower-case letter followed by up to 31 lower-case letters, digits and hyphens)", c.Dataset)
	}
	switch {
	case c.Count < 0:
		return fmt.Errorf("count %d is negative", c.Count)
	case c.Through < 0:
		return fmt.Errorf("through %d is negative", c.Through)
	case c.Count > c.Through:
		return fmt.Errorf("count %d is more than through %d: %d distinct positive ids cannot all be at most %d", c.Count, c.Through, c.Count, c.Through)
	case !validDigest(c.Root):
		return fmt.Errorf("root %q is not %q and 64 lower-case hex digits", c.Root, digestPrefix)
	case c.Count == 0 && c.Root != EmptyRoot:
		return fmt.Errorf("root %s of no records is not the empty root %s", c.Root, EmptyRoot)
	}
	return nil
}

// ParseCommitment reads one commitment, strictly, as [Parse] reads a
// record: it accepts b only if b is exactly the encoding
// [Commitment.Marshal] gives the commitment it reads. Anything else is an
// error that says what is wrong.
func ParseCommitment(b []byte) (*Commitment, error) {
	c, err := parseCommitment(b)
	if err != nil {
		return nil, fmt.Errorf("parsing commitment: %w", err)
	}
	return c, nil
}

func parseCommitment(b []byte) (*Commitment, error) {
	c := new(Commitment)
	if err := parseObject(b, "commitment", c.fields); err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", invalidCommitment, err)
	}
	if err := canonical(b, c.encode()); err != nil {
		return nil, err
	}
	return c, nil
}

// fields lists the keys of a commitment in their order, with the readers
// that fill c.
func (c *Commitment) fields(p *parser) []field {
	intField := func(key string, dst *int64) field {
		return field{key, false, func(path string) (err error) {
			*dst, err = p.int(path)
			return err
		}}
	}
	return []field{
		p.versionField(),
		p.kindField(KindCommitment),
		p.timeField("time", &c.Time),
		p.stringField("region", &c.Region),
		p.stringField("dataset", &c.Dataset),
		intField("count", &c.Count),
		intField("through", &c.Through),
		p.stringField("root", &c.Root),
	}
}

// Verify checks that the records appended to t, in id order, are those c
// covers: as many, none beyond c's bound, with c's root. Every mismatch is
// an error wrapping [ErrMismatch] that says what differs.
func (c *Commitment) Verify(t *DatasetTree) error {
	switch {
	case t.Count() != c.Count:
		return fmt.Errorf("%w: %d records, the commitment covers %d", ErrMismatch, t.Count(), c.Count)
	case t.Last() > c.Through:
		return fmt.Errorf("%w: record %d is beyond the commitment's bound %d", ErrMismatch, t.Last(), c.Through)
	case t.Root() != c.Root:
		return fmt.Errorf("%w: the records' root is %s, the commitment's %s", ErrMismatch, t.Root(), c.Root)
	}
	return nil
}

// DatasetTree computes the count and root of a commitment from the records
// it covers, appended one at a time in ascending order of id. It keeps
// only a compact range of the tree, O(log n) hashes for n records, so that
// a dataset of any size streams through it. The zero value is not usable;
// call [NewDatasetTree]. It is not safe for concurrent use.
type DatasetTree struct {
	rng   *compact.Range
	count int64
	last  int64
	leaf  [LeafSize]byte
}

var rangeFactory = compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// NewDatasetTree returns the tree of no records.
func NewDatasetTree() *DatasetTree {
	return &DatasetTree{rng: rangeFactory.NewEmptyRange(0)}
}

// Append adds the record with the given id, file hash (64 lower-case hex
// digits) and time. Ids must be positive and ascend; an error says which
// rule a record breaks and leaves t as it was.
func (t *DatasetTree) Append(id int64, sha256 string, at time.Time) error {
	if id <= t.last {
		if id <= 0 {
			return fmt.Errorf("record id %d is not positive", id)
		}
		return fmt.Errorf("record id %d does not follow %d: records go in ascending order of id", id, t.last)
	}
	if err := putLeaf(&t.leaf, id, sha256, at); err != nil {
		return err
	}
	if err := t.rng.Append(rfc6962.DefaultHasher.HashLeaf(t.leaf[:]), nil); err != nil {
		return err // only for a range that does not start at 0, which NewDatasetTree's does
	}
	t.count++
	t.last = id
	return nil
}

// Count returns the number of records appended.
func (t *DatasetTree) Count() int64 { return t.count }

// Last returns the id of the last record appended, 0 if none was.
func (t *DatasetTree) Last() int64 { return t.last }

// Root returns the root of the records appended: "sha256:" and 64 hex
// digits.
func (t *DatasetTree) Root() string {
	root, err := t.rng.GetRootHash(nil)
	if err != nil {
		panic(err) // only for a range that does not start at 0
	}
	if root == nil {
		return EmptyRoot
	}
	return digestPrefix + hex.EncodeToString(root)
}

// CommitmentLeaf returns the leaf of a record in a commitment's tree (see
// [Commitment]), or an error if sha256 is not 64 lower-case hex digits.
func CommitmentLeaf(id int64, sha256 string, at time.Time) ([]byte, error) {
	var leaf [LeafSize]byte
	if err := putLeaf(&leaf, id, sha256, at); err != nil {
		return nil, err
	}
	return leaf[:], nil
}

func putLeaf(leaf *[LeafSize]byte, id int64, sha256 string, at time.Time) error {
	if len(sha256) != 64 {
		return fmt.Errorf("record %d: file hash %q is not 64 lower-case hex digits", id, sha256)
	}
	// One pass that checks and decodes: a commitment decodes every
	// record's hash.
	var bad byte
	for i := range 32 {
		hi, lo := hexValue[sha256[2*i]], hexValue[sha256[2*i+1]]
		bad |= hi | lo
		leaf[8+i] = hi<<4 | lo&0x0f
	}
	if bad&0xf0 != 0 {
		return fmt.Errorf("record %d: file hash %q is not 64 lower-case hex digits", id, sha256)
	}
	binary.BigEndian.PutUint64(leaf[0:8], uint64(id))
	binary.BigEndian.PutUint64(leaf[40:48], uint64(at.UnixMicro()))
	return nil
}

// hexValue maps a lower-case hex digit to its value and every other byte
// to 0xff.
var hexValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := byte('0'); c <= '9'; c++ {
		t[c] = c - '0'
	}
	for c := byte('a'); c <= 'f'; c++ {
		t[c] = c - 'a' + 10
	}
	return t
}()
