package scan

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/vitrine-dev/vitrine/ruledb"
)

// TestWildcards checks each form of body signature against an input it
// must match and inputs it must not.
func TestWildcards(t *testing.T) {
	x := "\x99\x98\x97" // filler that no pattern below contains
	tests := []struct {
		name, target, offset, pattern string
		match                         []string
		miss                          []string
	}{
		{"plain", "0", "*", "414243", []string{"ABC", x + "ABC" + x}, []string{"ABD", "AB", x}},
		{"any-byte", "0", "*", "4142??43", []string{"AB.C", "AB\x00C"}, []string{"ABC", "AB..C"}},
		{"high-nibble", "0", "*", "4142a?", []string{"AB\xa0", "AB\xaf"}, []string{"AB\xb0", "AB\x0a"}},
		{"low-nibble", "0", "*", "4142?a", []string{"AB\x0a", "AB\xfa"}, []string{"AB\xab", "AB"}},
		{"star", "0", "*", "4142*4344", []string{"ABCD", "AB" + x + "CD", "ABAB" + strings.Repeat("z", 5000) + "CD"}, []string{"CDAB", "ABC", "ABDC"}},
		{"fixed-gap", "0", "*", "4142{2}4344", []string{"AB..CD"}, []string{"AB.CD", "AB...CD", "ABCD"}},
		{"range", "0", "*", "4142{1-3}4344", []string{"AB.CD", "AB...CD", "ABAB.CD"}, []string{"ABCD", "AB....CD"}},
		{"at-most", "0", "*", "4142{-2}4344", []string{"ABCD", "AB..CD"}, []string{"AB...CD"}},
		{"at-least", "0", "*", "4142{2-}4344", []string{"AB..CD", "AB" + strings.Repeat(".", 3000) + "CD"}, []string{"ABCD", "AB.CD"}},
		{"alternatives", "0", "*", "4142(43|4445)4647", []string{"ABCFG", "ABDEFG"}, []string{"ABDFG", "ABFG", "ABCEFG"}},
		{"alt-first", "0", "*", "(41|4243)444546", []string{"ADEF", "BCDEF"}, []string{"BDEF", "DEF"}},
		{"negation", "0", "*", "4142!(4344|4546)4748", []string{"ABCEGH", "AB..GH"}, []string{"ABCDGH", "ABEFGH", "ABCGH"}},
		{"offset", "0", "3", "414243", []string{"...ABC", "...ABC..ABC"}, []string{"ABC", "....ABC", "..ABC"}},
		{"offset-star", "0", "1", "4142*4344", []string{".AB..CD"}, []string{"AB..CD", "..AB..CD"}},
		{"chain-order", "0", "*", "4142*4344*4546", []string{"AB.CD.EF", "ABCDEF", "EFAB.CD.EF"}, []string{"EF.CD.AB", "AB.EF.CD", "CD.AB.EF"}},
		{"chain-bounded", "0", "*", "4142{-1}4344{2-3}4546", []string{"ABCD..EF", "AB.CD...EF", "AB.ABCD..EF"}, []string{"AB..CD..EF", "ABCD.EF", "ABCD....EF"}},
		{"chain-offset", "0", "0", "4142{3-5}4344", []string{"AB...CD", "AB.....CD"}, []string{".AB...CD", "AB..CD"}},
		{"pe", "1", "*", "414243", []string{"MZABC"}, []string{"ABC", "\x7fELFABC", "xMZABC"}},
		{"elf", "6", "*", "414243", []string{"\x7fELF\x01ABC"}, []string{"ABC", "MZABC"}},
		{"text-normalised", "0", "*", "61626320646566", []string{"ABC  \t\nDEF", "abc def"}, []string{"ABC\x00DEF\x80" + strings.Repeat("\x01", 1100) + "abcdef"}},
		{"text-target", "7", "*", "61626320646566", []string{"ABC\r\nDEF"}, []string{"\x00\x00\x00\x00abc def", "abc def\x00"[:0] + "MZabc def"}},
		{"text-drops", "0", "*", "6162636465", []string{strings.Repeat("z ", 600) + "ab\x01c\x80de"}, []string{strings.Repeat("z ", 600) + "abc\x7fde", "\x00\x00\x00\x00ab\x01cde"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := "Vitrine.Test.W:" + tt.target + ":" + tt.offset + ":" + tt.pattern + "\n"
			s := newScanner(t, map[string]string{"w.ndb": line})
			n := newNaive(t, compileRules(t, map[string]string{"w.ndb": line}))
			for _, in := range tt.match {
				got, err := s.Scan(strings.NewReader(in), int64(len(in)))
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != 1 || got[0].Name != "Vitrine.Test.W" || got[0].Kind != ruledb.KindBody {
					t.Errorf("%s on %q: got %v, want a match", tt.pattern, in, got)
				}
				if len(n.scan([]byte(in))) != 1 {
					t.Errorf("%s on %q: the reference matcher disagrees", tt.pattern, in)
				}
			}
			for _, in := range tt.miss {
				got, err := s.Scan(strings.NewReader(in), int64(len(in)))
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != 0 {
					t.Errorf("%s on %q: got %v, want no match", tt.pattern, in, got)
				}
				if len(n.scan([]byte(in))) != 0 {
					t.Errorf("%s on %q: the reference matcher disagrees", tt.pattern, in)
				}
			}
		})
	}
}

