package ruledb

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestCompileRoundTrip(t *testing.T) {
	for name, srcs := range map[string][]*Source{
		"sample":    loadSample(t),
		"generated": generate(500, 200, 1),
		"empty":     nil,
	} {
		t.Run(name, func(t *testing.T) {
			data := mustCompile(t, srcs, 42)
			db := mustOpen(t, data)
			if got, want := lines(db.Signatures()), lines(sourceSigs(srcs)); !slices.Equal(got, want) {
				t.Errorf("database holds\n%s\nsources hold\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if db.Version() != 42 {
				t.Errorf("version %d, want 42", db.Version())
			}
			if d := db.Digest(); !bytes.Equal(d[:], data[len(data)-32:]) {
				t.Errorf("Digest() %x is not the trailer", d)
			}
			if again := mustCompile(t, []*Source{{Name: "x", Signatures: db.Signatures()}}, 42); !bytes.Equal(again, data) {
				t.Error("recompiling the opened signatures gives other bytes")
			}
		})
	}
}

// TestCompileDeterministic shuffles files and lines, and repeats lines.
func TestCompileDeterministic(t *testing.T) {
	srcs := append(loadSample(t), generate(300, 100, 2)...)
	want := mustCompile(t, srcs, 7)
	for seed := range uint64(10) {
		r := rand.New(rand.NewPCG(seed, 0))
		var shuffled []*Source
		for _, src := range srcs {
			sigs := slices.Clone(src.Signatures)
			if len(sigs) > 0 {
				sigs = append(sigs, sigs[r.IntN(len(sigs))])
			}
			r.Shuffle(len(sigs), func(i, j int) { sigs[i], sigs[j] = sigs[j], sigs[i] })
			shuffled = append(shuffled, &Source{Name: src.Name, Signatures: sigs})
		}
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := mustCompile(t, shuffled, 7); !bytes.Equal(got, want) {
			t.Fatalf("seed %d: shuffled sources compile to other bytes", seed)
		}
	}
	if other := mustCompile(t, srcs, 8); bytes.Equal(other, want) {
		t.Error("version 8 compiles to the same bytes as version 7")
	}
}

func TestCompileRefusesInvalid(t *testing.T) {
	bad := []Signature{
		{Kind: KindMD5, Name: "x", Hash: make([]byte, 15)},
		{Kind: KindBody, Name: "x", Pattern: "DEAD"},
		{Kind: KindBody, Name: "x y", Pattern: "dead"},
		{Kind: KindBody, Name: "x", Pattern: "dead", Target: 99},
		{Kind: 7, Name: "x"},
	}
	for _, s := range bad {
		if _, err := Compile([]*Source{{Name: "s", Signatures: []Signature{s}}}, 1); err == nil {
			t.Errorf("Compile accepted %+v", s)
		}
	}
}

// TestOpenRefusesCorruption flips every byte of a database: with the digest
// left alone each flip must be refused; with the digest recomputed, the
// structure checks must either refuse it or find a database that compiles
// to exactly those bytes.
func TestOpenRefusesCorruption(t *testing.T) {
	data := mustCompile(t, loadSample(t), 3)
	for i := range data {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			c := bytes.Clone(data)
			c[i] ^= x
			if _, err := Open(c); !errors.Is(err, ErrInvalid) {
				t.Fatalf("byte %d ^ %#x: Open = %v, want ErrInvalid", i, x, err)
			}
			if i >= len(c)-32 {
				continue
			}
			d := sha256.Sum256(c[:len(c)-32])
			copy(c[len(c)-32:], d[:])
			checkCanonical(t, c)
		}
	}
	for n := range len(data) {
		if _, err := Open(data[:n]); err == nil {
			t.Fatalf("Open accepted the first %d bytes", n)
		}
	}
}

// checkCanonical checks that data is either refused or is exactly the
// compilation of what Open finds in it.
func checkCanonical(t *testing.T, data []byte) {
	t.Helper()
	db, err := Open(data)
	if err != nil {
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("Open error %v does not wrap ErrInvalid", err)
		}
		return
	}
	again, err := Compile([]*Source{{Name: "opened", Signatures: db.Signatures()}}, db.Version())
	if err != nil {
		t.Fatalf("Open accepted signatures Compile refuses: %v", err)
	}
	if !bytes.Equal(again, data) {
		t.Fatalf("Open accepted a non-canonical database:\n%x\nrecompiles to\n%x", data, again)
	}
}
