package scan

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// A body signature compiles to parts: the runs of its pattern between the
// variable gaps (*, {n-m}, {-n}, {n-}). Each part is a sequence of elements
// of bounded length, matched in place around a candidate position that the
// anchor table reports; parts are chained by the gap constraints as the
// scan moves forward (see chain.go).

type elemKind uint8

const (
	elemLit    elemKind = iota // fixed bytes
	elemMask                   // one byte with a nibble fixed: b&mask == val
	elemSkip                   // n arbitrary bytes (??, {n})
	elemAlt                    // one of alts, possibly of different lengths
	elemNotAlt                 // n bytes equal to none of alts (all n long)
)

type elem struct {
	kind      elemKind
	lit       []byte
	val, mask byte
	n         int
	alts      [][]byte
}

// unbounded is the upper bound of the gaps * and {n-}.
const unbounded = -1

type part struct {
	elems          []elem
	minLen, maxLen int
	// gapMin and gapMax bound the distance from the end of the previous
	// part to the start of this one (gapMax may be unbounded); unused for
	// the first part.
	gapMin, gapMax int
	// key is the anchor: two or four fixed bytes of the part, at one of
	// prefixes bytes from its start (more than one when alternatives of
	// different lengths come before it).
	key      []byte
	prefixes []int
}

