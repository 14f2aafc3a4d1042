package scan

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
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

// hashIndex holds the hash signatures of one kind.
type hashIndex struct {
	sigs    map[string][]hashSig // by hash bytes
	sizes   map[int64]bool       // sizes some signature names
	unknown bool                 // some signature has UnknownSize
}

type hashSig struct {
	name string
	size int64
}

func (h *hashIndex) add(s *ruledb.Signature) {
	if h.sigs == nil {
		h.sigs, h.sizes = map[string][]hashSig{}, map[int64]bool{}
	}
	h.sigs[string(s.Hash)] = append(h.sigs[string(s.Hash)], hashSig{s.Name, s.Size})
	if s.Size == ruledb.UnknownSize {
		h.unknown = true
	} else {
		h.sizes[s.Size] = true
	}
}

// needed reports whether a file of size bytes (-1: not known) may match a
// signature of h, so that it is worth hashing.
func (h *hashIndex) needed(size int64) bool {
	return h.unknown || len(h.sigs) > 0 && (size < 0 || h.sizes[size])
}

func (h *hashIndex) lookup(sum []byte, size int64, out []Match, kind ruledb.Kind) []Match {
	for _, s := range h.sigs[string(sum)] {
		if s.size == ruledb.UnknownSize || s.size == size {
			out = append(out, Match{Name: s.name, Kind: kind})
		}
	}
	return out
}

// anchorTable finds the anchors starting at a position: a bitmap over a
// hash of the anchor bytes rejects most positions with one load from a
// table small enough for the CPU's cache, and the entries of a bucket lie
// next to each other (start[h] to start[h+1]).
type anchorTable struct {
	shift   uint32
	bitmap  []uint64
	start   []uint32
	entries []anchorEntry
}

type anchorEntry struct {
	key  uint32
	sig  int32
	part int32
}

const hashMul = 0x9E3779B1

func (t *anchorTable) bucket(key uint32) uint32 { return (key * hashMul) >> t.shift }

func (t *anchorTable) build(es []anchorEntry, minBits int) {
	b := max(minBits, bits.Len(uint(len(es)*16)))
	b = min(b, 22)
	t.shift = uint32(32 - b)
	n := 1 << b
	t.bitmap = make([]uint64, (n+63)/64)
	t.start = make([]uint32, n+1)
	for _, e := range es {
		t.start[t.bucket(e.key)+1]++
	}
	for i := 1; i <= n; i++ {
		t.start[i] += t.start[i-1]
	}
	t.entries = make([]anchorEntry, len(es))
	fill := slices.Clone(t.start[:n])
	for _, e := range es {
		h := t.bucket(e.key)
		t.entries[fill[h]] = e
		fill[h]++
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
	var long, short []anchorEntry
	for _, sig := range db.Signatures() {
		if sig.MinFLevel > FLevel || sig.MaxFLevel != 0 && sig.MaxFLevel < FLevel {
			s.skipped = append(s.skipped, sig)
			continue
		}
		switch sig.Kind {
		case ruledb.KindMD5:
			s.md5.add(&sig)
			continue
		case ruledb.KindSHA256:
			s.sha256.add(&sig)
			continue
		}
		switch sig.Target {
		case targetAny, targetPE, targetELF, targetText:
		default:
			s.skipped = append(s.skipped, sig)
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
	s.maxFwd = max(s.maxFwd, 4)
	s.long.build(long, 12)
	s.short.build(short, 16)
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
	t.shift = 0
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
