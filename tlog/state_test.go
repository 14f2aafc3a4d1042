package tlog_test

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/tlog"
)

func testState(size uint64) *tlog.State {
	root := sha256.Sum256([]byte("root"))
	return &tlog.State{
		Origin:     "vitrine.test/log",
		Size:       size,
		Root:       root[:],
		Checkpoint: []byte("vitrine.test/log\n" + "42\n" + "cm9vdA==\n\n— vitrine.test/log AAAA\n"),
	}
}

func TestStateRoundTrip(t *testing.T) {
	empty := sha256.Sum256(nil)
	for _, tc := range []struct {
		name string
		s    *tlog.State
	}{
		{"checkpointed", testState(42)},
		{"empty tree", &tlog.State{Origin: "o", Size: 0, Root: empty[:], Checkpoint: []byte("o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n— o AAAA\n")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state.json")
			// The second save replaces the first.
			if err := tlog.SaveState(path, testState(1)); err != nil {
				t.Fatalf("SaveState: %v", err)
			}
			if err := tlog.SaveState(path, tc.s); err != nil {
				t.Fatalf("SaveState: %v", err)
			}
			got, err := tlog.LoadState(path)
			if err != nil {
				t.Fatalf("LoadState: %v", err)
			}
			if !reflect.DeepEqual(got, tc.s) {
				t.Errorf("LoadState: got %+v, want %+v", got, tc.s)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := fi.Mode().Perm(), os.FileMode(0o600); got != want {
				t.Errorf("state file mode %v, want %v", got, want)
			}
			names, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(names) != 1 {
				t.Errorf("directory holds %v, want only state.json", names)
			}
		})
	}
}

func TestLoadStateMissing(t *testing.T) {
	got, err := tlog.LoadState(filepath.Join(t.TempDir(), "state.json"))
	if got != nil || err != nil {
		t.Errorf("LoadState of a missing file: got (%v, %v), want (nil, nil)", got, err)
	}
}

func TestLoadStateCorrupt(t *testing.T) {
	const good = `{"origin":"o","size":3,"root":"` + rootB64 + `","checkpoint":"bwozCg=="}`
	for _, tc := range []struct {
		name, content string
	}{
		{"empty file", ""},
		{"truncated", good[:len(good)-3]},
		{"null", "null"},
		{"array", "[]"},
		{"trailing data", good + `{}`},
		{"unknown field", strings.Replace(good, `"size"`, `"sighs":1,"size"`, 1)},
		{"root not base64", strings.Replace(good, rootB64, "!!", 1)},
		{"short root", strings.Replace(good, rootB64, "AAAA", 1)},
		{"missing root", `{"origin":"o","size":3}`},
		{"missing origin", strings.Replace(good, `"origin":"o"`, `"origin":""`, 1)},
		{"negative size", strings.Replace(good, `"size":3`, `"size":-3`, 1)},
		{"size as string", strings.Replace(good, `"size":3`, `"size":"3"`, 1)},
		{"empty tree with a root", strings.Replace(good, `"size":3`, `"size":0`, 1)},
		// Size and root alone are the state's word, not the log's.
		{"no checkpoint", strings.Replace(good, `"bwozCg=="`, `null`, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := tlog.LoadState(path)
			if err == nil {
				t.Fatalf("LoadState(%q): got %+v, want an error", tc.content, got)
			}
			b, rerr := os.ReadFile(path)
			if rerr != nil || string(b) != tc.content {
				t.Errorf("LoadState changed the corrupt file to %q (%v)", b, rerr)
			}
		})
	}
	t.Run("good", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.json")
		if err := os.WriteFile(path, []byte(good+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := tlog.LoadState(path); err != nil {
			t.Errorf("LoadState: %v", err)
		}
	})
}

// rootB64 is a valid 32-byte root in base64.
const rootB64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

func TestSaveStateRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    *tlog.State
	}{
		{"nil", nil},
		{"no origin", &tlog.State{Size: 1, Root: testState(1).Root}},
		{"short root", &tlog.State{Origin: "o", Size: 1, Root: make([]byte, 31)}},
		{"empty tree with a root", &tlog.State{Origin: "o", Size: 0, Root: testState(0).Root}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			old := testState(5)
			if err := tlog.SaveState(path, old); err != nil {
				t.Fatal(err)
			}
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := tlog.SaveState(path, tc.s); err == nil {
				t.Fatalf("SaveState(%+v): got nil error", tc.s)
			}
			after, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(after, before) {
				t.Errorf("rejected SaveState changed the file: %q, %v", after, err)
			}
		})
	}
	t.Run("missing directory is created", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "no", "state.json")
		if err := tlog.SaveState(path, testState(1)); err != nil {
			t.Fatalf("SaveState into a missing directory: %v", err)
		}
		got, err := tlog.LoadState(path)
		if err != nil || got == nil || got.Size != testState(1).Size {
			t.Errorf("LoadState after SaveState into a new directory = %+v, %v", got, err)
		}
	})
}
