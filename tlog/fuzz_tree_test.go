package tlog

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
)

// marshalBundle is the inverse of parseBundle.
func marshalBundle(entries [][]byte) []byte {
	var b []byte
	for _, e := range entries {
		b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
		b = append(b, e...)
	}
	return b
}

func TestParseBundle(t *testing.T) {
	full := make([][]byte, tileWidth)
	for i := range full {
		full[i] = fmt.Appendf(nil, "entry %d", i)
	}
	for _, tc := range []struct {
		name    string
		in      []byte
		want    int // entries, when wantErr is false
		wantErr bool
	}{
		{name: "empty", in: nil, want: 0},
		{name: "one empty entry", in: []byte{0, 0}, want: 1},
		{name: "one entry", in: []byte{0, 2, 'h', 'i'}, want: 1},
		{name: "full bundle", in: marshalBundle(full), want: tileWidth},
		{name: "largest entry", in: marshalBundle([][]byte{make([]byte, 0xffff)}), want: 1},
		{name: "one byte", in: []byte{0}, wantErr: true},
		{name: "length beyond end", in: []byte{0, 3, 'h', 'i'}, wantErr: true},
		{name: "dangling byte", in: []byte{0, 2, 'h', 'i', 0}, wantErr: true},
		{name: "257 entries", in: append(marshalBundle(full), 0, 0), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseBundle(nil, tc.in)
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("parseBundle: got error %v, want error %t", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if len(got) != tc.want {
				t.Errorf("parseBundle: got %d entries, want %d", len(got), tc.want)
			}
			if b := marshalBundle(got); !bytes.Equal(b, tc.in) {
				t.Errorf("parseBundle: entries marshal to %x, want %x", b, tc.in)
			}
		})
	}
}

// FuzzParseBundle checks that no bundle a log serves makes the parser panic,
// that whatever it accepts marshals back to exactly the bytes it read, and
// that no entry's capacity reaches into the next one.
func FuzzParseBundle(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0})
	f.Add([]byte{0, 2, 'h', 'i', 0, 1, '!'})
	f.Add([]byte{0, 3, 'h', 'i'})
	f.Add([]byte{0xff, 0xff})
	many := make([][]byte, tileWidth)
	for i := range many {
		many[i] = fmt.Appendf(nil, "vitrine test entry %d", i)
	}
	f.Add(marshalBundle(many))
	f.Add(marshalBundle(many[:232]))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := parseBundle(nil, b)
		if err != nil {
			return
		}
		if len(entries) > tileWidth {
			t.Fatalf("parseBundle accepted %d entries", len(entries))
		}
		if got := marshalBundle(entries); !bytes.Equal(got, b) {
			t.Fatalf("parseBundle(%x) marshals back to %x", b, got)
		}
		for i, e := range entries {
			if cap(e) != len(e) {
				t.Fatalf("entry %d has capacity %d beyond its length %d", i, cap(e), len(e))
			}
		}
	})
}
