package logserver

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"

	"github.com/vitrine-dev/vitrine/tlog"
)

// proofTiles bounds the hash tiles a Log keeps for its proofs. A full tile
// with its inner nodes takes 16 KiB, so the bound is 4 MiB: room for the
// upper tiles every proof shares and the bottom tiles of the entries being
// read, which are mostly the newest.
const proofTiles = 256

// prover builds inclusion proofs from a log's hash tiles, as ProveAt does,
// but keeps the tiles it has read, least recently used first out, with the
// hash of every subtree inside each one computed once. Building a proof
// then costs a few lookups instead of reading, parsing and rehashing up to
// 255 hashes of every tile on the path to the root.
//
// A tile of a given width never changes in an append-only log, so a kept
// tile serves the proofs of every tree size that has it; the rightmost,
// partial tiles of each size are separate tiles, read once per size.
// Concurrent proofs that need a tile not yet kept read it once. Its methods
// are safe for concurrent use.
type prover struct {
	f   tlog.Fetcher
	max int

	mu    sync.Mutex
	tiles map[tileKey]*nodeTile
	ring  nodeTile // ring.next is the most recently used, ring.prev the least
}

// tileKey names a hash tile; width 0 is a full tile.
type tileKey struct {
	level, index uint64
	width        uint8
}

// nodeTile is a hash tile with its inner nodes: rows[k] holds the hashes of
// the complete subtrees of 2^k tile leaves, left to right.
type nodeTile struct {
	key   tileKey
	ready chan struct{} // closed once rows or err is set
	rows  [layout.TileHeight][][sha256.Size]byte
	err   error

	prev, next *nodeTile
}

func newProver(f tlog.Fetcher, max int) *prover {
	p := &prover{f: f, max: max, tiles: make(map[tileKey]*nodeTile)}
	p.ring.prev, p.ring.next = &p.ring, &p.ring
	return p
}

// proveAt builds the tlog-proof of index in the tree of checkpoint cp.
func (p *prover) proveAt(ctx context.Context, cp *tlog.Checkpoint, index uint64) (*tlog.Proof, error) {
	if index >= cp.Size {
		return nil, fmt.Errorf("proving index %d: checkpoint has only %d entries", index, cp.Size)
	}
	nodes, err := proof.Inclusion(index, cp.Size)
	if err != nil {
		return nil, fmt.Errorf("proving index %d: %w", index, err)
	}
	// The proof's hashes are copies: callers own them.
	buf := make([]byte, sha256.Size*len(nodes.IDs))
	hashes := make([][]byte, len(nodes.IDs))
	var t *nodeTile
	for i, id := range nodes.IDs {
		level, tileIndex, row, col := layout.NodeCoordsToTileAddress(uint64(id.Level), id.Index)
		key := tileKey{level, tileIndex, layout.PartialTileSize(level, tileIndex, cp.Size)}
		if t == nil || t.key != key {
			if t, err = p.tile(ctx, key); err != nil {
				return nil, fmt.Errorf("proving index %d: %w", index, err)
			}
		}
		if col >= uint64(len(t.rows[row])) {
			return nil, fmt.Errorf("proving index %d: node %d at level %d is not in tile %s", index, id.Index, id.Level, layout.TilePath(key.level, key.index, key.width))
		}
		hashes[i] = buf[i*sha256.Size : (i+1)*sha256.Size : (i+1)*sha256.Size]
		copy(hashes[i], t.rows[row][col][:])
	}
	hashes, err = nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
	if err != nil {
		return nil, fmt.Errorf("proving index %d: %w", index, err)
	}
	return &tlog.Proof{Index: index, Hashes: hashes, Checkpoint: cp.Raw}, nil
}

// tile returns the tile of key, reading it unless it is kept or another
// proof is reading it.
func (p *prover) tile(ctx context.Context, key tileKey) (*nodeTile, error) {
	p.mu.Lock()
	if t, ok := p.tiles[key]; ok {
		p.unlink(t)
		p.pushFront(t)
		p.mu.Unlock()
		select {
		case <-t.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if t.err == nil {
			return t, nil
		}
		// The read this proof waited for failed, perhaps only because
		// its caller gave up: read the tile for this proof alone.
		t = &nodeTile{key: key}
		t.err = p.read(ctx, t)
		return t, t.err
	}
	t := &nodeTile{key: key, ready: make(chan struct{})}
	p.tiles[key] = t
	p.pushFront(t)
	if len(p.tiles) > p.max {
		old := p.ring.prev
		p.unlink(old)
		delete(p.tiles, old.key)
	}
	p.mu.Unlock()

	t.err = p.read(ctx, t)
	if t.err != nil {
		p.mu.Lock()
		if p.tiles[key] == t {
			p.unlink(t)
			delete(p.tiles, key)
		}
		p.mu.Unlock()
	}
	close(t.ready)
	return t, t.err
}

// read reads t's tile and hashes its inner nodes.
func (p *prover) read(ctx context.Context, t *nodeTile) error {
	path := layout.TilePath(t.key.level, t.key.index, t.key.width)
	b, err := p.f.ReadTile(ctx, t.key.level, t.key.index, t.key.width)
	if err != nil {
		return fmt.Errorf("reading tile %s: %w", path, err)
	}
	width := int(t.key.width)
	if width == 0 {
		width = layout.TileWidth
	}
	// A full tile may stand in for a missing partial one.
	if len(b) == layout.TileWidth*sha256.Size {
		b = b[:width*sha256.Size]
	}
	if len(b) != width*sha256.Size {
		return fmt.Errorf("reading tile %s: %d bytes, want %d hashes of %d bytes", path, len(b), width, sha256.Size)
	}
	n := 0
	for k := range t.rows {
		n += width >> k
	}
	all := make([][sha256.Size]byte, n)
	row := all[:width]
	for i := range row {
		copy(row[i][:], b[i*sha256.Size:])
	}
	t.rows[0] = row
	all = all[width:]
	var in [1 + 2*sha256.Size]byte
	in[0] = 1 // RFC 6962 interior node
	for k := 1; k < len(t.rows); k++ {
		below := t.rows[k-1]
		row := all[:len(below)/2]
		all = all[len(row):]
		for i := range row {
			copy(in[1:], below[2*i][:])
			copy(in[1+sha256.Size:], below[2*i+1][:])
			row[i] = sha256.Sum256(in[:])
		}
		t.rows[k] = row
	}
	if len(all) != 0 {
		return errors.New("internal error: tile rows miscounted")
	}
	return nil
}

func (p *prover) unlink(t *nodeTile) {
	t.prev.next, t.next.prev = t.next, t.prev
	t.prev, t.next = nil, nil
}

func (p *prover) pushFront(t *nodeTile) {
	t.prev, t.next = &p.ring, p.ring.next
	p.ring.next.prev = t
	p.ring.next = t
}
