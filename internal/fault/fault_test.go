package fault

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKind(t *testing.T) {
	logDown := New(ErrUnavailable, "log unavailable")
	wrapped := fmt.Errorf("appending to x: %w: disk full", logDown)
	if Kind(wrapped) != ErrUnavailable || !errors.Is(wrapped, logDown) {
		t.Errorf("Kind(%v) = %v; errors.Is(sentinel) = %v", wrapped, Kind(wrapped), errors.Is(wrapped, logDown))
	}
	if logDown.Error() != "log unavailable" {
		t.Errorf("the text is %q", logDown.Error())
	}
	if k := Kind(errors.New("nil pointer")); k != nil {
		t.Errorf("an error of no kind has kind %v", k)
	}
	if Kind(New(ErrBusy, "x")) != ErrBusy || Kind(New(ErrConflict, "x")) != ErrConflict || Kind(New(ErrInvalid, "x")) != ErrInvalid ||
		Kind(New(ErrNotFound, "x")) != ErrNotFound || Kind(New(ErrForbidden, "x")) != ErrForbidden {
		t.Error("a kind is not found")
	}
}

func TestMark(t *testing.T) {
	driver := errors.New("disk I/O error")
	err := fmt.Errorf("storing batch: %w", Mark(ErrUnavailable, driver))
	if Kind(err) != ErrUnavailable || !errors.Is(err, driver) || err.Error() != "storing batch: disk I/O error" {
		t.Errorf("Mark: kind %v, is driver %v, text %q", Kind(err), errors.Is(err, driver), err.Error())
	}
	if Mark(ErrUnavailable, nil) != nil {
		t.Error("Mark(kind, nil) is not nil")
	}
	bad := New(ErrInvalid, "no batch id")
	if Kind(Mark(ErrUnavailable, bad)) != ErrInvalid {
		t.Error("Mark replaced a kind an error already had")
	}
}

func TestFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "absent"), filepath.Join(file, "under-a-file"), filepath.Join(dir, strings.Repeat("a", 300))} {
		_, err := os.ReadFile(p)
		if got := File(err, "no such thing"); Kind(got) != ErrNotFound || got.Error() != "no such thing" {
			t.Errorf("reading %.40s…: %v → %v (kind %v), want not found, without the path", p, err, got, Kind(got))
		}
	}
	_, err := os.ReadFile(dir) // EISDIR
	if got := File(err, "no such thing"); Kind(got) != ErrUnavailable || !errors.Is(got, err) {
		t.Errorf("reading a directory: %v (kind %v), want unavailable", got, Kind(got))
	}
	if File(nil, "x") != nil {
		t.Error("File(nil) is not nil")
	}
}
