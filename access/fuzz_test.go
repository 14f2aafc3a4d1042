package access

import (
	"reflect"
	"slices"
	"testing"
)

// FuzzParse checks that Parse never panics and accepts only canonical
// encodings of valid records: whatever it accepts must validate, marshal
// back to exactly the input, and parse again to the same record. Seeds are
// the valid vectors and the invalid ones derived from them.
func FuzzParse(f *testing.F) {
	lines, err := readVectors()
	if err != nil {
		f.Fatal(err)
	}
	for _, l := range lines {
		f.Add(l)
	}
	for _, tc := range invalidVectors {
		if tc.name != "too large" {
			f.Add(mutate(f, lines[0], tc.old, tc.new))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkCanonical(t, KindAccess, Parse, b)
		// The fast path accepts only what the token-by-token reader
		// accepts, as the same record.
		if fast := parseCanonical(b); fast != nil {
			slow, err := parseTokens(b)
			if err != nil {
				t.Fatalf("the fast path accepted what the reader refuses (%v): %q", err, b)
			}
			if !reflect.DeepEqual(fast, slow) {
				t.Fatalf("the fast path read %+v, the reader %+v", fast, slow)
			}
		}
	})
}

// FuzzParseJustification checks that ParseJustification never panics, and
// that what it accepts has a known code, is stable when written back in
// header form, and can go into a record.
func FuzzParseJustification(f *testing.F) {
	for _, s := range []string{
		"CUSTOMER_INITIATED_SUPPORT; case 1234",
		"RELOCATION; policy v7: CH → zurich",
		"  SUPERVISOR_REVIEW;   weekly review \t",
		"AUTOMATED_PROCESSING; a;b;c",
		"CUSTOMER_INITIATED_SUPPORT;case",
		"CUSTOMER_INITIATED_SUPPORT; a\u202eb",
		"; x", "", "x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		j, err := ParseJustification(h)
		if err != nil {
			return
		}
		if !slices.Contains(Codes, j.Code) {
			t.Fatalf("ParseJustification(%q) accepted code %q", h, j.Code)
		}
		again, err := ParseJustification(j.Code + "; " + j.Detail)
		if err != nil || again != j {
			t.Fatalf("ParseJustification(%q) = %+v, but its header form parses to %+v, %v", h, j, again, err)
		}
		r := testRecord()
		r.Justification = j
		if err := r.Validate(); err != nil {
			t.Fatalf("ParseJustification(%q) = %+v, which a record refuses: %v", h, j, err)
		}
	})
}

// TestParseCanonicalFastPath: every valid vector takes the fast path, and
// no invalid one does.
func TestParseCanonicalFastPath(t *testing.T) {
	lines, err := readVectors()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range lines {
		if EntryKind(l) != KindAccess {
			continue
		}
		if parseCanonical(l) == nil {
			t.Errorf("vector %d does not take the fast path: %s", i, l)
		}
	}
	for _, tc := range invalidVectors {
		if tc.name == "too large" {
			continue
		}
		b := mutate(t, lines[0], tc.old, tc.new)
		if parseCanonical(b) != nil {
			t.Errorf("%s: the fast path accepted it", tc.name)
		}
	}
}
