package scan

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/ruledb"
)

// benchRules makes nhash hash and nbody body signatures shaped like the
// ones `vitrine-bench scan` generates.
func benchRules(nhash, nbody int) map[string]string {
	r := rand.New(rand.NewPCG(1, 2))
	var hdb, hsb, ndb strings.Builder
	for i := range nhash {
		h := make([]byte, 32)
		for j := range h {
			h[j] = byte(r.Uint32())
		}
		size := 4096 + r.IntN(16<<20)
		if i%3 == 2 {
			fmt.Fprintf(&hsb, "%x:%d:Vitrine.Bench.S%d\n", h, size, i)
		} else {
			fmt.Fprintf(&hdb, "%x:%d:Vitrine.Bench.M%d\n", h[:16], size, i)
		}
	}
	for i := range nbody {
		var p strings.Builder
		for range 8 + r.IntN(24) {
			fmt.Fprintf(&p, "%02x", byte(r.Uint32()))
		}
		switch r.IntN(4) {
		case 0:
			fmt.Fprintf(&p, "{%d-%d}", r.IntN(8), 8+r.IntN(64))
		case 1:
			p.WriteString("*")
		}
		if p.Len()%2 == 1 || strings.HasSuffix(p.String(), "}") {
			for range 6 {
				fmt.Fprintf(&p, "%02x", byte(r.Uint32()))
			}
		}
		fmt.Fprintf(&ndb, "Vitrine.Bench.B%d:0:*:%s\n", i, p.String())
	}
	return map[string]string{"b.hdb": hdb.String(), "b.hsb": hsb.String(), "b.ndb": ndb.String()}
}

func compiledBytes(b *testing.B, files map[string]string) []byte {
	var srcs []*ruledb.Source
	for name, body := range files {
		src, err := ruledb.Parse(name, strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		srcs = append(srcs, src)
	}
	data, err := ruledb.Compile(srcs, 1)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkLoad opens a compiled database of 100k signatures and compiles
// the scanner.
func BenchmarkLoad(b *testing.B) {
	data := compiledBytes(b, benchRules(90000, 10000))
	b.Run("open", func(b *testing.B) {
		for b.Loop() {
			if _, err := ruledb.Open(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	db, _ := ruledb.Open(data)
	b.Run("new", func(b *testing.B) {
		for b.Loop() {
			if _, err := New(db); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkScan scans 16 MiB of random data against 100k signatures on
// one core.
func BenchmarkScan(b *testing.B) {
	db, err := ruledb.Open(compiledBytes(b, benchRules(90000, 10000)))
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(db)
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 16<<20)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	data[0] = 0 // not text
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := s.Scan(bytes.NewReader(data), int64(len(data))); err != nil {
			b.Fatal(err)
		}
	}
}