// compilePattern splits a canonical ruledb pattern into parts and chooses
// each part's anchor. ruledb has checked the syntax; an error here means a
// pattern this package does not understand.
func compilePattern(p string) ([]part, error) {
	var parts []part
	cur := part{}
	for i := 0; i < len(p); {
		switch c := p[i]; {
		case c == '*':
			parts = append(parts, cur)
			cur = part{gapMin: 0, gapMax: unbounded}
			i++
		case c == '{':
			end := strings.IndexByte(p[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("unclosed {")
			}
			g := p[i+1 : i+end]
			i += end + 1
			lo, hi, rng := strings.Cut(g, "-")
			if !rng {
				n, err := strconv.Atoi(lo)
				if err != nil {
					return nil, err
				}
				cur.elems = appendSkip(cur.elems, n)
				continue
			}
			gmin, gmax := 0, unbounded
			var err error
			if lo != "" {
				if gmin, err = strconv.Atoi(lo); err != nil {
					return nil, err
				}
			}
			if hi != "" {
				if gmax, err = strconv.Atoi(hi); err != nil {
					return nil, err
				}
			}
			parts = append(parts, cur)
			cur = part{gapMin: gmin, gapMax: gmax}
		case c == '(' || c == '!':
			neg := c == '!'
			if neg {
				i++
			}
			end := strings.IndexByte(p[i:], ')')
			if end < 0 {
				return nil, fmt.Errorf("unclosed (")
			}
			var alts [][]byte
			for _, a := range strings.Split(p[i+1:i+end], "|") {
				b, err := hex.DecodeString(a)
				if err != nil {
					return nil, err
				}
				alts = append(alts, b)
			}
			i += end + 1
			e := elem{kind: elemAlt, alts: alts}
			if neg {
				e.kind, e.n = elemNotAlt, len(alts[0])
			}
			cur.elems = append(cur.elems, e)
		default:
			if i+1 >= len(p) {
				return nil, fmt.Errorf("odd number of hex digits")
			}
			hi, lo := p[i], p[i+1]
			i += 2
			switch {
			case hi == '?' && lo == '?':
				cur.elems = appendSkip(cur.elems, 1)
			case hi == '?' || lo == '?':
				e := elem{kind: elemMask}
				if hi != '?' {
					e.val, e.mask = unhex(hi)<<4, 0xf0
				} else {
					e.val, e.mask = unhex(lo), 0x0f
				}
				cur.elems = append(cur.elems, e)
			default:
				b := unhex(hi)<<4 | unhex(lo)
				if n := len(cur.elems); n > 0 && cur.elems[n-1].kind == elemLit {
					cur.elems[n-1].lit = append(cur.elems[n-1].lit, b)
				} else {
					cur.elems = append(cur.elems, elem{kind: elemLit, lit: []byte{b}})
				}
			}
		}
	}
	parts = append(parts, cur)
	for i := range parts {
		if err := parts[i].chooseAnchor(); err != nil {
			return nil, err
		}
	}
	return parts, nil
}

func appendSkip(es []elem, n int) []elem {
	if k := len(es); k > 0 && es[k-1].kind == elemSkip {
		es[k-1].n += n
		return es
	}
	return append(es, elem{kind: elemSkip, n: n})
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// lens returns the smallest and largest number of bytes e matches.
func (e *elem) lens() (int, int) {
	switch e.kind {
	case elemLit:
		return len(e.lit), len(e.lit)
	case elemMask:
		return 1, 1
	case elemAlt:
		lo, hi := len(e.alts[0]), len(e.alts[0])
		for _, a := range e.alts[1:] {
			lo, hi = min(lo, len(a)), max(hi, len(a))
		}
		return lo, hi
	}
	return e.n, e.n
}

// commonness scores how often a byte turns up in ordinary files; anchors
// avoid common bytes so that fewer candidates need verifying.
func commonness(b byte) int {
	switch {
	case b == 0x00 || b == 0xff:
		return 8
	case b == ' ' || b == 0x01 || b == 0x0a || b == 0x0d:
		return 4
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return 2
	}
	return 1
}

// chooseAnchor picks the fixed window of the part that makes the best
// anchor: four bytes if any literal is that long, otherwise two, with the
// least common bytes; and records the possible distances from the part's
// start to it.
func (p *part) chooseAnchor() error {
	prefixes := []int{0} // possible lengths of the elements before elem i
	bestScore, bestLen := -1, 0
	for i := range p.elems {
		e := &p.elems[i]
		if e.kind == elemLit && len(e.lit) >= 2 {
			w := 2
			if len(e.lit) >= 4 {
				w = 4
			}
			for off := 0; off+w <= len(e.lit); off++ {
				score := 0
				for _, b := range e.lit[off : off+w] {
					score += 16 - commonness(b)
				}
				if w == 4 {
					score += 1000
				}
				// Fewer prefixes mean fewer places to verify.
				score -= len(prefixes)
				if score > bestScore {
					bestScore, bestLen = score, w
					p.key = e.lit[off : off+w]
					p.prefixes = p.prefixes[:0]
					for _, x := range prefixes {
						p.prefixes = append(p.prefixes, x+off)
					}
				}
			}
		}
		lo, hi := e.lens()
		p.minLen += lo
		p.maxLen += hi
		if lo == hi {
			for j := range prefixes {
				prefixes[j] += lo
			}
			continue
		}
		var next []int
		for _, x := range prefixes {
			for _, a := range e.alts {
				next = append(next, x+len(a))
			}
		}
		slices.Sort(next)
		prefixes = slices.Compact(next)
	}
	if bestLen == 0 {
		return fmt.Errorf("part without two fixed bytes in a row")
	}
	p.key = slices.Clip(p.key)
	return nil
}

// match reports whether the part's elements match b at pos, calling end
// (if not nil) with the end of every way they do and stopping early when
// end is nil. The caller guarantees b holds every byte the part can reach
// or ends where the data ends.
func matchElems(b []byte, pos int, es []elem, ends *[]int) bool {
	for k := range es {
		e := &es[k]
		switch e.kind {
		case elemLit:
			if pos+len(e.lit) > len(b) || string(b[pos:pos+len(e.lit)]) != string(e.lit) {
				return false
			}
			pos += len(e.lit)
		case elemMask:
			if pos >= len(b) || b[pos]&e.mask != e.val {
				return false
			}
			pos++
		case elemSkip:
			if pos+e.n > len(b) {
				return false
			}
			pos += e.n
		case elemNotAlt:
			if pos+e.n > len(b) {
				return false
			}
			for _, a := range e.alts {
				if string(b[pos:pos+e.n]) == string(a) {
					return false
				}
			}
			pos += e.n
		case elemAlt:
			found := false
			for _, a := range e.alts {
				if pos+len(a) <= len(b) && string(b[pos:pos+len(a)]) == string(a) {
					if matchElems(b, pos+len(a), es[k+1:], ends) {
						found = true
						if ends == nil {
							return true
						}
					}
				}
			}
			return found
		}
	}
	if ends != nil {
		*ends = append(*ends, pos)
	}
	return true
}
