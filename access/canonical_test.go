package access

import (
	"bytes"
	"reflect"
	"testing"
)

// canonicalEntry is a log entry kind with a canonical encoding.
type canonicalEntry interface {
	Validate() error
	Marshal() ([]byte, error)
}

// parsers are the package's entry parsers by kind: an encoding one of
// them accepts, no other may.
var parsers = map[string]func([]byte) error{
	KindAccess:        func(b []byte) error { _, err := Parse(b); return err },
	KindCommitment:    func(b []byte) error { _, err := ParseCommitment(b); return err },
	KindDeniedSummary: func(b []byte) error { _, err := ParseDeniedSummary(b); return err },
	KindGrant:         func(b []byte) error { _, err := ParseGrant(b); return err },
}

// checkCanonical is the body of the fuzz targets of the entry kinds: parse
// never panics and accepts only canonical encodings of valid entries of
// its kind. Whatever it accepts must be of that EntryKind, validate,
// marshal back to exactly the input and parse again to the same entry,
// and no other parser of the package may accept it.
func checkCanonical[E canonicalEntry](t *testing.T, kind string, parse func([]byte) (E, error), b []byte) {
	e, err := parse(b)
	if err != nil {
		if v := reflect.ValueOf(e); v.IsValid() && !v.IsNil() {
			t.Fatalf("the %s parser returned an entry with the error %v", kind, err)
		}
		return
	}
	if EntryKind(b) != kind {
		t.Fatalf("the %s parser accepted %q, whose EntryKind is %q", kind, b, EntryKind(b))
	}
	if err := e.Validate(); err != nil {
		t.Fatalf("the %s parser accepted %q, which does not validate: %v", kind, b, err)
	}
	out, err := e.Marshal()
	if err != nil || !bytes.Equal(out, b) {
		t.Fatalf("the %s parser accepted %q, which Marshal writes as %q, %v", kind, b, out, err)
	}
	again, err := parse(out)
	if err != nil || !reflect.DeepEqual(again, e) {
		t.Fatalf("parse(Marshal(e)) = %+v, %v; want %+v", again, err, e)
	}
	for other, p := range parsers {
		if other != kind && p(b) == nil {
			t.Fatalf("both the %s and the %s parser accept %q", kind, other, b)
		}
	}
}
