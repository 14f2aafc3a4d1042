package tlog_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"testing"

	merkleproof "github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	sumdbtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/vitrine-dev/vitrine/tlog"
)

func TestConsistencyProof(t *testing.T) {
	t.Parallel()
	steps := []int{1, 255, 256, 257, 1000}
	l := buildTestLog(t, t.TempDir(), testEntry, steps...)
	hashes := sumdbHashes(t, l.entries)
	// Proofs come from the tiles of the newer tree only, so any older size
	// works, checkpointed or not; the newer sizes are the checkpoints.
	olds := []uint64{1, 2, 3, 7, 8, 255, 256, 257, 300, 511, 512, 513, 999, 1000}
	for _, cp := range l.checkpoints {
		for _, old := range olds {
			if old > cp.size {
				continue
			}
			t.Run(fmt.Sprintf("%d-%d", old, cp.size), func(t *testing.T) {
				oldRoot := sumdbRoot(t, l.entries, int(old))
				p, err := tlog.ConsistencyProof(t.Context(), l.fetcher(), old, cp.size)
				if err != nil {
					t.Fatalf("ConsistencyProof: %v", err)
				}
				want, err := sumdbtlog.ProveTree(int64(cp.size), int64(old), hashes)
				if err != nil {
					t.Fatal(err)
				}
				if got := flatten(p); !bytes.Equal(got, flatten(sumdbProof(want))) {
					t.Errorf("ConsistencyProof: got %x, sumdb proves %x", got, want)
				}
				if err := tlog.VerifyConsistency(old, cp.size, oldRoot, cp.root, p); err != nil {
					t.Errorf("VerifyConsistency: %v", err)
				}
				if old == cp.size {
					return
				}
				forged := bytes.Clone(cp.root)
				forged[31] ^= 0x80
				if err := tlog.VerifyConsistency(old, cp.size, oldRoot, forged, p); !errors.Is(err, tlog.ErrInconsistent) {
					t.Errorf("VerifyConsistency against a tampered new root: got %v, want %v", err, tlog.ErrInconsistent)
				}
				forged = bytes.Clone(oldRoot)
				forged[0] ^= 1
				if err := tlog.VerifyConsistency(old, cp.size, forged, cp.root, p); !errors.Is(err, tlog.ErrInconsistent) {
					t.Errorf("VerifyConsistency against a tampered old root: got %v, want %v", err, tlog.ErrInconsistent)
				}
			})
		}
	}
}

func TestInclusionProof(t *testing.T) {
	t.Parallel()
	l := buildTestLog(t, t.TempDir(), testEntry, 1000)
	cp := l.last()
	hashes := sumdbHashes(t, l.entries)
	for _, index := range []uint64{0, 1, 254, 255, 256, 511, 768, 998, 999} {
		t.Run(fmt.Sprint(index), func(t *testing.T) {
			p, err := tlog.InclusionProof(t.Context(), l.fetcher(), index, cp.size)
			if err != nil {
				t.Fatalf("InclusionProof: %v", err)
			}
			want, err := sumdbtlog.ProveRecord(int64(cp.size), int64(index), hashes)
			if err != nil {
				t.Fatal(err)
			}
			if got := flatten(p); !bytes.Equal(got, flatten(sumdbProof(want))) {
				t.Errorf("InclusionProof: got %x, sumdb proves %x", got, want)
			}
			leaf := rfc6962.DefaultHasher.HashLeaf(l.entries[index])
			if err := merkleproof.VerifyInclusion(rfc6962.DefaultHasher, index, cp.size, leaf, p, cp.root); err != nil {
				t.Errorf("VerifyInclusion: %v", err)
			}
		})
	}
}

func TestConsistencyProofErrors(t *testing.T) {
	t.Parallel()
	src := buildTestLog(t, t.TempDir(), testEntry, 1000)
	for _, tc := range []struct {
		name        string
		file        string
		change      func([]byte) []byte // nil deletes the file
		old, size   uint64
		wantErr     error
		wantFetched bool
	}{
		{name: "old size beyond new", old: 1001, size: 1000},
		{name: "missing tile", file: "tile/0/003.p/232", old: 10, size: 1000, wantErr: fs.ErrNotExist, wantFetched: true},
		{name: "short tile", file: "tile/0/003.p/232", change: func(b []byte) []byte { return b[:len(b)-32] },
			old: 10, size: 1000, wantErr: tlog.ErrMalformed},
		{name: "ragged tile", file: "tile/1/000.p/3", change: func(b []byte) []byte { return append(b, 0) },
			old: 10, size: 1000, wantErr: tlog.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := src
			if tc.file != "" {
				l = tamperedCopy(t, src, tc.file, tc.change)
			}
			_, err := tlog.ConsistencyProof(t.Context(), l.fetcher(), tc.old, tc.size)
			t.Logf("ConsistencyProof: %v", err)
			if err == nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("ConsistencyProof: got %v, want %v", err, tc.wantErr)
			}
			var fe *tlog.FetchError
			if got := errors.As(err, &fe); got != tc.wantFetched {
				t.Errorf("ConsistencyProof: got %v, FetchError %t, want %t", err, got, tc.wantFetched)
			}
		})
	}
	if _, err := tlog.InclusionProof(t.Context(), src.fetcher(), 1000, 1000); err == nil {
		t.Error("InclusionProof of entry 1000 in a tree of 1000: got nil error")
	}
}

