package access

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strings"
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

// readLines returns the lines of a testdata file of vectors.
func readLines(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

// golden checks that encoded, one entry a line, is the content of the
// vectors file path, and returns its lines. With -update it rewrites the
// file first, always to the same bytes.
func golden(t *testing.T, path string, encoded [][]byte) [][]byte {
	t.Helper()
	var all bytes.Buffer
	for _, b := range encoded {
		all.Write(b)
		all.WriteByte('\n')
	}
	if *update {
		if err := os.WriteFile(path, all.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(file, all.Bytes()) {
		t.Fatalf("%s differs from the encoding of the vectors; run go test -run %s -update if the change is intended", path, t.Name())
	}
	return readLines(t, path)
}

// checkKind checks that line, a vector of kind, is of that EntryKind and
// that every other parser of the package refuses it, naming its kind.
func checkKind(t *testing.T, name, kind string, line []byte) {
	t.Helper()
	if k := EntryKind(line); k != kind {
		t.Errorf("%s: EntryKind = %q, want %q", name, k, kind)
	}
	for other, parse := range parsers {
		if other == kind {
			continue
		}
		if err := parse(line); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("kind %q", kind)) {
			t.Errorf("%s: the %s parser = %v, want an error naming the kind %q", name, other, err, kind)
		}
	}
}

// marshalAll encodes every vector, stopping the test at the first that
// does not encode.
func marshalAll[E canonicalEntry](t *testing.T, names []string, entries []E) [][]byte {
	t.Helper()
	out := make([][]byte, len(entries))
	for i, e := range entries {
		b, err := e.Marshal()
		if err != nil {
			t.Fatalf("%s: Marshal: %v", names[i], err)
		}
		out[i] = b
	}
	return out
}
