//go:build unix

package scan

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// TestScanPaths walks a tree with infected, clean, unreadable and linked
// files and checks every file gets one result, with errors per file.
func TestScanPaths(t *testing.T) {
	s := newScanner(t, map[string]string{"p.ndb": "Vitrine.Test.P:0:*:696e666563746564\n"})
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := write("a/b/bad.bin", "this one is infected")
	clean := write("a/clean.txt", "nothing here")
	deep := write("a/b/c/d/also.bin", "also infected")
	locked := write("a/locked.bin", "infected but unreadable")
	if err := os.Chmod(locked, 0); err != nil {
		t.Fatal(err)
	}
	root := os.Geteuid() == 0 // reads the locked file anyway
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bad, filepath.Join(dir, "a", "link.bin")); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")

	var infected, cleanFiles, failed []string
	err := s.ScanPaths(context.Background(), []string{filepath.Join(dir, "a"), bad, missing, fifo}, 3, func(r Result) {
		switch {
		case r.Err != nil:
			failed = append(failed, r.Path)
			if r.Path == missing && !errors.Is(r.Err, fs.ErrNotExist) {
				t.Errorf("missing path: %v, want not-exist", r.Err)
			}
		case len(r.Matches) > 0:
			infected = append(infected, r.Path)
		default:
			cleanFiles = append(cleanFiles, r.Path)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// bad is named and found by the walk; the link to it is not followed.
	for _, c := range []struct {
		what      string
		got, want []string
	}{
		{"infected", infected, append([]string{bad, bad, deep}, when(root, locked)...)},
		{"clean", cleanFiles, []string{clean}},
		{"failed", failed, append([]string{missing, fifo}, when(!root, locked)...)},
	} {
		slices.Sort(c.got)
		slices.Sort(c.want)
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}

	// A cancelled walk stops and says so.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.ScanPaths(ctx, []string{dir}, 0, func(Result) {}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v", err)
	}
}

func when(cond bool, s string) []string {
	if cond {
		return []string{s}
	}
	return nil
}
