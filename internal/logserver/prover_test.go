package logserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"

	"github.com/vitrine-dev/vitrine/tlog"
)

// memTiles serves the hash tiles of a tree of leaves from memory, as the
// Fetcher contract says, and counts the reads of every tile.
type memTiles struct {
	levels [][][]byte // levels[k][j] is the hash of the j-th complete subtree of 2^k leaves

	mu    sync.Mutex
	reads map[tileKey]int
	fail  error // returned by every ReadTile while set
	short bool  // serve tiles one hash short
}

func newMemTiles(n int) *memTiles {
	m := &memTiles{reads: make(map[tileKey]int)}
	row := make([][]byte, n)
	for i := range row {
		row[i] = rfc6962.DefaultHasher.HashLeaf(fmt.Appendf(nil, "leaf %d", i))
	}
	for len(row) > 0 {
		m.levels = append(m.levels, row)
		next := make([][]byte, len(row)/2)
		for j := range next {
			next[j] = rfc6962.DefaultHasher.HashChildren(row[2*j], row[2*j+1])
		}
		row = next
	}
	return m
}

func (m *memTiles) ReadTile(_ context.Context, level, index uint64, p uint8) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads[tileKey{level, index, p}]++
	if m.fail != nil {
		return nil, m.fail
	}
	width := uint64(p)
	if width == 0 {
		width = layout.TileWidth
	}
	k := int(level) * layout.TileHeight
	if k >= len(m.levels) || uint64(len(m.levels[k])) < index*layout.TileWidth+width {
		return nil, fs.ErrNotExist
	}
	var b []byte
	for _, h := range m.levels[k][index*layout.TileWidth : index*layout.TileWidth+width] {
		b = append(b, h...)
	}
	if m.short {
		b = b[:len(b)-sha256.Size]
	}
	return b, nil
}

func (m *memTiles) ReadCheckpoint(context.Context) ([]byte, error) { return nil, fs.ErrNotExist }

func (m *memTiles) ReadEntryBundle(context.Context, uint64, uint8) ([]byte, error) {
	return nil, fs.ErrNotExist
}

// root returns the root hash of the tree of the first size leaves.
func (m *memTiles) root(size uint64) []byte {
	r := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewEmptyRange(0)
	for _, h := range m.levels[0][:size] {
		r.Append(h, nil)
	}
	root, _ := r.GetRootHash(nil)
	return root
}

// TestProverMatchesProveAt checks the cached prover against Tessera's proof
// builder (ProveAt) and against the root, for trees of one to three tile
// levels, full and partial, with one prover for them all and a bound small
// enough that tiles are evicted.
func TestProverMatchesProveAt(t *testing.T) {
	const n = 65536 + 3*256 + 7
	m := newMemTiles(n)
	p := newProver(m, 8)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []uint64{1, 2, 3, 255, 256, 257, 511, 512, 513, 700, 65535, 65536, 65537, n, 300, 70} {
		root := m.root(size)
		cp := &tlog.Checkpoint{Size: size, Hash: root, Raw: []byte(fmt.Sprintf("checkpoint %d\n", size))}
		var indexes []uint64
		if size <= 1024 {
			for i := range size {
				indexes = append(indexes, i)
			}
		} else {
			indexes = []uint64{0, 1, 255, 256, size - 257, size - 256, size - 2, size - 1}
			for range 200 {
				indexes = append(indexes, rng.Uint64N(size))
			}
		}
		for _, i := range indexes {
			got, err := p.proveAt(ctx, cp, i)
			if err != nil {
				t.Fatalf("size %d index %d: %v", size, i, err)
			}
			want, err := ProveAt(ctx, m, cp, i)
			if err != nil {
				t.Fatal(err)
			}
			if got.Index != i || !bytes.Equal(got.Checkpoint, cp.Raw) || len(got.Hashes) != len(want.Hashes) {
				t.Fatalf("size %d index %d: got %+v, want %+v", size, i, got, want)
			}
			for k := range want.Hashes {
				if !bytes.Equal(got.Hashes[k], want.Hashes[k]) {
					t.Fatalf("size %d index %d: hash %d = %x, ProveAt has %x", size, i, k, got.Hashes[k], want.Hashes[k])
				}
			}
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, size, m.levels[0][i], got.Hashes, root); err != nil {
				t.Fatalf("size %d index %d: %v", size, i, err)
			}
			// The proof is the caller's: changing it changes no later proof.
			for _, h := range got.Hashes {
				clear(h)
			}
		}
		if len(p.tiles) > 8 {
			t.Fatalf("prover keeps %d tiles, bound 8", len(p.tiles))
		}
	}
	if _, err := p.proveAt(ctx, &tlog.Checkpoint{Size: 10}, 10); err == nil {
		t.Error("proved index 10 in a tree of 10 entries")
	}
}

