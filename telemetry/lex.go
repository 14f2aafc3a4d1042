package telemetry

import (
	"encoding/binary"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// This file reads JSON tokens (RFC 8259) for the parser: whitespace,
// strings with every escape, and non-negative integers. The batch schema
// has no nested values of its own beyond the records array, so there is no
// general value reader: anything else is an error.

// peek returns the byte at the current offset, or 0 at the end.
func (p *parser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

// ws skips JSON whitespace.
func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// notA returns the error for a value that is not what the schema wants:
// "must be <want>, not null" when the current offset starts a JSON value of
// another kind, or a syntax error when it starts no value at all.
func (p *parser) notA(want string) *FieldError {
	var got string
	switch c := p.peek(); {
	case c == '"':
		got = "a string"
	case c == '{':
		got = "an object"
	case c == '[':
		got = "an array"
	case c == 't' || c == 'f':
		got = "a boolean"
	case c == 'n':
		got = "null"
	case c == '-' || '0' <= c && c <= '9':
		got = "a number"
	default:
		return p.syntax("expected a value")
	}
	return p.fieldErr("must be " + want + ", not " + got)
}

// key reads an object key and the colon after it.
func (p *parser) key() (string, *FieldError) {
	if p.peek() != '"' {
		return "", p.syntax("expected a quoted key")
	}
	field := p.field
	p.field = "" // a malformed key is not the field's fault
	k, err := p.str()
	if err != nil {
		return "", err
	}
	p.field = field
	p.ws()
	if p.peek() != ':' {
		return "", p.syntax("expected ':' after key")
	}
	p.i++
	p.ws()
	return k, nil
}

// plain marks the bytes a string can hold unescaped without a closer look:
// not a quote, backslash or control character. Bytes from 0x80 are plain
// here; the string is checked to be valid UTF-8 as a whole.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str reads a string value.
func (p *parser) str() (string, *FieldError) {
	if p.peek() != '"' {
		return "", p.notA("a string")
	}
	b := p.b
	start := p.i + 1
	j := start
	ascii := true
	for {
		// Skip eight plain ASCII bytes at a time, then look at the
		// first byte that is not.
		for j+8 <= len(b) {
			if m := special8(binary.LittleEndian.Uint64(b[j:])); m != 0 {
				j += bits.TrailingZeros64(m) / 8
				break
			}
			j += 8
		}
		if j >= len(b) {
			return p.unescape(start, j)
		}
		switch c := b[j]; {
		case c == '"':
			if !ascii && !utf8.Valid(b[start:j]) {
				return "", p.syntaxAt(start+invalidUTF8(b[start:j]), "invalid UTF-8 in string")
			}
			p.i = j + 1
			return p.s[start:j], nil
		case c == '\\' || c < 0x20:
			return p.unescape(start, j)
		case c >= utf8.RuneSelf:
			ascii = false
		}
		j++
	}
}

// special8 returns, for eight bytes read little-endian, a mask with the
// high bit of each byte that is a quote, a backslash, a control character
// or not ASCII; the lowest set bit marks the first such byte exactly
// (higher ones may be false alarms).
func special8(x uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	q := x ^ ('"' * ones)
	bs := x ^ ('\\' * ones)
	lt := (x - 0x20*ones) &^ x        // bytes below 0x20
	zq := (q - ones) &^ q             // quotes
	zb := (bs - ones) &^ bs           // backslashes
	return (lt | zq | zb | x) & highs // x: bytes from 0x80
}

// unescape reads the rest of a string from its first byte that is not
// plain, at offset j.
func (p *parser) unescape(start, j int) (string, *FieldError) {
	buf := make([]byte, 0, j-start+16)
	buf = append(buf, p.b[start:j]...)
	for {
		if j >= len(p.b) {
			return "", p.syntaxAt(j, "unterminated string")
		}
		c := p.b[j]
		switch {
		case plain[c]:
			buf = append(buf, c)
			j++
		case c == '"':
			if !utf8.Valid(buf) {
				// Escapes only produce valid UTF-8, so the
				// fault is in the raw bytes; find it there.
				return "", p.syntaxAt(start+invalidUTF8(p.b[start:j]), "invalid UTF-8 in string")
			}
			p.i = j + 1
			return string(buf), nil
		case c < 0x20:
			return "", p.syntaxAt(j, "control character in string; escape it")
		default: // backslash
			if j+1 >= len(p.b) {
				return "", p.syntaxAt(j+1, "unterminated escape")
			}
			e := p.b[j+1]
			switch e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, ok := hex4(p.b[j+2:])
				if !ok {
					return "", p.syntaxAt(j, `\u must be followed by four hex digits`)
				}
				switch {
				case utf16.IsSurrogate(r) && r < 0xdc00:
					// A high surrogate must be followed by an
					// escaped low one.
					var lo rune = -1
					if len(p.b) >= j+12 && p.b[j+6] == '\\' && p.b[j+7] == 'u' {
						lo, _ = hex4(p.b[j+8:])
					}
					if lo < 0xdc00 || lo > 0xdfff {
						return "", p.syntaxAt(j, "lone UTF-16 surrogate in \\u escape")
					}
					buf = utf8.AppendRune(buf, utf16.DecodeRune(r, lo))
					j += 6
				case utf16.IsSurrogate(r):
					return "", p.syntaxAt(j, "lone UTF-16 surrogate in \\u escape")
				default:
					buf = utf8.AppendRune(buf, r)
				}
				j += 4
			default:
				return "", p.syntaxAt(j, "invalid escape \\"+string(rune(e)))
			}
			j += 2
		}
	}
}

// hex4 decodes the four hex digits at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// invalidUTF8 returns the offset of the first invalid UTF-8 sequence in b,
// which must hold one.
func invalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// uint reads an integer from 0 to max. Fractions and exponents are refused
// even where their value is an integer (1.0, 1e3): a sender that writes
// them is not writing the integers the schema asks for.
func (p *parser) uint(max uint64) (uint64, *FieldError) {
	b, i := p.b, p.i
	rangeErr := func() *FieldError {
		return p.fieldErr("must be an integer from 0 to " + strconv.FormatUint(max, 10))
	}
	if i < len(b) && b[i] == '-' {
		if i+1 < len(b) && '0' <= b[i+1] && b[i+1] <= '9' {
			return 0, rangeErr()
		}
		return 0, p.syntaxAt(i+1, "expected a digit after '-'")
	}
	if i >= len(b) || b[i] < '0' || b[i] > '9' {
		return 0, p.notA("an integer")
	}
	var v uint64
	over := false
	if b[i] == '0' {
		i++
		if i < len(b) && '0' <= b[i] && b[i] <= '9' {
			return 0, p.syntaxAt(i, "number with a leading zero")
		}
	} else {
		for ; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
			d := uint64(b[i] - '0')
			if v > (max-d)/10 {
				over = true
			}
			v = v*10 + d
		}
	}
	if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		return 0, rangeErr()
	}
	if over {
		return 0, rangeErr()
	}
	p.i = i
	return v, nil
}
