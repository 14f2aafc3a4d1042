package fault

import (
	"errors"
	"fmt"
	"testing"
)

func TestKind(t *testing.T) {
	logDown := New(Unavailable, "log unavailable")
	wrapped := fmt.Errorf("appending to x: %w: disk full", logDown)
	if Kind(wrapped) != Unavailable || !errors.Is(wrapped, logDown) {
		t.Errorf("Kind(%v) = %v; errors.Is(sentinel) = %v", wrapped, Kind(wrapped), errors.Is(wrapped, logDown))
	}
	if logDown.Error() != "log unavailable" {
		t.Errorf("the text is %q", logDown.Error())
	}
	if k := Kind(errors.New("nil pointer")); k != nil {
		t.Errorf("an error of no kind has kind %v", k)
	}
	if Kind(New(Busy, "x")) != Busy || Kind(New(Conflict, "x")) != Conflict || Kind(New(Invalid, "x")) != Invalid ||
		Kind(New(NotFound, "x")) != NotFound || Kind(New(Forbidden, "x")) != Forbidden {
		t.Error("a kind is not found")
	}
}
