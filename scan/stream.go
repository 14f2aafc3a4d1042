package scan

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"

	"github.com/vitrine-dev/vitrine/ruledb"
)

// chunkSize is how much of a file is read, hashed and matched at a time:
// small enough that the chunk is still in the CPU's cache when the matcher
// reads it after the hash did.
const chunkSize = 256 << 10

// ErrSizeChanged is returned (wrapped) when a file yields a different
// number of bytes than its size said, typically because it was written to
// during the scan. The scan's result would be unreliable.
var ErrSizeChanged = errors.New("file changed size during the scan")

// state is what one scan needs besides the Scanner: buffers, hashes and
// what was found. A state serves one scan at a time and is reused.
type state struct {
	s     *Scanner
	gen   uint32   // scan number; done[i] == gen: body signature i found
	done  []uint32 // per body signature
	found []Match
	ends  []int // scratch for the ends of a part's matches
	raw   view
	norm  view
	md5   hash.Hash
	sha   hash.Hash
	// file type, from the first bytes
	pe, elf, text bool
}

// view is one stream of bytes the body signatures are matched against: the
// file itself, or its normalised text.
type view struct {
	normalised bool
	buf        []byte // buf[:n] holds the stream's bytes from base on
	n          int
	base       int64
	next       int64 // the next position whose anchors are looked up
	space      bool  // normaliser: last byte written was a space
	chains     []chain
	chainGen   []uint32
	gen        uint32
}

// chain holds, for a signature of several parts, where chained matches of
// its parts ended: parts 0..j matched in order with their gaps, the last of
// them ending at the recorded position. A part followed by an unbounded gap
// needs only its smallest end; one followed by a bounded gap keeps every
// end that a later part could still reach.
type chain struct {
	minEnd []int64
	ends   [][]int64
}

func (s *Scanner) getState() *state {
	if st, ok := s.pool.Get().(*state); ok {
		return st
	}
	st := &state{s: s, done: make([]uint32, len(s.body))}
	st.raw.buf = make([]byte, s.Window()+chunkSize)
	st.norm.normalised = true
	for _, v := range []*view{&st.raw, &st.norm} {
		v.chains, v.chainGen = make([]chain, s.nMulti), make([]uint32, s.nMulti)
	}
	st.md5, st.sha = md5.New(), sha256.New()
	return st
}

// Scan reads r to its end and returns the signatures that match its bytes,
// sorted by name and kind, each once. size is the number of bytes r holds,
// or -1 if it is not known (then every file is hashed when the database
// has hash signatures); if r yields a different number, Scan returns an
// error wrapping ErrSizeChanged. Errors reading r are returned as they
// are. An empty input matches nothing, as ClamAV skips empty files.
func (s *Scanner) Scan(r io.Reader, size int64) ([]Match, error) {
	st := s.getState()
	defer s.pool.Put(st)
	return st.run(r, size)
}

// ScanFile scans the named file (see Scan). It reads the file once, a
// chunk at a time, so files larger than memory are scanned too.
func (s *Scanner) ScanFile(path string) ([]Match, error) {
	// Check before opening: opening a named pipe would block.
	if fi, err := os.Stat(path); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("scanning %s: not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("scanning %s: not a regular file", path)
	}
	m, err := s.Scan(f, fi.Size())
	if err != nil {
		return nil, fmt.Errorf("scanning %s: %w", path, err)
	}
	return m, nil
}

func (st *state) run(r io.Reader, size int64) ([]Match, error) {
	s := st.s
	st.gen++
	if st.gen == 0 { // wrapped: forget every old mark
		clear(st.done)
		st.gen = 1
	}
	st.found = st.found[:0]
	st.raw.reset()
	st.norm.reset()
	st.pe, st.elf, st.text = false, false, false
	hashMD5, hashSHA := s.md5.needed(size), s.sha256.needed(size)
	st.md5.Reset()
	st.sha.Reset()
	normalise := false
	var total int64
	for first := true; ; first = false {
		st.raw.makeRoom(s, chunkSize)
		n, err := io.ReadFull(r, st.raw.buf[st.raw.n:st.raw.n+chunkSize])
		eof := err == io.EOF || err == io.ErrUnexpectedEOF
		if err != nil && !eof {
			return nil, err
		}
		chunk := st.raw.buf[st.raw.n : st.raw.n+n]
		total += int64(n)
		if hashMD5 {
			st.md5.Write(chunk)
		}
		if hashSHA {
			st.sha.Write(chunk)
		}
		if first {
			if n == 0 {
				return nil, nil
			}
			st.detectType(chunk)
			normalise = st.text && (size < 0 || size <= maxNormalize)
		}
		if normalise {
			if total > maxNormalize {
				normalise = false
			} else {
				st.norm.normalise(chunk)
			}
		}
		st.raw.n += n
		st.scanView(&st.raw, eof)
		if eof {
			break
		}
	}
	if size >= 0 && total != size {
		return nil, fmt.Errorf("%w: %d bytes, expected %d", ErrSizeChanged, total, size)
	}
	if normalise {
		st.scanView(&st.norm, true)
	}
	var sum [sha256.Size]byte
	if hashMD5 {
		st.found = s.md5.lookup(st.md5.Sum(sum[:0]), total, st.found, ruledb.KindMD5)
	}
	if hashSHA {
		st.found = s.sha256.lookup(st.sha.Sum(sum[:0]), total, st.found, ruledb.KindSHA256)
	}
	out := slices.Clone(st.found)
	slices.SortFunc(out, func(a, b Match) int {
		if a.Name != b.Name {
			if a.Name < b.Name {
				return -1
			}
			return 1
		}
		return int(a.Kind) - int(b.Kind)
	})
	return slices.Compact(out), nil
}

