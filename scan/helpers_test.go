package scan

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/ruledb"
)

// compileRules compiles rule files given as file name → contents into a
// database.
func compileRules(t testing.TB, files map[string]string) *ruledb.DB {
	t.Helper()
	var srcs []*ruledb.Source
	for name, body := range files {
		src, err := ruledb.Parse(name, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, src)
	}
	b, err := ruledb.Compile(srcs, 1)
	if err != nil {
		t.Fatal(err)
	}
	db, err := ruledb.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func newScanner(t testing.TB, files map[string]string) *Scanner {
	t.Helper()
	s, err := New(compileRules(t, files))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func names(ms []Match) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// naive is the reference matcher the fuzz target compares the scanner
// with. It shares no code with the scanner: each body signature becomes a
// regular expression over the file's bytes (each byte read as the rune of
// the same number), run over the file and over its normalised text.
type naive struct {
	sigs []ruledb.Signature
	res  []*regexp.Regexp
}

func newNaive(t testing.TB, db *ruledb.DB) *naive {
	n := &naive{}
	for _, s := range db.Signatures() {
		var re *regexp.Regexp
		if s.Kind == ruledb.KindBody {
			expr := patternRegexp(s.Pattern)
			if s.Offset >= 0 {
				expr = "^" + expr
			}
			var err error
			if re, err = regexp.Compile(expr); err != nil {
				t.Fatalf("%s: %v", s.Pattern, err)
			}
		}
		n.sigs = append(n.sigs, s)
		n.res = append(n.res, re)
	}
	return n
}

func runes(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		sb.WriteRune(rune(c))
	}
	return sb.String()
}

func (n *naive) scan(data []byte) []string {
	if len(data) == 0 {
		return nil
	}
	pe := bytes.HasPrefix(data, []byte("MZ"))
	elf := !pe && bytes.HasPrefix(data, []byte("\x7fELF"))
	text := !pe && !elf && clamText(data[:min(len(data), 1024)])
	// (Type detection is the scanner's own, checked against clamscan by
	// TestClamscanParity; this reference is about matching.)
	var norm []byte
	if text && len(data) <= 5<<20 {
		space := false
		for _, c := range data {
			switch {
			case c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r':
				if !space {
					norm = append(norm, ' ')
				}
				space = true
			case c < 0x20 || c > 0x7f:
			default:
				norm = append(norm, byte(strings.ToLower(string(rune(c)))[0]))
				space = false
			}
		}
	}
	md := md5.Sum(data)
	sh := sha256.Sum256(data)
	var found []string
	for i, s := range n.sigs {
		if s.MinFLevel > FLevel || s.MaxFLevel != 0 && s.MaxFLevel < FLevel {
			continue
		}
		switch s.Kind {
		case ruledb.KindMD5, ruledb.KindSHA256:
			h := md[:]
			if s.Kind == ruledb.KindSHA256 {
				h = sh[:]
			}
			if bytes.Equal(h, s.Hash) && (s.Size == ruledb.UnknownSize || s.Size == int64(len(data))) {
				found = append(found, s.Name)
			}
			continue
		}
		hit := func(b []byte) bool {
			if s.Offset >= 0 {
				if s.Offset > int64(len(b)) {
					return false
				}
				b = b[s.Offset:]
			}
			return n.res[i].MatchString(runes(b))
		}
		raw := s.Target == 0 || s.Target == 1 && pe || s.Target == 6 && elf
		nrm := norm != nil && (s.Target == 0 || s.Target == 7)
		if raw && hit(data) || nrm && hit(norm) {
			found = append(found, s.Name)
		}
	}
	slices.Sort(found)
	return slices.Compact(found)
}

// patternRegexp translates a ClamAV hex signature to a regular expression
// over runes 0-255.
func patternRegexp(p string) string {
	const any = `[\x{00}-\x{ff}]`
	var b strings.Builder
	for i := 0; i < len(p); {
		switch c := p[i]; {
		case c == '*':
			b.WriteString(any + "*")
			i++
		case c == '{':
			end := i + strings.IndexByte(p[i:], '}')
			g := p[i+1 : end]
			i = end + 1
			lo, hi, rng := strings.Cut(g, "-")
			switch {
			case !rng:
				b.WriteString(any + "{" + lo + "}")
			case lo == "":
				b.WriteString(any + "{0," + hi + "}")
			default:
				b.WriteString(any + "{" + lo + "," + hi + "}")
			}
		case c == '(' || c == '!':
			neg := c == '!'
			if neg {
				i++
			}
			end := i + strings.IndexByte(p[i:], ')')
			alts := strings.Split(p[i+1:end], "|")
			i = end + 1
			if neg {
				var bs [][]byte
				for _, a := range alts {
					bs = append(bs, unhexString(a))
				}
				b.WriteString("(?:" + notAlts(bs, 0) + ")")
				continue
			}
			b.WriteString("(?:")
			for k, a := range alts {
				if k > 0 {
					b.WriteByte('|')
				}
				for _, x := range unhexString(a) {
					b.WriteString(lit(x))
				}
			}
			b.WriteString(")")
		default:
			hi, lo := p[i], p[i+1]
			i += 2
			switch {
			case hi == '?' && lo == '?':
				b.WriteString(any)
			case lo == '?':
				v, _ := strconv.ParseUint(string(hi), 16, 8)
				fmt.Fprintf(&b, `[\x{%02x}-\x{%02x}]`, v<<4, v<<4|15)
			case hi == '?':
				v, _ := strconv.ParseUint(string(lo), 16, 8)
				b.WriteString("[")
				for h := range uint64(16) {
					b.WriteString(lit(byte(h<<4 | v)))
				}
				b.WriteString("]")
			default:
				v, _ := strconv.ParseUint(p[i-2:i], 16, 8)
				b.WriteString(lit(byte(v)))
			}
		}
	}
	return b.String()
}

func lit(c byte) string { return fmt.Sprintf(`\x{%02x}`, c) }

func unhexString(s string) []byte {
	var out []byte
	for i := 0; i < len(s); i += 2 {
		v, _ := strconv.ParseUint(s[i:i+2], 16, 8)
		out = append(out, byte(v))
	}
	return out
}

// notAlts is an expression for the strings as long as alts (all of one
// length) that differ from every one of them from position i on, given
// they agree with all of alts before i.
func notAlts(alts [][]byte, i int) string {
	n := len(alts[0])
	next := map[byte][][]byte{}
	for _, a := range alts {
		next[a[i]] = append(next[a[i]], a)
	}
	var cls strings.Builder
	var choices []string
	keys := make([]byte, 0, len(next))
	for c := range next {
		keys = append(keys, c)
	}
	slices.Sort(keys)
	for _, c := range keys {
		cls.WriteString(lit(c))
		if i+1 < n {
			choices = append(choices, lit(c)+"(?:"+notAlts(next[c], i+1)+")")
		}
	}
	rest := ""
	if n-i-1 > 0 {
		rest = `[\x{00}-\x{ff}]{` + strconv.Itoa(n-i-1) + "}"
	}
	choices = append(choices, `[^`+cls.String()+`]`+rest)
	return strings.Join(choices, "|")
}

func clamText(b []byte) bool { return isASCII(b) || isUTF8(b) || isUTF16(b) }
