package scan

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"sort"
	"sync"

	"github.com/vitrine-dev/vitrine/ruledb"
)

// FLevel is the ClamAV functionality level the scanner implements, that of
// ClamAV 1.4. A signature whose MinFLevel is above it or whose MaxFLevel is
// below it is skipped, as ClamAV 1.4 skips it.
const FLevel = 216

// maxNormalize is the largest text file whose normalised form is scanned
// (ClamAV's MaxScriptNormalize default, 5 MiB).
const maxNormalize = 5 << 20

// Target types the scanner tells apart, as ClamAV's Target field numbers
// them.
const (
	targetAny  = 0
	targetPE   = 1
	targetELF  = 6
	targetText = 7
)

// Match is one signature that matched a file.
type Match struct {
	// Name is the signature's detection name.
	Name string
	// Kind says whether a whole-file hash (MD5, SHA-256) or a body
	// signature matched.
	Kind ruledb.Kind
}

// String returns the name and, in parentheses, the kind: "EICAR (md5)".
func (m Match) String() string { return m.Name + " (" + m.Kind.String() + ")" }

// Scanner is a rule database compiled for matching. It is immutable and
// safe for concurrent use; each call to Scan or ScanFile uses its own
// buffers, taken from a pool.
type Scanner struct {
	md5      hashIndex
	sha256   hashIndex
	body     []bodySig
	nMulti   int // body signatures of more than one part
	skipped  []ruledb.Signature
	maxBack  int // most bytes an anchor may lie after its part's start
	maxFwd   int // most bytes a part may reach from its anchor's start
	long     anchorTable
	short    anchorTable
	hasShort bool
	pool     sync.Pool
}

type bodySig struct {
	name   string
	target uint32
	offset int64
	parts  []part
	multi  int // index among multi-part signatures, or -1
}

// hashIndex holds the hash signatures of one kind in flat arrays sorted by
// hash, which ruledb's order already is: no map to build at load time.
type hashIndex struct {
	width   int    // hash length
	hashes  []byte // sigs[i]'s hash is hashes[i*width:(i+1)*width]
	sigs    []hashSig
	sizes   sizeSet // sizes of the signatures
	unknown bool    // some signature has UnknownSize
}

type hashSig struct {
	name string
	size int64
}

func (h *hashIndex) add(s *ruledb.Signature) {
	h.width = len(s.Hash)
	h.hashes = append(h.hashes, s.Hash...)
	h.sigs = append(h.sigs, hashSig{s.Name, s.Size})
	if s.Size == ruledb.UnknownSize {
		h.unknown = true
	} else {
		h.sizes.keys = append(h.sizes.keys, s.Size)
	}
}

// finish sorts what add collected, if it came out of order.
func (h *hashIndex) finish() {
	h.sizes.build()
	n := len(h.sigs)
	if sort.SliceIsSorted(h.sigs, func(i, j int) bool { return bytes.Compare(h.hash(i), h.hash(j)) < 0 }) {
		return
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return bytes.Compare(h.hash(a), h.hash(b)) })
	hashes := make([]byte, 0, len(h.hashes))
	sigs := make([]hashSig, 0, n)
	for _, i := range idx {
		hashes = append(hashes, h.hash(i)...)
		sigs = append(sigs, h.sigs[i])
	}
	h.hashes, h.sigs = hashes, sigs
}

func (h *hashIndex) hash(i int) []byte { return h.hashes[i*h.width : (i+1)*h.width] }

// needed reports whether a file of size bytes (-1: not known) may match a
// signature of h, so that it is worth hashing.
func (h *hashIndex) needed(size int64) bool {
	if h.unknown || len(h.sigs) > 0 && size < 0 {
		return true
	}
	return h.sizes.has(size)
}

// sizeSet is a set of sizes: open addressing in a table of twice as many
// slots as keys, built in one pass.
type sizeSet struct {
	keys  []int64
	slots []int64 // size+1, 0 for empty
	mask  uint64
}

func (z *sizeSet) build() {
	n := 1
	for n < 2*len(z.keys) {
		n <<= 1
	}
	z.slots, z.mask = make([]int64, n), uint64(n-1)
	for _, k := range z.keys {
		for i := z.slot(k); ; i = (i + 1) & z.mask {
			if z.slots[i] == 0 {
				z.slots[i] = k + 1
				break
			}
			if z.slots[i] == k+1 {
				break
			}
		}
	}
	z.keys = nil
}

func (z *sizeSet) slot(k int64) uint64 { return (uint64(k) * 0x9E3779B97F4A7C15) >> 20 & z.mask }

func (z *sizeSet) has(k int64) bool {
	if len(z.slots) == 0 {
		return false
	}
	for i := z.slot(k); z.slots[i] != 0; i = (i + 1) & z.mask {
		if z.slots[i] == k+1 {
			return true
		}
	}
	return false
}

func (h *hashIndex) lookup(sum []byte, size int64, out []Match, kind ruledb.Kind) []Match {
	i := sort.Search(len(h.sigs), func(i int) bool { return bytes.Compare(h.hash(i), sum) >= 0 })
	for ; i < len(h.sigs) && bytes.Equal(h.hash(i), sum); i++ {
		if s := h.sigs[i]; s.size == ruledb.UnknownSize || s.size == size {
			out = append(out, Match{Name: s.name, Kind: kind})
		}
	}
	return out
}

