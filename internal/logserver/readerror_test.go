package logserver

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/fault"
)

// TestReadError checks how a failed read of the log's files is grouped: an
// absent file is fault.ErrNotFound whose text names no path, anything else
// the storage failing.
func TestReadError(t *testing.T) {
	dir := t.TempDir()
	_, absent := os.ReadFile(filepath.Join(dir, "tile", "0", "000"))
	err := readError(absent, "no such tile")
	if fault.Kind(err) != fault.ErrNotFound || strings.Contains(err.Error(), dir) {
		t.Errorf("an absent tile: %v (kind %v), want not found without the path", err, fault.Kind(err))
	}
	_, isDir := os.ReadFile(dir) // EISDIR: the storage is not what it should be
	if errors.Is(isDir, fs.ErrNotExist) {
		t.Fatal("reading a directory says not found")
	}
	if err := readError(isDir, "no such tile"); fault.Kind(err) != fault.ErrUnavailable || !errors.Is(err, isDir) {
		t.Errorf("a failing read: %v (kind %v), want unavailable, wrapping the read's error", err, fault.Kind(err))
	}
}
