package tilestore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// bundleData is entries in entry-bundle encoding.
func bundleData(entries ...string) []byte {
	var b []byte
	for _, e := range entries {
		b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
		b = append(b, e...)
	}
	return b
}

func TestEncodeRecord(t *testing.T) {
	// The layout the journal's doc comment promises, byte by byte.
	got := encodeRecord(nil, 0x0102030405060708, 2, bundleData("a", "bc"))
	want := []byte("VTJ1" +
		"\x01\x02\x03\x04\x05\x06\x07\x08" + // first
		"\x00\x00\x00\x02" + // count
		"\x00\x00\x00\x07" + // payload length
		"CRC!" + // placeholder, checked below
		"\x00\x01a\x00\x02bc")
	crc := binary.BigEndian.Uint32(got[20:24])
	copy(want[20:24], got[20:24])
	if !bytes.Equal(got, want) {
		t.Fatalf("encodeRecord = %x, want %x", got, want)
	}
	// CRC-32C (Castagnoli) over first, count, length and payload; the
	// check value comes from a standalone CRC-32C implementation.
	if want := crc32cNaive(append(bytes.Clone(got[4:20]), got[24:]...)); crc != want {
		t.Errorf("record CRC = %08x, want CRC-32C %08x", crc, want)
	}
	// encodeRecord reuses buf's storage and never keeps a prefix of it.
	buf := encodeRecord(make([]byte, 0, 100), 1, 1, bundleData("x"))
	if again := encodeRecord(buf, 1, 1, bundleData("x")); !bytes.Equal(again, buf) || len(again) != recordHeader+3 {
		t.Errorf("re-encoding into the same buffer = %x", again)
	}
}

// crc32cNaive is bit-by-bit CRC-32C (reflected polynomial 0x82F63B78).
func crc32cNaive(b []byte) uint32 {
	c := ^uint32(0)
	for _, x := range b {
		c ^= uint32(x)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0x82F63B78
			} else {
				c >>= 1
			}
		}
	}
	return ^c
}

func TestCRC32CNaive(t *testing.T) {
	// The standard CRC-32C check value.
	if got := crc32cNaive([]byte("123456789")); got != 0xE3069283 {
		t.Fatalf("crc32cNaive(123456789) = %08x, want e3069283", got)
	}
}

func TestDecodeRecords(t *testing.T) {
	r1 := encodeRecord(nil, 0, 1, bundleData("one"))
	r2 := encodeRecord(nil, 1, 2, bundleData("two", "three"))
	r3 := encodeRecord(nil, 3, 0, nil)
	both := slices.Concat(r1, r2)

	withByte := func(b []byte, i int, x byte) []byte {
		b = bytes.Clone(b)
		b[i] = x
		return b
	}
	badCount := encodeRecord(nil, 1, 3, bundleData("two", "three")) // count disagrees with the payload
	badPayload := encodeRecord(nil, 1, 1, []byte{0, 9, 'x'})        // entry longer than the payload
	lengthPastEnd := withByte(r1, 19, 0xff)                         // payload length beyond the buffer

	for _, tc := range []struct {
		name  string
		in    []byte
		first []uint64 // first index of each record decoded
		good  int
	}{
		{name: "empty", in: nil, good: 0},
		{name: "one record", in: r1, first: []uint64{0}, good: len(r1)},
		{name: "two records", in: both, first: []uint64{0, 1}, good: len(both)},
		{name: "record with no entries", in: slices.Concat(r1, r3), first: []uint64{0, 3}, good: len(r1) + len(r3)},
		{name: "short header", in: slices.Concat(r1, r2[:recordHeader-1]), first: []uint64{0}, good: len(r1)},
		{name: "short payload", in: slices.Concat(r1, r2[:len(r2)-1]), first: []uint64{0}, good: len(r1)},
		{name: "bad magic", in: slices.Concat(r1, withByte(r2, 3, '2')), first: []uint64{0}, good: len(r1)},
		{name: "bad first index", in: slices.Concat(r1, withByte(r2, 11, 9)), first: []uint64{0}, good: len(r1)},
		{name: "bad count", in: slices.Concat(r1, withByte(r2, 15, 9)), first: []uint64{0}, good: len(r1)},
		{name: "bad CRC", in: slices.Concat(r1, withByte(r2, 23, r2[23]^1)), first: []uint64{0}, good: len(r1)},
		{name: "bad payload byte", in: slices.Concat(r1, withByte(r2, len(r2)-1, 'X')), first: []uint64{0}, good: len(r1)},
		{name: "count disagrees with payload", in: slices.Concat(r1, badCount), first: []uint64{0}, good: len(r1)},
		{name: "payload not bundle encoded", in: slices.Concat(r1, badPayload), first: []uint64{0}, good: len(r1)},
		{name: "length past the end", in: slices.Concat(lengthPastEnd, r2), good: 0},
		{name: "damage stops the scan", in: slices.Concat(withByte(r1, 0, 'X'), r2), good: 0},
		{name: "zeros after records", in: slices.Concat(both, make([]byte, 100)), first: []uint64{0, 1}, good: len(both)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, good := decodeRecords(tc.in)
			var first []uint64
			for _, r := range recs {
				first = append(first, r.first)
			}
			if !slices.Equal(first, tc.first) || good != tc.good {
				t.Errorf("decodeRecords = records at %v, good %d; want records at %v, good %d", first, good, tc.first, tc.good)
			}
		})
	}

	recs, _ := decodeRecords(both)
	if got := recs[1]; got.first != 1 || got.count != 2 || !bytes.Equal(got.payload, bundleData("two", "three")) {
		t.Errorf("second record = %+v, want first 1, count 2, payload %q", got, bundleData("two", "three"))
	}
}

