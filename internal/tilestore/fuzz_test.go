package tilestore

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/transparency-dev/tessera/api"
)

// The journal is read back from disk after a crash, so its parsers get
// arbitrary bytes: torn writes, zeroed blocks, garbage.

func journalSeeds() [][]byte {
	r1 := encodeRecord(nil, 0, 1, bundleData("one"))
	r2 := encodeRecord(nil, 1, 2, bundleData("two", "three"))
	r3 := encodeRecord(nil, 3, 0, nil)
	all := slices.Concat(r1, r2, r3)
	flipped := bytes.Clone(all)
	flipped[len(r1)+recordHeader] ^= 1
	return [][]byte{
		nil,
		r1,
		all,
		all[:len(all)-1],
		all[:len(r1)+recordHeader/2],
		flipped,
		slices.Concat(all, make([]byte, 64)),
		slices.Concat(all, []byte(recordMagic)),
		encodeRecord(nil, 1<<63, 1<<31, bundleData("x")),
		encodeBatch(70000, testEntries("seed", 3)),
	}
}

// FuzzDecodeRecords checks that decodeRecords never panics, that what it
// accepts is exactly a run of records encodeRecord produces, and that it
// stops only where no further record can be read.
func FuzzDecodeRecords(f *testing.F) {
	for _, s := range journalSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, good := decodeRecords(b)
		if good < 0 || good > len(b) {
			t.Fatalf("good = %d for %d bytes", good, len(b))
		}
		var re []byte
		for _, r := range recs {
			if _, err := splitEntries(r.payload, int(r.count)); err != nil {
				t.Fatalf("record at %d: payload does not hold %d entries: %v", r.first, r.count, err)
			}
			re = append(re, encodeRecord(nil, r.first, r.count, r.payload)...)
		}
		if !bytes.Equal(re, b[:good]) {
			t.Fatalf("re-encoded records differ from the %d bytes they were decoded from", good)
		}
		// The good prefix decodes to the same records, and the rest
		// starts with no readable record.
		again, g := decodeRecords(b[:good])
		if g != good || len(again) != len(recs) {
			t.Fatalf("decoding the good prefix: %d records, good %d; want %d, %d", len(again), g, len(recs), good)
		}
		if rest, n := decodeRecords(b[good:]); len(rest) != 0 || n != 0 {
			t.Fatalf("the scan stopped at %d, but %d records follow", good, len(rest))
		}
	})
}

// FuzzSplitEntries checks splitEntries against Tessera's own entry-bundle
// parser and checks that the pieces it returns make up its input.
func FuzzSplitEntries(f *testing.F) {
	f.Add([]byte{}, -1)
	f.Add(bundleData("a", "", "bcd"), 3)
	f.Add(bundleData("a", "b"), 1)
	f.Add([]byte{0}, -1)
	f.Add([]byte{0, 5, 'a'}, 1)
	f.Add(bundleData(string(make([]byte, 300))), 1)
	f.Fuzz(func(t *testing.T, b []byte, want int) {
		got, err := splitEntries(b, want)

		var eb api.EntryBundle
		terr := eb.UnmarshalText(b)
		wantOK := terr == nil && (want < 0 || len(eb.Entries) == want)
		if (err == nil) != wantOK {
			t.Fatalf("splitEntries: %v; Tessera's parser: %v", err, terr)
		}
		if err != nil {
			return
		}
		if want >= 0 && len(got) != want {
			t.Fatalf("splitEntries gave %d entries, want %d", len(got), want)
		}
		if len(got) != len(eb.Entries) {
			t.Fatalf("splitEntries gave %d entries, Tessera's parser %d", len(got), len(eb.Entries))
		}
		if !bytes.Equal(bytes.Join(got, nil), b) {
			t.Fatal("entries do not make up the input")
		}
		for i, e := range got {
			if len(e) < 2 || int(binary.BigEndian.Uint16(e)) != len(e)-2 || !bytes.Equal(e[2:], eb.Entries[i]) {
				t.Fatalf("entry %d = %x, Tessera's parser %x", i, e, eb.Entries[i])
			}
		}
	})
}
