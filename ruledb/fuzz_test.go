package ruledb

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// sampleLines returns every line of the sample rule files with the given
// extension.
func sampleLines(f *testing.F, ext string) []string {
	names, err := filepath.Glob(filepath.Join("testdata/sample", "*"+ext))
	if err != nil {
		f.Fatal(err)
	}
	var out []string
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			out = append(out, sc.Text())
		}
	}
	return out
}

// FuzzParseNDB checks that the .ndb parser never crashes and that what it
// accepts prints back to a line that parses to the same signature and
// compiles into a database that opens to it.
func FuzzParseNDB(f *testing.F) {
	for _, l := range sampleLines(f, ".ndb") {
		f.Add(l)
	}
	f.Add("A:7:12:dead{-4}beef*cafe{3-}0102{5}0304:51:255")
	f.Add("A:14:0:de?d(aa|BBcc)ad!(01|02)eeff{1-2}a?0102")
	f.Fuzz(func(t *testing.T, line string) {
		s, err := parseLine(KindBody, line)
		if err != nil {
			return
		}
		back, err := parseLine(KindBody, s.String())
		if err != nil {
			t.Fatalf("%q parses to %+v whose String %q fails: %v", line, s, s.String(), err)
		}
		if !reflect.DeepEqual(back, s) {
			t.Fatalf("%q: %+v prints as %q which parses to %+v", line, s, s.String(), back)
		}
		data, err := Compile([]*Source{{Name: "f.ndb", Signatures: []Signature{s}}}, 1)
		if err != nil {
			t.Fatalf("Compile refuses parsed %+v: %v", s, err)
		}
		db, err := Open(data)
		if err != nil {
			t.Fatal(err)
		}
		if got := db.Signatures(); len(got) != 1 || !reflect.DeepEqual(got[0], s) {
			t.Fatalf("database holds %+v, want %+v", got, s)
		}
	})
}

// FuzzOpen checks that Open never crashes and accepts only databases that
// are exactly the compilation of the signatures it finds.
func FuzzOpen(f *testing.F) {
	f.Add(mustCompile(f, loadSample(f), 1))
	f.Add(mustCompile(f, generate(10, 5, 1), 2))
	f.Add(mustCompile(f, nil, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkCanonical(t, data)
		// Again with the trailer made to match, so the fuzzer reaches
		// the structure checks behind the digest.
		checkCanonical(t, withDigest(data))
	})
}

// FuzzApplyDelta checks that ApplyDelta never crashes and returns only the
// database the delta names by digest.
func FuzzApplyDelta(f *testing.F) {
	base := generate(20, 10, 6)
	old := mustCompile(f, base, 1)
	for i, srcs := range [][]*Source{mutate(base, 0.2, 7), loadSample(f), nil} {
		new := mustCompile(f, srcs, uint64(i+2))
		d, err := Delta(old, new)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, delta []byte) {
		checkApply(t, old, delta)
		checkApply(t, old, withDigest(delta))
	})
}

// withDigest returns a copy of b with its last 32 bytes replaced by the
// SHA-256 of the bytes before them.
func withDigest(b []byte) []byte {
	if len(b) < 32 {
		return b
	}
	c := bytes.Clone(b)
	d := sha256.Sum256(c[:len(c)-32])
	copy(c[len(c)-32:], d[:])
	return c
}

func checkApply(t *testing.T, old, delta []byte) {
	got, err := ApplyDelta(old, delta)
	if err != nil {
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("ApplyDelta error %v does not wrap ErrInvalid", err)
		}
		return
	}
	db, err := Open(got)
	if err != nil {
		t.Fatalf("ApplyDelta returned a database Open refuses: %v", err)
	}
	if d := db.Digest(); !bytes.Equal(d[:], delta[52:84]) {
		t.Fatalf("result digest %x, delta names %x", d, delta[52:84])
	}
	checkCanonical(t, got)
}

// FuzzParseHash is FuzzParseNDB for .hdb and .hsb lines.
func FuzzParseHash(f *testing.F) {
	for _, ext := range []string{".hdb", ".hsb"} {
		for _, l := range sampleLines(f, ext) {
			f.Add(l)
		}
	}
	f.Add("44d88612fea8a8f36de82e1278abb02f:0:E:0:9")
	f.Fuzz(func(t *testing.T, line string) {
		for _, k := range []Kind{KindMD5, KindSHA256} {
			s, err := parseLine(k, line)
			if err != nil {
				continue
			}
			back, err := parseLine(k, s.String())
			if err != nil || !reflect.DeepEqual(back, s) {
				t.Fatalf("%q: %+v prints as %q which parses to %+v, %v", line, s, s.String(), back, err)
			}
			if _, err := Compile([]*Source{{Name: "f", Signatures: []Signature{s}}}, 1); err != nil {
				t.Fatalf("Compile refuses parsed %+v: %v", s, err)
			}
		}
	})
}