// anchorTable finds the anchors starting at a position. A bitmap over a
// hash of the anchor bytes, with about a hundred bits per anchor so that it
// rejects 99% of positions yet stays small enough for the CPU's cache, is
// probed at every position; the entries of the few positions it lets
// through lie next to each other in a bucket (start[b] to start[b+1]),
// where b is the top bits of the same hash.
type anchorTable struct {
	shift       uint32 // hash >> shift is the bitmap bit
	bucketShift uint32 // bit >> bucketShift is the bucket
	direct      bool   // short anchors: the 16-bit key is the bit and bucket
	bitmap      []uint64
	start       []uint32
	entries     []anchorEntry
}

type anchorEntry struct {
	key  uint32
	sig  int32
	part int32
}

const hashMul = 0x9E3779B1

func (t *anchorTable) bit(key uint32) uint32 {
	if t.direct {
		return key
	}
	return (key * hashMul) >> t.shift
}

func (t *anchorTable) build(es []anchorEntry) {
	b := min(24, max(12, bits.Len(uint(len(es)*64))))
	nb := min(b, max(8, bits.Len(uint(len(es)*2))))
	t.shift, t.bucketShift = uint32(32-b), uint32(b-nb)
	t.bitmap = make([]uint64, (1<<b+63)/64)
	n := 1 << nb
	t.start = make([]uint32, n+1)
	for _, e := range es {
		t.start[t.bit(e.key)>>t.bucketShift+1]++
	}
	for i := 1; i <= n; i++ {
		t.start[i] += t.start[i-1]
	}
	t.entries = make([]anchorEntry, len(es))
	fill := slices.Clone(t.start[:n])
	for _, e := range es {
		h := t.bit(e.key)
		t.entries[fill[h>>t.bucketShift]] = e
		fill[h>>t.bucketShift]++
		t.bitmap[h>>6] |= 1 << (h & 63)
	}
}

// New compiles db into a Scanner. Signatures outside FLevel and body
// signatures for target types the scanner does not detect (see the package
// documentation) are left out and listed by Skipped. An error means a body
// pattern this package cannot compile, which ruledb.Open would not have
// accepted.
func New(db *ruledb.DB) (*Scanner, error) {
	s := &Scanner{}
	sigs := db.Signatures()
	var count [3]int
	for i := range sigs {
		count[sigs[i].Kind]++
	}
	for k, h := range []*hashIndex{&s.md5, &s.sha256} {
		h.hashes = make([]byte, 0, count[k]*[]int{16, 32}[k])
		h.sigs = make([]hashSig, 0, count[k])
		h.sizes.keys = make([]int64, 0, count[k])
	}
	s.body = make([]bodySig, 0, count[ruledb.KindBody])
	long := make([]anchorEntry, 0, count[ruledb.KindBody])
	var short []anchorEntry
	for i := range sigs {
		sig := &sigs[i]
		if sig.MinFLevel > FLevel || sig.MaxFLevel != 0 && sig.MaxFLevel < FLevel {
			s.skipped = append(s.skipped, *sig)
			continue
		}
		switch sig.Kind {
		case ruledb.KindMD5:
			s.md5.add(sig)
			continue
		case ruledb.KindSHA256:
			s.sha256.add(sig)
			continue
		}
		switch sig.Target {
		case targetAny, targetPE, targetELF, targetText:
		default:
			s.skipped = append(s.skipped, *sig)
			continue
		}
		parts, err := compilePattern(sig.Pattern)
		if err != nil {
			return nil, fmt.Errorf("compiling signature %s: %v", sig.Name, err)
		}
		b := bodySig{name: sig.Name, target: sig.Target, offset: sig.Offset, parts: parts, multi: -1}
		if len(parts) > 1 {
			b.multi = s.nMulti
			s.nMulti++
		}
		id := int32(len(s.body))
		for j := range parts {
			p := &parts[j]
			s.maxBack = max(s.maxBack, slices.Max(p.prefixes))
			s.maxFwd = max(s.maxFwd, p.maxLen-slices.Min(p.prefixes))
			if len(p.key) == 4 {
				long = append(long, anchorEntry{binary.LittleEndian.Uint32(p.key), id, int32(j)})
			} else {
				short = append(short, anchorEntry{uint32(binary.LittleEndian.Uint16(p.key)), id, int32(j)})
			}
		}
		s.body = append(s.body, b)
	}
	s.md5.finish()
	s.sha256.finish()
	s.maxFwd = max(s.maxFwd, 4)
	s.long.build(long)
	if len(short) > 0 {
		// Short keys index their table directly, without hashing.
		s.short.buildDirect(short)
		s.hasShort = true
	}
	return s, nil
}

// buildDirect lays out a table indexed by the 16-bit key itself.
func (t *anchorTable) buildDirect(es []anchorEntry) {
	const n = 1 << 16
	t.direct = true
	t.bitmap = make([]uint64, n/64)
	t.start = make([]uint32, n+1)
	for _, e := range es {
		t.start[e.key+1]++
	}
	for i := 1; i <= n; i++ {
		t.start[i] += t.start[i-1]
	}
	t.entries = make([]anchorEntry, len(es))
	fill := slices.Clone(t.start[:n])
	for _, e := range es {
		t.entries[fill[e.key]] = e
		fill[e.key]++
		t.bitmap[e.key>>6] |= 1 << (e.key & 63)
	}
}

// Skipped returns the signatures of the database the scanner does not
// apply: those outside its functionality level and body signatures for
// target types it does not detect.
func (s *Scanner) Skipped() []ruledb.Signature { return slices.Clone(s.skipped) }

// Window returns how many bytes of a file the scanner keeps in memory at
// once besides its read buffer: enough for the longest part of any body
// signature around its anchor.
func (s *Scanner) Window() int { return s.maxBack + s.maxFwd }
