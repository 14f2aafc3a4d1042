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