func TestVerifyConsistency(t *testing.T) {
	entries := make([][]byte, 20)
	for i := range entries {
		entries[i] = testEntry(i)
	}
	hashes := sumdbHashes(t, entries)
	root := func(n int) []byte { return sumdbRoot(t, entries, n) }
	prove := func(old, size int) [][]byte {
		p, err := sumdbtlog.ProveTree(int64(size), int64(old), hashes)
		if err != nil {
			t.Fatal(err)
		}
		return sumdbProof(p)
	}
	empty := sha256.Sum256(nil)
	good := prove(7, 20)
	for _, tc := range []struct {
		name       string
		old, size  uint64
		oldRoot    []byte
		newRoot    []byte
		proof      [][]byte
		wantErr    error
		wantAnyErr bool
	}{
		{name: "valid", old: 7, size: 20, oldRoot: root(7), newRoot: root(20), proof: good},
		{name: "equal sizes", old: 20, size: 20, oldRoot: root(20), newRoot: root(20)},
		{name: "fork at equal sizes", old: 20, size: 20, oldRoot: root(20), newRoot: root(19), wantErr: tlog.ErrInconsistent},
		{name: "from empty tree", old: 0, size: 20, oldRoot: empty[:], newRoot: root(20)},
		{name: "empty to empty", old: 0, size: 0, oldRoot: empty[:], newRoot: empty[:]},
		{name: "from empty tree with proof", old: 0, size: 20, oldRoot: empty[:], newRoot: root(20), proof: good, wantErr: tlog.ErrInconsistent},
		{name: "from empty tree with wrong root", old: 0, size: 20, oldRoot: root(1), newRoot: root(20), wantErr: tlog.ErrInconsistent},
		{name: "tree shrank", old: 20, size: 7, oldRoot: root(20), newRoot: root(7), proof: good, wantErr: tlog.ErrInconsistent},
		{name: "proof for other sizes", old: 8, size: 20, oldRoot: root(8), newRoot: root(20), proof: good, wantErr: tlog.ErrInconsistent},
		{name: "truncated proof", old: 7, size: 20, oldRoot: root(7), newRoot: root(20), proof: good[:len(good)-1], wantErr: tlog.ErrInconsistent},
		{name: "extra proof hash", old: 7, size: 20, oldRoot: root(7), newRoot: root(20), proof: append(bytes2D(good), empty[:]), wantErr: tlog.ErrInconsistent},
		{name: "short proof hash", old: 7, size: 20, oldRoot: root(7), newRoot: root(20), proof: append(bytes2D(good[:len(good)-1]), good[len(good)-1][:31]), wantErr: tlog.ErrInconsistent},
		{name: "empty proof", old: 7, size: 20, oldRoot: root(7), newRoot: root(20), wantErr: tlog.ErrInconsistent},
		{name: "short root", old: 7, size: 20, oldRoot: root(7)[:31], newRoot: root(20), proof: good, wantAnyErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tlog.VerifyConsistency(tc.old, tc.size, tc.oldRoot, tc.newRoot, tc.proof)
			switch {
			case tc.wantAnyErr:
				if err == nil || errors.Is(err, tlog.ErrInconsistent) {
					t.Errorf("VerifyConsistency: got %v, want an error other than %v", err, tlog.ErrInconsistent)
				}
			case !errors.Is(err, tc.wantErr):
				t.Errorf("VerifyConsistency: got %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// bytes2D copies a proof so that appending to it leaves the original alone.
func bytes2D(p [][]byte) [][]byte { return append([][]byte(nil), p...) }

func sumdbProof[P ~[]sumdbtlog.Hash](p P) [][]byte {
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out
}

func flatten(p [][]byte) []byte { return bytes.Join(p, nil) }
