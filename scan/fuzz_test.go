package scan

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// fuzzRules is a small database with every form of body signature, on
// bytes a fuzzer finds quickly.
const fuzzRules = `Vitrine.Fuzz.Plain:0:*:616263
Vitrine.Fuzz.Wild:0:*:6162??63
Vitrine.Fuzz.Nibble:0:*:6162?36?
Vitrine.Fuzz.Star:0:*:6162*6364
Vitrine.Fuzz.Gap:0:*:6263{2}6465
Vitrine.Fuzz.Range:0:*:6162{1-3}6364
Vitrine.Fuzz.AtMost:0:*:6364{-2}6566
Vitrine.Fuzz.AtLeast:0:*:6566{2-}6162
Vitrine.Fuzz.Alt:0:*:6162(63|6465)6667
Vitrine.Fuzz.AltFirst:0:*:(61|6263)6465
Vitrine.Fuzz.Not:0:*:6162!(6364|6566)6768
Vitrine.Fuzz.Not1:0:*:6263!(61|62|63)64
Vitrine.Fuzz.Offset:0:2:616263
Vitrine.Fuzz.OffsetChain:0:1:6162*6364
Vitrine.Fuzz.Chain:0:*:6162{-1}6364{1-2}6566*6768
Vitrine.Fuzz.Chain2:0:*:6161*6161{1-}6161
Vitrine.Fuzz.PE:1:*:616263
Vitrine.Fuzz.ELF:6:*:6162{0-4}6364
Vitrine.Fuzz.Text:7:*:61206263
Vitrine.Fuzz.Norm:0:*:6120622063
Vitrine.Fuzz.Long:0:*:6162636465666768
Vitrine.Fuzz.Other:3:*:616263
`

// FuzzScan checks that no input crashes the scanner and that it finds
// exactly what the reference matcher finds.
func FuzzScan(f *testing.F) {
	rules := map[string]string{"f.ndb": fuzzRules, "f.hdb": "900150983cd24fb0d6963f7d28e17f72:3:Vitrine.Fuzz.MD5\n"}
	s := newScanner(f, rules)
	n := newNaive(f, compileRules(f, rules))
	for _, seed := range []string{"abc", "..abc", "ab.c", "abcdefgh", "MZabc", "\x7fELFab..cd", "A  B\tC", "a b c",
		"abxcdfgh", "aa.aa..aa", "ab.cd.ef.gh", "bcxd", "ade", "bcdede", "xabcdeefg", "ef...ab", "ab\x00cd"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := s.Scan(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.IsSortedFunc(got, func(a, b Match) int { return strings.Compare(a.Name, b.Name) }) {
			t.Errorf("matches not sorted: %v", got)
		}
		if g, w := names(got), n.scan(data); !slices.Equal(g, w) {
			t.Errorf("scan(%q) = %v, reference finds %v", data, g, w)
		}
	})
}