// textChars classifies bytes as file(1) does and ClamAV copies: 'T' for
// plain ASCII text, 'F' for bytes never in text, 'X' for the others.
var textChars = func() (t [256]byte) {
	for c := range t {
		switch {
		case c == 7 || c == 8 || c == 9 || c == 10 || c == 12 || c == 13 || c == 27 || c >= 0x20 && c < 0x7f || c == 0x85:
			t[c] = 'T'
		case c < 0x80:
			t[c] = 'F'
		default:
			t[c] = 'X'
		}
	}
	return t
}()

// detectType classifies the file by its first bytes as ClamAV 1.4 does for
// the types the scanner knows: PE ("MZ"), ELF ("\x7fELF"), or text, which
// is what ClamAV's text detection accepts in the first 1024 bytes: no byte
// file(1) deems never in text (which lets most high bytes through), or
// valid UTF-8, or UTF-16 by ClamAV's loose test (which a good share of
// random binary data passes).
func (st *state) detectType(b []byte) {
	switch {
	case len(b) >= 2 && string(b[:2]) == "MZ":
		st.pe = true
	case len(b) >= 4 && string(b[:4]) == "\x7fELF":
		st.elf = true
	default:
		b = b[:min(len(b), 1024)]
		st.text = isASCII(b) || isUTF8(b) || isUTF16(b)
	}
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if textChars[c] == 'F' {
			return false
		}
	}
	return true
}

// isUTF8 is ClamAV's td_isutf8: well-formed sequences (a truncated one at
// the end is fine), at least one of them multi-byte, and no ASCII control
// characters besides those of text.
func isUTF8(b []byte) bool {
	got := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c&0x80 == 0 {
			if textChars[c] != 'T' {
				return false
			}
			continue
		}
		if c&0x40 == 0 {
			return false
		}
		following := 0
		switch {
		case c&0x20 == 0:
			following = 1
		case c&0x10 == 0:
			following = 2
		case c&0x08 == 0:
			following = 3
		case c&0x04 == 0:
			following = 4
		case c&0x02 == 0:
			following = 5
		default:
			return false
		}
		for range following {
			i++
			if i >= len(b) {
				return got
			}
			if b[i]&0x80 == 0 || b[i]&0x40 != 0 {
				return false
			}
		}
		got = true
	}
	return got
}

// isUTF16 is ClamAV's td_isutf16: from the third byte on, every 16-bit
// unit below 128 is a text character (without a byte-order mark; with
// one, fewer than half of them may not be), and none is U+FFFE.
func isUTF16(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	be, bom := true, true
	switch {
	case b[0] == 0xff && b[1] == 0xfe:
		be = false
	case b[0] == 0xfe && b[1] == 0xff:
	default:
		bom = false
	}
	bad := 0
	for i := 2; i+1 < len(b); i += 2 {
		c := int(b[i])<<8 | int(b[i+1])
		if !be {
			c = int(b[i+1])<<8 | int(b[i])
		}
		if c == 0xfffe {
			return false
		}
		if c < 128 && textChars[c] != 'T' {
			if !bom {
				return false
			}
			bad++
		}
	}
	return !bom || bad < len(b)/2
}

func (v *view) reset() {
	v.n, v.base, v.next, v.space = 0, 0, 0, false
	v.gen++
	if v.gen == 0 {
		clear(v.chainGen)
		v.gen = 1
	}
}

// makeRoom drops the bytes no anchor can look back to any more and makes
// sure n more bytes fit after the rest.
func (v *view) makeRoom(s *Scanner, n int) {
	keep := max(v.next-int64(s.maxBack), v.base) // first byte still needed
	drop := int(keep - v.base)
	if drop > 0 {
		copy(v.buf, v.buf[drop:v.n])
		v.n -= drop
		v.base = keep
	}
	if cap(v.buf)-v.n < n {
		nb := make([]byte, v.n+n, max(2*cap(v.buf), v.n+n))
		copy(nb, v.buf[:v.n])
		v.buf = nb
	}
	v.buf = v.buf[:cap(v.buf)]
}

