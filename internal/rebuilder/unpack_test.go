package rebuilder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type tarEntry struct {
	name, link, body string
	typ              byte
}

func makeTarGz(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// TestUnpackRoundTrip unpacks a conveyer archive and archives it again to
// the same bytes.
func TestUnpackRoundTrip(t *testing.T) {
	src := writeTree(t, map[string]string{"a/b/c.txt": "c", "x": "x"})
	if err := os.Chmod(filepath.Join(src, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a/b/c.txt", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	b, sum := archive(t, src)
	dst := filepath.Join(t.TempDir(), "u")
	if err := unpack(bytes.NewReader(b), dst); err != nil {
		t.Fatal(err)
	}
	if b2, sum2 := archive(t, dst); sum2 != sum || !bytes.Equal(b, b2) {
		t.Errorf("archive of the unpacked tree: %s, want %s", sum2, sum)
	}
}

func TestUnpackRefuses(t *testing.T) {
	outside := t.TempDir()
	for _, c := range []struct {
		name    string
		entries []tarEntry
		want    string
	}{
		{"parent path", []tarEntry{{name: "../x", body: "x", typ: tar.TypeReg}}, "not a clean relative path"},
		{"absolute path", []tarEntry{{name: "/etc/x", body: "x", typ: tar.TypeReg}}, "not a clean relative path"},
		{"unclean path", []tarEntry{{name: "a/./x", body: "x", typ: tar.TypeReg}}, "not a clean relative path"},
		{"write through a symlink", []tarEntry{{name: "l", link: outside, typ: tar.TypeSymlink}, {name: "l/x", body: "x", typ: tar.TypeReg}}, "l"},
		{"a device", []tarEntry{{name: "d", typ: tar.TypeChar}}, "neither a file nor a symlink"},
		{"twice the same file", []tarEntry{{name: "x", body: "1", typ: tar.TypeReg}, {name: "x", body: "2", typ: tar.TypeReg}}, "x"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := unpack(bytes.NewReader(makeTarGz(t, c.entries)), filepath.Join(t.TempDir(), "u"))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error about %q", err, c.want)
			}
		})
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("unpacking wrote outside its directory: %v", entries)
	}
	if err := unpack(strings.NewReader("not gzip"), filepath.Join(t.TempDir(), "u")); err == nil {
		t.Error("a non-gzip archive unpacked")
	}
}