// TestProverConcurrent proves from many goroutines against one tree size:
// every tile is read once.
func TestProverConcurrent(t *testing.T) {
	const size = 3*65536 + 1000
	m := newMemTiles(size)
	p := newProver(m, proofTiles)
	cp := &tlog.Checkpoint{Size: size, Hash: m.root(size)}
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			for k := range 50 {
				i := uint64(size - 1 - (w*50+k)%700)
				pr, err := p.proveAt(t.Context(), cp, i)
				if err != nil {
					t.Error(err)
					return
				}
				if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, size, m.levels[0][i], pr.Hashes, cp.Hash); err != nil {
					t.Errorf("index %d: %v", i, err)
				}
			}
		})
	}
	wg.Wait()
	for key, n := range m.reads {
		if n != 1 {
			t.Errorf("tile %s read %d times", layout.TilePath(key.level, key.index, key.width), n)
		}
	}
}

// TestProverErrors checks that a tile that could not be read, or was
// malformed, fails the proof and is not kept.
func TestProverErrors(t *testing.T) {
	const size = 1000
	m := newMemTiles(size)
	p := newProver(m, proofTiles)
	cp := &tlog.Checkpoint{Size: size, Hash: m.root(size)}
	broken := errors.New("disk on fire")
	m.fail = broken
	if _, err := p.proveAt(t.Context(), cp, 5); !errors.Is(err, broken) {
		t.Errorf("proof with tiles failing = %v, want %v", err, broken)
	}
	m.fail = nil
	m.short = true
	if _, err := p.proveAt(t.Context(), cp, 5); err == nil {
		t.Error("proof from short tiles succeeded")
	}
	m.short = false
	if len(p.tiles) != 0 {
		t.Errorf("%d tiles kept after failed reads", len(p.tiles))
	}
	pr, err := p.proveAt(t.Context(), cp, 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, 5, size, m.levels[0][5], pr.Hashes, cp.Hash); err != nil {
		t.Error(err)
	}
	if _, err := p.proveAt(t.Context(), &tlog.Checkpoint{Size: size + 300}, size+200); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("proof beyond the tiles = %v, want %v", err, fs.ErrNotExist)
	}
}

// TestVerifiedCheckpoint checks that the checkpoint a log verified once is
// handed out as copies, and that other bytes are verified afresh.
func TestVerifiedCheckpoint(t *testing.T) {
	l, _ := openTest(t)
	ctx := t.Context()
	i, err := l.Append(ctx, []byte("entry"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.AwaitWitnessed(ctx, i)
	if err != nil {
		t.Fatal(err)
	}
	raw := bytes.Clone(a.Raw)
	clear(a.Raw)
	clear(a.Hash)
	b, err := l.AwaitWitnessed(ctx, i)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Raw, raw) || bytes.Equal(b.Hash, a.Hash) {
		t.Fatal("changing a returned checkpoint changed the next one")
	}
	// One byte of the log's signature changed: refused, though a
	// checkpoint with the same text verified.
	bad := bytes.Clone(raw)
	// A character in the middle of the log's signature, where every bit
	// counts (the last ones of a base64 string may be padding).
	sig := bytes.Index(bad, []byte("— "+l.Origin()+" "))
	if sig < 0 {
		t.Fatalf("no signature of %s in\n%s", l.Origin(), bad)
	}
	end := sig + bytes.IndexByte(bad[sig:], '\n')
	mid := (sig + len("— "+l.Origin()+" ") + end) / 2
	if bad[mid] == 'A' {
		bad[mid] = 'B'
	} else {
		bad[mid] = 'A'
	}
	if _, err := l.verifyCheckpoint(bad); err == nil {
		t.Error("a checkpoint with a broken signature verified")
	}
	if c, err := l.verifyCheckpoint(raw); err != nil || !bytes.Equal(c.Raw, raw) {
		t.Errorf("the published checkpoint: %v", err)
	}
	pr, err := l.Prove(ctx, i)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pr.Verify(tlog.LeafHash([]byte("entry")), l.Verifier(), l.Policy()); err != nil {
		t.Error(err)
	}
}
