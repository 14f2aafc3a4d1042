package witness

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/transparency-dev/formats/log"
)

// TestReopen checks that the witness keeps its key and the latest cosigned
// size across a restart.
func TestReopen(t *testing.T) {
	l := newTestLog(t, origin, 12)
	dir := t.TempDir()

	w := openTestWitness(t, dir, l.key())
	vkey := w.VKey()
	mustPost(t, w.Handler(), l.request(0, 7), http.StatusOK)
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	w = openTestWitness(t, dir, l.key())
	if got := w.VKey(); got != vkey {
		t.Errorf("VKey after reopen = %q, want %q", got, vkey)
	}
	r := mustPost(t, w.Handler(), l.request(0, 9), http.StatusConflict)
	if r.body != "7\n" {
		t.Errorf("409 after reopen = %q, want %q", r.body, "7\n")
	}
	r = mustPost(t, w.Handler(), l.request(7, 12), http.StatusOK)
	checkCosigned(t, w, l.checkpoint(12), r.body)
}

// TestKeyFiles checks the key files Open writes and the keys it refuses.
func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	w := openTestWitness(t, dir)
	fi, err := os.Stat(filepath.Join(dir, keyFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("%s mode = %v, want 0600", keyFile, got)
	}
	vkey, err := os.ReadFile(filepath.Join(dir, vkeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(vkey)); got != w.VKey() {
		t.Errorf("%s = %q, want VKey() %q", vkeyFile, got, w.VKey())
	}
	if got, want := w.Name(), "vitrine.test/witness"; got != want {
		t.Errorf("Name() = %q, want %q", got, want)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		cfg     Config
		key     string // written to witness.key first, unless empty
		wantErr string
	}{
		{name: "other name", cfg: Config{Dir: dir, Name: "vitrine.test/other"}, wantErr: "is named"},
		{name: "no directory", cfg: Config{Name: "vitrine.test/witness"}, wantErr: "no state directory"},
		{name: "bad name", cfg: Config{Dir: t.TempDir(), Name: "has space"}, wantErr: "not a key name"},
		{name: "garbage key", cfg: Config{Dir: t.TempDir(), Name: "vitrine.test/witness"}, key: "PRIVATE+KEY+not-a-key", wantErr: "parsing witness key"},
		{name: "bad log key", cfg: Config{Dir: t.TempDir(), Name: "vitrine.test/witness", Logs: []LogKey{{Origin: origin, VKey: "nope"}}}, wantErr: "verifier key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.key != "" {
				if err := os.WriteFile(filepath.Join(tt.cfg.Dir, keyFile), []byte(tt.key), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			w, err := Open(t.Context(), tt.cfg)
			if err == nil {
				_ = w.Close()
				t.Fatalf("Open succeeded, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Open error = %q, want it to contain %q", err, tt.wantErr)
			}
			if tt.key != "" && strings.Contains(err.Error(), tt.key) {
				t.Errorf("Open error %q repeats the key file's contents", err)
			}
		})
	}
}

// TestConcurrentAddCheckpoint checks that check-and-store is atomic: of many
// requests from the same old size, exactly one is cosigned and the others
// learn its size.
func TestConcurrentAddCheckpoint(t *testing.T) {
	const n = 32
	l := newTestLog(t, origin, 4+n)
	w := openTestWitness(t, "", l.key())
	h := w.Handler()
	mustPost(t, h, l.request(0, 4), http.StatusOK)

	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = l.request(4, int64(5+i))
	}
	answers := make([]response, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { answers[i] = post(h, bodies[i]) })
	}
	wg.Wait()

	var winners []int
	for i, a := range answers {
		switch a.status {
		case http.StatusOK:
			winners = append(winners, i)
		case http.StatusConflict:
		default:
			t.Errorf("request %d: status %d (%q), want 200 or 409", i, a.status, a.body)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d requests cosigned (%v), want exactly 1", len(winners), winners)
	}
	size := 5 + winners[0]
	for i, a := range answers {
		if a.status == http.StatusConflict && a.body != fmt.Sprintf("%d\n", size) {
			t.Errorf("request %d: 409 body %q, want %q", i, a.body, fmt.Sprintf("%d\n", size))
		}
	}
	cp, err := w.Checkpoint(t.Context(), origin)
	if err != nil {
		t.Fatal(err)
	}
	var c log.Checkpoint
	if _, err := c.Unmarshal(cp); err != nil || c.Size != uint64(size) {
		t.Errorf("stored size = %d (%v), want %d", c.Size, err, size)
	}
}
