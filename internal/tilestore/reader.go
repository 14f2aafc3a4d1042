package tilestore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
)

// reader serves the log's resources from its directory. It implements
// tessera.LogReader.
type reader struct {
	root  string
	store *store
}

func (r *reader) ReadCheckpoint(_ context.Context) ([]byte, error) {
	return os.ReadFile(filepath.Join(r.root, layout.CheckpointPath))
}

// ReadTile returns a tile. A partial tile comes from memory while its tile
// is the rightmost of its level, and is otherwise cut from the full tile or
// read from a partial file written at a sync point.
func (r *reader) ReadTile(_ context.Context, level, index uint64, p uint8) ([]byte, error) {
	if p > 0 {
		if b, ok := r.store.partialTile(level, index, p); ok {
			return b, nil
		}
	}
	b, err := os.ReadFile(filepath.Join(r.root, layout.TilePath(level, index, p)))
	if err == nil || p == 0 || !isNotExist(err) {
		return b, err
	}
	full, ferr := os.ReadFile(filepath.Join(r.root, layout.TilePath(level, index, 0)))
	if ferr != nil {
		return nil, err
	}
	if len(full) < int(p)*32 {
		return nil, fmt.Errorf("%w: short tile", errCorrupt)
	}
	return full[:int(p)*32], nil
}

// ReadEntryBundle returns an entry bundle, cutting a partial one from the
// full bundle if the partial file is gone.
func (r *reader) ReadEntryBundle(_ context.Context, index uint64, p uint8) ([]byte, error) {
	if p > 0 {
		if b, ok := r.store.partialBundle(index, p); ok {
			return b, nil
		}
	}
	b, err := os.ReadFile(filepath.Join(r.root, layout.EntriesPath(index, p)))
	if err == nil || p == 0 || !isNotExist(err) {
		return b, err
	}
	full, ferr := os.ReadFile(filepath.Join(r.root, layout.EntriesPath(index, 0)))
	if ferr != nil {
		return nil, err
	}
	ents, perr := splitEntries(full, -1)
	if perr != nil || len(ents) < int(p) {
		return nil, errors.Join(errCorrupt, perr)
	}
	n := 0
	for _, e := range ents[:p] {
		n += len(e)
	}
	return full[:n], nil
}

func (r *reader) IntegratedSize(context.Context) (uint64, error) {
	size, _ := r.store.current()
	return size, nil
}

func (r *reader) NextIndex(ctx context.Context) (uint64, error) { return r.IntegratedSize(ctx) }

func leafHash(entry []byte) []byte { return rfc6962.DefaultHasher.HashLeaf(entry) }

func emptyRoot() []byte {
	h := sha256.Sum256(nil)
	return h[:]
}

// FullResourceFile opens the file of a full tile or bundle, which never
// changes once written, so that a server can send it straight from the file
// (sendfile) instead of through a buffer.
func (r *reader) FullResourceFile(entries bool, level, index uint64) (*os.File, error) {
	p := layout.TilePath(level, index, 0)
	if entries {
		p = layout.EntriesPath(index, 0)
	}
	return os.Open(filepath.Join(r.root, p))
}