func TestHashes(t *testing.T) {
	file := []byte("a file with a known hash")
	m := md5.Sum(file)
	h := sha256.Sum256(file)
	rules := map[string]string{
		"h.hdb": hex.EncodeToString(m[:]) + ":24:Vitrine.Test.MD5\n" +
			hex.EncodeToString(m[:]) + ":25:Vitrine.Test.MD5WrongSize\n" +
			hex.EncodeToString(m[:]) + ":*:Vitrine.Test.MD5AnySize:73\n",
		"h.hsb": hex.EncodeToString(h[:]) + ":24:Vitrine.Test.SHA\n" +
			hex.EncodeToString(h[:]) + ":24:Vitrine.Test.SHATooNew:300\n",
	}
	s := newScanner(t, rules)
	got, err := s.Scan(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	want := []Match{{"Vitrine.Test.MD5", ruledb.KindMD5}, {"Vitrine.Test.MD5AnySize", ruledb.KindMD5}, {"Vitrine.Test.SHA", ruledb.KindSHA256}}
	if !equalMatches(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	// Unknown size: hashed anyway.
	got, err = s.Scan(iotest.OneByteReader(bytes.NewReader(file)), -1)
	if err != nil || !equalMatches(got, want) {
		t.Errorf("unknown size: got %v, %v, want %v", got, err, want)
	}
	if sk := s.Skipped(); len(sk) != 1 || sk[0].Name != "Vitrine.Test.SHATooNew" {
		t.Errorf("Skipped() = %v, want the level-300 signature", sk)
	}
}

func equalMatches(a, b []Match) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestStreaming puts matches across chunk boundaries of a file several
// chunks long, and a * gap spanning chunks.
func TestStreaming(t *testing.T) {
	rules := map[string]string{"s.ndb": "Vitrine.Test.Span:0:*:0102030405060708{100}1112131415\n" +
		"Vitrine.Test.Star:0:*:2122232425*3132333435\n" +
		"Vitrine.Test.Abs:0:600000:414243444546\n" +
		"Vitrine.Test.Short:0:*:7172{-4000}7374\n"}
	s := newScanner(t, rules)
	data := make([]byte, 3*chunkSize+1000)
	for i := range data {
		data[i] = 0x80 | byte(i*7)
	}
	put := func(at int, b string) { copy(data[at:], b) }
	put(chunkSize-50, "\x01\x02\x03\x04\x05\x06\x07\x08")
	put(chunkSize-50+108, "\x11\x12\x13\x14\x15")
	put(1000, "\x21\x22\x23\x24\x25")
	put(2*chunkSize+5, "\x31\x32\x33\x34\x35")
	put(600000, "ABCDEF")
	put(2*chunkSize-2000, "\x71\x72")
	put(2*chunkSize+1990, "\x73\x74")
	got, err := s.Scan(iotest.HalfReader(bytes.NewReader(data)), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Vitrine.Test.Abs", "Vitrine.Test.Short", "Vitrine.Test.Span", "Vitrine.Test.Star"}
	if g := names(got); strings.Join(g, ",") != strings.Join(want, ",") {
		t.Errorf("got %v, want %v", g, want)
	}

	// Many matches of a first part, each a candidate for a bounded gap.
	many := newScanner(t, map[string]string{"m.ndb": "Vitrine.Test.Many:0:*:41424142{100-200}434445\n"})
	for _, tc := range []struct {
		fill int
		want bool
	}{{150, true}, {0, true}, {200, true}, {201, false}, {250, false}} {
		in := "\x00\x00" + strings.Repeat("AB", 200000) + strings.Repeat(".", tc.fill) + "CDE"
		got, err := many.Scan(strings.NewReader(in), int64(len(in)))
		if err != nil || (len(got) == 1) != tc.want {
			t.Errorf("gap of %d after 200000 ABs: got %v, %v; want a match: %v", tc.fill, got, err, tc.want)
		}
	}

	if _, err := s.Scan(bytes.NewReader(data), int64(len(data)+1)); !errors.Is(err, ErrSizeChanged) {
		t.Errorf("short input: got %v, want ErrSizeChanged", err)
	}
	if _, err := s.Scan(iotest.ErrReader(io.ErrClosedPipe), 10); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("failing reader: got %v", err)
	}
	if got, err := s.Scan(bytes.NewReader(nil), 0); err != nil || got != nil {
		t.Errorf("empty file: got %v, %v", got, err)
	}
}