// normalise appends the text normalisation of b, as ClamAV makes it for
// text files: upper case to lower case, each run of white space to one
// space, other control characters and bytes above 0x7e dropped.
func (v *view) normalise(b []byte) {
	if cap(v.buf)-v.n < len(b) {
		nb := make([]byte, v.n, max(2*cap(v.buf), v.n+len(b), 64<<10))
		copy(nb, v.buf[:v.n])
		v.buf = nb
	}
	out := v.buf[v.n:cap(v.buf)]
	k := 0
	for _, c := range b {
		switch {
		case c == ' ' || c >= 9 && c <= 13:
			if !v.space {
				out[k] = ' '
				k++
			}
			v.space = true
		case c < 0x20 || c >= 0x80:
		default:
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			out[k] = c
			k++
			v.space = false
		}
	}
	v.n += k
	v.buf = v.buf[:cap(v.buf)]
}

// scanView looks up the anchors at every position of v not yet examined
// whose signature parts are wholly in the buffer (all of them at eof).
func (st *state) scanView(v *view, eof bool) {
	s := st.s
	b := v.buf[:v.n]
	from := int(v.next - v.base)
	end := len(b)
	if !eof {
		end -= s.maxFwd
	}
	if end <= from {
		return
	}
	longEnd := max(from, min(end, len(b)-3))
	st.scanRange(v, b, from, longEnd)
	if s.hasShort {
		for i := longEnd; i < end && i+2 <= len(b); i++ {
			k := uint32(binary.LittleEndian.Uint16(b[i:]))
			if s.short.bitmap[k>>6]&(1<<(k&63)) != 0 {
				st.candidates(v, &s.short, k, i)
			}
		}
	}
	v.next = v.base + int64(end)
}

// scanRange is the hot loop: one hash and one bitmap probe per position,
// plus one probe of the short-anchor bitmap when there are short anchors.
// Positions from to to-1 must have four bytes after them.
func (st *state) scanRange(v *view, b []byte, from, to int) {
	s := st.s
	lt := &s.long
	bm, shift := lt.bitmap, lt.shift
	if !s.hasShort {
		i := from
		// Four positions per eight-byte load.
		for ; i+8 <= to+3 && i+8 <= len(b); i += 4 {
			w := binary.LittleEndian.Uint64(b[i:])
			k0, k1, k2, k3 := uint32(w), uint32(w>>8), uint32(w>>16), uint32(w>>24)
			h0, h1, h2, h3 := (k0*hashMul)>>shift, (k1*hashMul)>>shift, (k2*hashMul)>>shift, (k3*hashMul)>>shift
			if bm[h0>>6]&(1<<(h0&63)) != 0 {
				st.candidates(v, lt, k0, i)
			}
			if bm[h1>>6]&(1<<(h1&63)) != 0 {
				st.candidates(v, lt, k1, i+1)
			}
			if bm[h2>>6]&(1<<(h2&63)) != 0 {
				st.candidates(v, lt, k2, i+2)
			}
			if bm[h3>>6]&(1<<(h3&63)) != 0 {
				st.candidates(v, lt, k3, i+3)
			}
		}
		for ; i < to; i++ {
			k := binary.LittleEndian.Uint32(b[i:])
			h := (k * hashMul) >> shift
			if bm[h>>6]&(1<<(h&63)) != 0 {
				st.candidates(v, lt, k, i)
			}
		}
		return
	}
	sbm := s.short.bitmap[:1024]
	for i := from; i < to; i++ {
		k := binary.LittleEndian.Uint32(b[i:])
		h := (k * hashMul) >> shift
		if bm[h>>6]&(1<<(h&63)) != 0 {
			st.candidates(v, lt, k, i)
		}
		k2 := k & 0xffff
		if sbm[k2>>6]&(1<<(k2&63)) != 0 {
			st.candidates(v, &s.short, k2, i)
		}
	}
}

// candidates verifies the signature parts of t whose anchor is key at
// position i of v's buffer.
func (st *state) candidates(v *view, t *anchorTable, key uint32, i int) {
	h := t.bit(key) >> t.bucketShift
	for _, e := range t.entries[t.start[h]:t.start[h+1]] {
		if e.key != key || st.done[e.sig] == st.gen {
			continue
		}
		sig := &st.s.body[e.sig]
		if !st.applies(v, sig.target) {
			continue
		}
		st.verify(v, sig, e.sig, int(e.part), i)
	}
}

// applies reports whether signatures of target type t apply to view v of
// the file being scanned: as in ClamAV, the file itself is matched against
// signatures for any file and for its own type (PE, ELF), and the
// normalised form of a text file against those for any file and for text.
func (st *state) applies(v *view, t uint32) bool {
	switch t {
	case targetAny:
		return true
	case targetText:
		return v.normalised
	case targetPE:
		return st.pe && !v.normalised
	case targetELF:
		return st.elf && !v.normalised
	}
	return false
}

func (st *state) report(sig *bodySig, id int32) {
	st.done[id] = st.gen
	st.found = append(st.found, Match{Name: sig.name, Kind: ruledb.KindBody})
}
