package client

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/tlog"
)

// TestEntry: any entry of any log, with a C2SP tlog-proof built from the
// tiles alone that verifies offline; a server that lies about the entry or
// about a tile after answering honestly gets an error, never its bytes.
func TestEntry(t *testing.T) {
	ctx := context.Background()
	l := buildLog(t, newKey(t, "vitrine.local/logs/test"), entryN, 700)
	s := serve(t, l)
	log := s.client(t)
	cp, err := log.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []uint64{0, 255, 256, 511, 699} {
		e, p, err := log.Entry(ctx, cp, i)
		if err != nil || !bytes.Equal(e, l.entries[i]) {
			t.Fatalf("Entry(%d) = %q, %v; want %q", i, e, err, l.entries[i])
		}
		// The proof verifies offline, from its own bytes.
		parsed, err := tlog.ParseProof(p.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parsed.Verify(tlog.LeafHash(e), log.Verifier, log.Policy); err != nil {
			t.Errorf("entry %d: the proof does not verify offline: %v", i, err)
		}
	}
	if _, _, err := log.Entry(ctx, cp, 700); err == nil {
		t.Error("Entry past the checkpoint: no error")
	}

	evil := []byte("EVIL")
	s.change = func(p string, b []byte) []byte {
		switch {
		case p == "tile/entries/001":
			return rebundle(t, b, 44, evil)
		case strings.HasPrefix(p, "tile/0/002"):
			b = bytes.Clone(b)
			b[len(b)-1] ^= 1
		}
		return b
	}
	s.lie.Store(true)
	if e, _, err := log.Entry(ctx, cp, 300); err == nil || bytes.Equal(e, evil) {
		t.Errorf("Entry(300) from a doctored bundle = %q, %v; want an error", e, err)
	}
	// Entry 0's proof needs a hash from tile 0/002.
	if _, _, err := log.Entry(ctx, cp, 0); !errors.Is(err, tlog.ErrInclusion) {
		t.Errorf("Entry(0) with a doctored tile: %v, want an error", err)
	}
}
