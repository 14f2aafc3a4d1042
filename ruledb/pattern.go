package ruledb

import (
	"fmt"
	"strconv"
	"strings"
)

// maxGap bounds the numbers in {n}, {n-m}, {-n} and {n-}.
const maxGap = 1 << 24

// parsePattern checks a body signature in ClamAV's hex-signature syntax and
// returns its canonical form. It accepts:
//
//	aa        a byte, in hex (either case)
//	??  a? ?a any byte, or a byte with only the high or low nibble fixed
//	*         any number of bytes
//	{n} {n-m} {-n} {n-}
//	          n bytes, n to m bytes (m > n), at most n, at least n bytes
//	(aa|bb)   one of the alternatives, each a run of hex bytes
//	!(aa|bb)  none of the alternatives, all of the same length
//
// A pattern neither starts nor ends with a gap (* or {…}) and has no two
// gaps in a row. As ClamAV 1.4's loader demands, each part between the
// variable gaps (*, {n-m}, {-n}, {n-}) holds two fully fixed bytes in a
// row; {n}, ??, nibbles and alternatives break a row. A pattern of plain
// bytes only needs at least three. Other ClamAV constructs ([x-y], (B),
// (L)) are refused.
func parsePattern(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("empty body signature")
	}
	var b strings.Builder
	b.Grow(len(s))
	run, best := 0, 0 // fixed bytes in a row: now, and most in this part
	endPart := func(pos int) error {
		if best < 2 {
			return fmt.Errorf("body signature: part before position %d lacks two fixed bytes in a row", pos)
		}
		run, best = 0, 0
		return nil
	}
	plain, n := true, 0 // only fixed bytes so far, and how many
	lastGap := true     // a gap may not come first
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == '*' || c == '{':
			if lastGap {
				return "", fmt.Errorf("body signature: gap at position %d must follow a byte", i)
			}
			if c == '*' {
				if err := endPart(i); err != nil {
					return "", err
				}
				b.WriteByte('*')
				i++
			} else {
				end := strings.IndexByte(s[i:], '}')
				if end < 0 {
					return "", fmt.Errorf("body signature: unclosed { at position %d", i)
				}
				g, err := parseGap(s[i+1 : i+end])
				if err != nil {
					return "", fmt.Errorf("body signature: position %d: %v", i, err)
				}
				if strings.Contains(g, "-") {
					if err := endPart(i); err != nil {
						return "", err
					}
				}
				run = 0
				b.WriteString(g)
				i += end + 1
			}
			lastGap, plain = true, false
		case c == '(' || c == '!':
			neg := c == '!'
			if neg {
				if i+1 >= len(s) || s[i+1] != '(' {
					return "", fmt.Errorf("body signature: ! at position %d must precede (", i)
				}
				i++
			}
			end := strings.IndexByte(s[i:], ')')
			if end < 0 {
				return "", fmt.Errorf("body signature: unclosed ( at position %d", i)
			}
			a, err := parseAlternatives(s[i+1:i+end], neg)
			if err != nil {
				return "", fmt.Errorf("body signature: position %d: %v", i, err)
			}
			b.WriteString(a)
			run, plain = 0, false
			i += end + 1
			lastGap = false
		default:
			if i+1 >= len(s) {
				return "", fmt.Errorf("body signature: odd number of hex digits")
			}
			hi, lo := s[i], s[i+1]
			if !isNibble(hi) || !isNibble(lo) {
				return "", fmt.Errorf("body signature: unexpected %q at position %d", s[i:i+2], i)
			}
			if hi != '?' && lo != '?' {
				run++
				best = max(best, run)
			} else {
				run, plain = 0, false
			}
			n++
			b.WriteByte(lower(hi))
			b.WriteByte(lower(lo))
			i += 2
			lastGap = false
		}
	}
	if lastGap {
		return "", fmt.Errorf("body signature ends with a gap")
	}
	if err := endPart(len(s)); err != nil {
		return "", err
	}
	if plain && n < 3 {
		return "", fmt.Errorf("body signature of plain bytes needs at least three")
	}
	return b.String(), nil
}

func parseGap(g string) (string, error) {
	lo, hi, ok := strings.Cut(g, "-")
	switch {
	case !ok:
		n, err := gapNumber(lo)
		if err != nil {
			return "", err
		}
		return "{" + strconv.Itoa(n) + "}", nil
	case lo == "":
		n, err := gapNumber(hi)
		if err != nil {
			return "", err
		}
		if n == 0 {
			return "", fmt.Errorf("gap {-0} is empty")
		}
		return "{-" + strconv.Itoa(n) + "}", nil
	case hi == "":
		n, err := gapNumber(lo)
		if err != nil {
			return "", err
		}
		return "{" + strconv.Itoa(n) + "-}", nil
	default:
		n, err := gapNumber(lo)
		if err != nil {
			return "", err
		}
		m, err := gapNumber(hi)
		if err != nil {
			return "", err
		}
		if m <= n {
			return "", fmt.Errorf("gap {%d-%d}: upper bound must exceed lower", n, m)
		}
		return "{" + strconv.Itoa(n) + "-" + strconv.Itoa(m) + "}", nil
	}
}

func gapNumber(s string) (int, error) {
	if s == "" || len(s) > 8 {
		return 0, fmt.Errorf("gap bound %q is not a number up to %d", s, maxGap)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("gap bound %q is not a decimal number", s)
		}
	}
	n, _ := strconv.Atoi(s)
	if n > maxGap {
		return 0, fmt.Errorf("gap bound %d exceeds %d", n, maxGap)
	}
	return n, nil
}

func parseAlternatives(body string, neg bool) (string, error) {
	alts := strings.Split(body, "|")
	if len(alts) < 2 {
		return "", fmt.Errorf("alternatives need at least two choices")
	}
	var b strings.Builder
	if neg {
		b.WriteByte('!')
	}
	b.WriteByte('(')
	for k, a := range alts {
		if a == "" || len(a)%2 != 0 {
			return "", fmt.Errorf("alternative %q is not a run of hex bytes", a)
		}
		if neg && len(a) != len(alts[0]) {
			return "", fmt.Errorf("negated alternatives must have equal length")
		}
		if k > 0 {
			b.WriteByte('|')
		}
		for i := 0; i < len(a); i++ {
			if !isHex(a[i]) {
				return "", fmt.Errorf("alternative %q is not a run of hex bytes", a)
			}
			b.WriteByte(lower(a[i]))
		}
	}
	b.WriteByte(')')
	return b.String(), nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isNibble(c byte) bool { return c == '?' || isHex(c) }

func lower(c byte) byte {
	if 'A' <= c && c <= 'F' {
		return c + 'a' - 'A'
	}
	return c
}
