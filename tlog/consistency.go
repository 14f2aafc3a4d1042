package tlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	merkleproof "github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
)

// ErrInconsistent means that a consistency proof does not show the larger
// tree to extend the smaller one: the log forked, rewrote its history or
// shrank, or the proof is malformed.
var ErrInconsistent = errors.New("trees are inconsistent")

// ConsistencyProof builds the RFC 6962 consistency proof from the tree of
// oldSize leaves to the tree of newSize leaves out of the log's hash tiles.
// The proof is empty when oldSize is 0 or equals newSize. The tiles are
// trusted as served: check the proof with [VerifyConsistency] against roots
// from signed checkpoints. The error is a [*FetchError] when a tile cannot be
// read, and wraps [ErrMalformed] when one cannot be parsed.
func ConsistencyProof(ctx context.Context, f Fetcher, oldSize, newSize uint64) ([][]byte, error) {
	switch {
	case oldSize > newSize:
		return nil, fmt.Errorf("building consistency proof from size %d to %d: old size exceeds new size", oldSize, newSize)
	case oldSize == 0 || oldSize == newSize:
		return [][]byte{}, nil
	}
	t := &proofTiles{f: f}
	pb, err := client.NewProofBuilder(ctx, newSize, t.read)
	if err != nil {
		return nil, fmt.Errorf("building consistency proof from size %d to %d: %w", oldSize, newSize, t.cause(err))
	}
	p, err := pb.ConsistencyProof(ctx, oldSize, newSize)
	if err != nil {
		return nil, fmt.Errorf("building consistency proof from size %d to %d: %w", oldSize, newSize, t.cause(err))
	}
	return p, nil
}

// InclusionProof builds the RFC 6962 inclusion proof of the entry at index in
// the tree of size leaves out of the log's hash tiles. Check it with
// [github.com/transparency-dev/merkle/proof.VerifyInclusion] against a root
// from a signed checkpoint. The errors are those of [ConsistencyProof].
func InclusionProof(ctx context.Context, f Fetcher, index, size uint64) ([][]byte, error) {
	if index >= size {
		return nil, fmt.Errorf("building inclusion proof of entry %d in tree of size %d: index out of range", index, size)
	}
	t := &proofTiles{f: f}
	pb, err := client.NewProofBuilder(ctx, size, t.read)
	if err != nil {
		return nil, fmt.Errorf("building inclusion proof of entry %d in tree of size %d: %w", index, size, t.cause(err))
	}
	p, err := pb.InclusionProof(ctx, index)
	if err != nil {
		return nil, fmt.Errorf("building inclusion proof of entry %d in tree of size %d: %w", index, size, t.cause(err))
	}
	return p, nil
}

// VerifyConsistency checks that proof shows the tree of newSize leaves with
// root newRoot to extend the tree of oldSize leaves with root oldRoot. The
// empty tree, whose root is the SHA-256 of nothing, is extended by every tree
// with an empty proof. A log that shrank, a fork at equal sizes and a proof
// that does not check out all give an error wrapping [ErrInconsistent]; roots
// of the wrong length give a plain error. It is safe for concurrent use.
func VerifyConsistency(oldSize, newSize uint64, oldRoot, newRoot []byte, proof [][]byte) error {
	if len(oldRoot) != sha256.Size || len(newRoot) != sha256.Size {
		return fmt.Errorf("verifying consistency from size %d to %d: roots are %d and %d bytes, want %d",
			oldSize, newSize, len(oldRoot), len(newRoot), sha256.Size)
	}
	switch {
	case oldSize > newSize:
		return fmt.Errorf("verifying consistency from size %d to %d: %w: the tree shrank", oldSize, newSize, ErrInconsistent)
	case oldSize == 0:
		empty := sha256.Sum256(nil)
		switch {
		case len(proof) != 0:
			return fmt.Errorf("verifying consistency from size 0 to %d: %w: proof from the empty tree has %d hashes, want none", newSize, ErrInconsistent, len(proof))
		case !bytes.Equal(oldRoot, empty[:]):
			return fmt.Errorf("verifying consistency from size 0 to %d: %w: root of the empty tree is %x, want %x", newSize, ErrInconsistent, oldRoot, empty)
		case newSize == 0 && !bytes.Equal(newRoot, empty[:]):
			return fmt.Errorf("verifying consistency from size 0 to 0: %w: root of the empty tree is %x, want %x", ErrInconsistent, newRoot, empty)
		}
		return nil
	}
	for i, h := range proof {
		if len(h) != sha256.Size {
			return fmt.Errorf("verifying consistency from size %d to %d: %w: proof hash %d is %d bytes, want %d",
				oldSize, newSize, ErrInconsistent, i, len(h), sha256.Size)
		}
	}
	if err := merkleproof.VerifyConsistency(rfc6962.DefaultHasher, oldSize, newSize, proof, oldRoot, newRoot); err != nil {
		return fmt.Errorf("verifying consistency from size %d to %d: %w: %v", oldSize, newSize, ErrInconsistent, err)
	}
	return nil
}

// proofTiles reads tiles for Tessera's proof builder, which reports errors
// only as text: it keeps the first error so that callers can still tell a
// fetch failure from a malformed tile.
type proofTiles struct {
	f   Fetcher
	err error
}

func (t *proofTiles) read(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	path := layout.TilePath(level, index, p)
	b, err := t.f.ReadTile(ctx, level, index, p)
	if err != nil {
		err = fetchError(ctx, path, err)
		t.keep(err)
		return nil, err
	}
	want := int(p)
	if p == 0 {
		want = tileWidth
	}
	// A full tile may stand in for a missing partial one.
	if n := len(b); n != want*sha256.Size && (p == 0 || n != tileWidth*sha256.Size) {
		err := fmt.Errorf("%s: %w: %d bytes, want %d hashes of %d bytes", path, ErrMalformed, n, want, sha256.Size)
		t.keep(err)
		return nil, err
	}
	return b, nil
}

func (t *proofTiles) keep(err error) {
	if t.err == nil {
		t.err = err
	}
}

// cause returns the error that reading a tile gave, if any, in place of
// the proof builder's rendering of it.
func (t *proofTiles) cause(err error) error {
	if t.err != nil {
		return t.err
	}
	return err
}
