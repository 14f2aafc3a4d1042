package ruledb

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// loadSample parses testdata/sample.
func loadSample(t testing.TB) []*Source {
	t.Helper()
	srcs, err := LoadDir("testdata/sample")
	if err != nil {
		t.Fatal(err)
	}
	return srcs
}

// lines returns the distinct signatures as "kind line" strings, sorted.
func lines(sigs []Signature) []string {
	var out []string
	for _, s := range sigs {
		out = append(out, s.Kind.String()+" "+s.String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func sourceSigs(srcs []*Source) []Signature {
	var out []Signature
	for _, s := range srcs {
		out = append(out, s.Signatures...)
	}
	return out
}

// generate returns rule sources with nHash hash signatures (half MD5, half
// SHA-256) and nBody body signatures, the same for the same seed.
func generate(nHash, nBody int, seed uint64) []*Source {
	r := rand.New(rand.NewPCG(seed, 0))
	md5 := &Source{Name: "gen.hdb"}
	sha := &Source{Name: "gen.hsb"}
	body := &Source{Name: "gen.ndb"}
	for i := range nHash {
		s := Signature{Size: int64(r.IntN(1 << 24)), Name: fmt.Sprintf("Gen.Hash-%d", i)}
		if i%2 == 0 {
			s.Kind, s.Hash = KindMD5, randBytes(r, 16)
			md5.Signatures = append(md5.Signatures, s)
		} else {
			s.Kind, s.Hash = KindSHA256, randBytes(r, 32)
			sha.Signatures = append(sha.Signatures, s)
		}
	}
	for i := range nBody {
		body.Signatures = append(body.Signatures, genBody(r, fmt.Sprintf("Gen.Body-%d", i)))
	}
	return []*Source{md5, sha, body}
}

func genBody(r *rand.Rand, name string) Signature {
	p := hex.EncodeToString(randBytes(r, 4+r.IntN(8)))
	switch r.IntN(4) {
	case 0:
		p += "*" + hex.EncodeToString(randBytes(r, 4))
	case 1:
		p += fmt.Sprintf("{%d-%d}", r.IntN(8), 8+r.IntN(8)) + hex.EncodeToString(randBytes(r, 3))
	case 2:
		p += "??(" + hex.EncodeToString(randBytes(r, 1)) + "|" + hex.EncodeToString(randBytes(r, 1)) + ")" + hex.EncodeToString(randBytes(r, 2))
	}
	off := AnyOffset
	if r.IntN(2) == 0 {
		off = int64(r.IntN(4096))
	}
	return Signature{Kind: KindBody, Name: name, Target: uint32(r.IntN(8)), Offset: off, Pattern: p}
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// mutate returns a copy of srcs in which about frac of the signatures are
// replaced by new ones.
func mutate(srcs []*Source, frac float64, seed uint64) []*Source {
	r := rand.New(rand.NewPCG(seed, 1))
	var out []*Source
	for _, src := range srcs {
		n := &Source{Name: src.Name, Signatures: slices.Clone(src.Signatures)}
		for i := range n.Signatures {
			if r.Float64() >= frac {
				continue
			}
			s := &n.Signatures[i]
			name := s.Name + "-v2"
			if s.Kind == KindBody {
				*s = genBody(r, name)
			} else {
				s.Hash = randBytes(r, len(s.Hash))
				s.Name = name
			}
		}
		out = append(out, n)
	}
	return out
}

func mustCompile(t testing.TB, srcs []*Source, version uint64) []byte {
	t.Helper()
	b, err := Compile(srcs, version)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustOpen(t testing.TB, b []byte) *DB {
	t.Helper()
	db, err := Open(b)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func parseString(t testing.TB, name, text string) *Source {
	t.Helper()
	src, err := Parse(name, strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return src
}