func TestSplitEntries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []byte
		want    int
		entries []string // nil with wantErr
		wantErr bool
	}{
		{name: "empty, any count", in: nil, want: -1, entries: []string{}},
		{name: "empty, none wanted", in: nil, want: 0, entries: []string{}},
		{name: "empty, one wanted", in: nil, want: 1, wantErr: true},
		{name: "one", in: bundleData("abc"), want: 1, entries: []string{"abc"}},
		{name: "empty entry", in: bundleData(""), want: 1, entries: []string{""}},
		{name: "three, any count", in: bundleData("a", "", "bcd"), want: -1, entries: []string{"a", "", "bcd"}},
		{name: "too few", in: bundleData("a", "b"), want: 3, wantErr: true},
		{name: "too many", in: bundleData("a", "b"), want: 1, wantErr: true},
		{name: "half a length", in: []byte{0}, want: -1, wantErr: true},
		{name: "short entry", in: []byte{0, 3, 'a', 'b'}, want: -1, wantErr: true},
		{name: "trailing byte", in: append(bundleData("a"), 0), want: -1, wantErr: true},
		{name: "largest entry", in: bundleData(string(make([]byte, 1<<16-1))), want: 1, entries: []string{string(make([]byte, 1<<16-1))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := splitEntries(tc.in, tc.want)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("splitEntries = %q, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("splitEntries: %v", err)
			}
			var gotEntries []string
			for _, e := range got {
				gotEntries = append(gotEntries, string(e[2:]))
			}
			if len(gotEntries) != len(tc.entries) || !slices.Equal(gotEntries, tc.entries) {
				t.Errorf("splitEntries = %q, want %q", gotEntries, tc.entries)
			}
		})
	}
}

func TestSegments(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   []string
		want    []uint64
		wantErr bool
	}{
		{name: "none", want: nil},
		{name: "sorted by base, not by name", files: []string{segmentName(1000), segmentName(2), "9.wal"}, want: []uint64{2, 9, 1000}},
		{name: "other files ignored", files: []string{segmentName(5), ".synced123", "lock", "x.wal.tmp"}, want: []uint64{5}},
		{name: "stray segment name", files: []string{segmentName(5), "five.wal"}, wantErr: true},
		{name: "negative base", files: []string{"-1.wal"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := segments(dir)
			if tc.wantErr {
				if !errors.Is(err, errCorrupt) {
					t.Fatalf("segments = %v, %v; want errCorrupt", got, err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("segments = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	if got, want := segmentName(42), "00000000000000000042.wal"; got != want {
		t.Errorf("segmentName(42) = %q, want %q", got, want)
	}
}

func TestJournalAppend(t *testing.T) {
	dir := t.TempDir()
	j, err := openSegment(dir, 7, 0)
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	for i, p := range [][]byte{bundleData("a"), bundleData("b", "c"), nil} {
		first, count := uint64(7+i*2), uint32(len(p)/3)
		if err := j.append(first, count, p); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		want = append(want, encodeRecord(nil, first, count, p)...)
		if j.size != int64(len(want)) {
			t.Errorf("journal size after append %d = %d, want %d", i, j.size, len(want))
		}
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, segmentName(7))
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("segment = %x, %v; want %x", got, err, want)
	}

	// Reopening at a size cuts what follows and appends after it.
	torn := append(bytes.Clone(want), "torn"...)
	if err := os.WriteFile(p, torn, 0o644); err != nil {
		t.Fatal(err)
	}
	j, err = openSegment(dir, 7, int64(len(want)))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.append(13, 1, bundleData("d")); err != nil {
		t.Fatal(err)
	}
	j.close()
	want = append(want, encodeRecord(nil, 13, 1, bundleData("d"))...)
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("segment after reopening = %x, %v; want %x", got, err, want)
	}
	recs, good := decodeRecords(want)
	if len(recs) != 4 || good != len(want) {
		t.Errorf("decodeRecords of the segment = %d records, good %d; want 4, %d", len(recs), good, len(want))
	}
}

func TestMarker(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, stateDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := readMarker(dir); err != nil || got != 0 {
		t.Errorf("readMarker with no marker = %d, %v; want 0, nil", got, err)
	}
	for _, size := range []uint64{1, 70000, 1<<64 - 1} {
		if err := writeMarker(dir, size); err != nil {
			t.Fatal(err)
		}
		if got, err := readMarker(dir); err != nil || got != size {
			t.Errorf("readMarker = %d, %v; want %d", got, err, size)
		}
	}
	des, err := os.ReadDir(filepath.Join(dir, stateDir))
	if err != nil || len(des) != 1 {
		t.Errorf("state directory holds %v, %v; want only the marker", des, err)
	}
	if err := os.WriteFile(filepath.Join(dir, stateDir, markerFile), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readMarker(dir); !errors.Is(err, errCorrupt) {
		t.Errorf("readMarker of a damaged marker: err = %v, want errCorrupt", err)
	}
}
