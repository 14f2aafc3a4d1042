package conveyer

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func gitSource(t *testing.T) Source {
	root, head := repoRoot(t)
	return Source{Git: root, Commit: head}
}

func exportArchive(t *testing.T, s Source, change func(dir string)) ([]byte, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	if err := Export(context.Background(), s, dir); err != nil {
		t.Fatal(err)
	}
	if change != nil {
		change(dir)
	}
	var buf bytes.Buffer
	sum, err := Archive(dir, &buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), sum
}

func TestArchiveReproducible(t *testing.T) {
	s := gitSource(t)
	a, sumA := exportArchive(t, s, nil)
	// A second export at another time, in another directory, with other
	// file times and a stray read-only mode.
	b, sumB := exportArchive(t, s, func(dir string) {
		later := time.Now().Add(time.Hour)
		_ = os.Chtimes(filepath.Join(dir, "go.mod"), later, later)
		_ = os.Chmod(filepath.Join(dir, "go.sum"), 0o600)
	})
	if sumA != sumB || !bytes.Equal(a, b) {
		t.Fatalf("two exports of %s differ: %s vs %s", s.Commit, sumA, sumB)
	}
	_, sumC := exportArchive(t, s, func(dir string) {
		p := filepath.Join(dir, "go.mod")
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)-1] ^= 1
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	})
	if sumC == sumA {
		t.Fatalf("changing one byte left the digest at %s", sumA)
	}
	checkArchiveForm(t, a)
}

// checkArchiveForm checks the normalisation Archive promises, header by
// header.
func checkArchiveForm(t *testing.T, data []byte) {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if gz.Name != "" || !gz.ModTime.IsZero() || gz.Comment != "" || gz.Extra != nil {
		t.Errorf("gzip header = %+v, want no name, mtime, comment or extra", gz.Header)
	}
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner %d/%d %q/%q, want 0/0 and empty names", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		if h.ModTime.Unix() != 0 || !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() || len(h.PAXRecords) != 0 {
			t.Errorf("%s: times %v/%v/%v, PAX %v; want mtime 0 and nothing else", h.Name, h.ModTime, h.AccessTime, h.ChangeTime, h.PAXRecords)
		}
		switch h.Typeflag {
		case tar.TypeReg:
			if h.Mode != 0o644 && h.Mode != 0o755 {
				t.Errorf("%s: mode %o, want 0644 or 0755", h.Name, h.Mode)
			}
		case tar.TypeSymlink:
		default:
			t.Errorf("%s: type %q, want a regular file or symlink", h.Name, h.Typeflag)
		}
	}
	if len(names) == 0 || !slices.IsSorted(names) {
		t.Errorf("archive holds %d entries, sorted = %v; want sorted paths", len(names), slices.IsSorted(names))
	}
}

func TestExportDirSkipsJunk(t *testing.T) {
	// Outside a git work tree: everything but .git.
	src := t.TempDir()
	for name, data := range map[string]string{
		"main.go":         "package main\n",
		"sub/a.txt":       "a",
		".git/config":     "junk",
		"sub/.git/HEAD":   "junk",
		"tool.sh":         "#!/bin/sh\n",
		"sub/deep/b.data": "b",
	} {
		p := filepath.Join(src, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(src, "tool.sh"), 0o700); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "src")
	if err := Export(context.Background(), Source{Dir: src}, dst); err != nil {
		t.Fatal(err)
	}
	files, err := listDir(context.Background(), dst)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"main.go", "sub/a.txt", "sub/deep/b.data", "tool.sh"}
	slices.Sort(files)
	if !slices.Equal(files, want) {
		t.Errorf("exported %v, want %v", files, want)
	}
	info, err := os.Stat(filepath.Join(dst, "tool.sh"))
	if err != nil || info.Mode().Perm() != 0o755 {
		t.Errorf("tool.sh mode = %v (%v), want 0755", info.Mode(), err)
	}

	// Inside a git work tree: ignored files (here *.test) stay behind.
	root, _ := repoRoot(t)
	junk := filepath.Join(root, "internal", "conveyer", "testdata", "hello", "junk.test")
	if err := os.WriteFile(junk, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(junk)
	dst = filepath.Join(t.TempDir(), "src")
	if err := Export(context.Background(), Source{Dir: filepath.Dir(junk)}, dst); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "junk.test")); err == nil {
		t.Errorf("an ignored file was exported")
	}
	if _, err := os.Stat(filepath.Join(dst, "main.go")); err != nil {
		t.Errorf("main.go was not exported: %v", err)
	}
}
