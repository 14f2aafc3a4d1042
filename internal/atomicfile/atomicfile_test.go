package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "f")
	for _, content := range []string{"first", "second, longer contents", ""} {
		if err := Write(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != content {
			t.Fatalf("after Write(%q): read %q, %v", content, got, err)
		}
		st, _ := os.Stat(p)
		if st.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600", st.Mode().Perm())
		}
	}
	des, _ := os.ReadDir(filepath.Dir(p))
	if len(des) != 1 {
		t.Errorf("temporary files left behind: %v", des)
	}
	if err := Write(filepath.Join(dir, "missing\x00name"), nil, 0o600); err == nil {
		t.Error("writing an impossible name succeeded")
	}
}

func TestMkdirAll(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a", "b", "c")
	for range 2 { // made, then already there
		if err := MkdirAll(p); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(p); err != nil || !st.IsDir() {
			t.Fatalf("%s: %v, %v; want a directory", p, st, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{filepath.Join(dir, "file"), filepath.Join(dir, "file", "d")} {
		if err := MkdirAll(bad); err == nil {
			t.Errorf("MkdirAll(%s) succeeded where a file stands", bad)
		}
	}
}
