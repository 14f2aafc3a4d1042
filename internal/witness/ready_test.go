package witness

import (
	"strings"
	"testing"
)

// A witness is ready while its state database answers, and not once it
// is closed; the reason names no file.
func TestReady(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(t.Context(), Config{Dir: dir, Name: "example.com/witness"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Ready(t.Context()); err != nil {
		t.Fatalf("Ready of an open witness: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	err = w.Ready(t.Context())
	if err == nil || strings.Contains(err.Error(), dir) {
		t.Fatalf("Ready of a closed witness = %v, want an error that names no file", err)
	}
}
