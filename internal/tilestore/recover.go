package tilestore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/transparency-dev/tessera/api/layout"

	"github.com/vitrine-dev/vitrine/internal/atomicfile"
)

const markerFile = "synced"

// marker records the size up to which tiles and bundles are durable.
type marker struct {
	Size uint64 `json:"size"`
}

func writeMarker(root string, size uint64) error {
	b, _ := json.Marshal(marker{Size: size})
	return atomicfile.Write(filepath.Join(root, stateDir, markerFile), b, 0o644)
}

func readMarker(root string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(root, stateDir, markerFile))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var m marker
	if err := json.Unmarshal(b, &m); err != nil {
		return 0, fmt.Errorf("%w: sync marker: %v", errCorrupt, err)
	}
	return m.Size, nil
}

// open locks the log directory and rebuilds the tree: the durable state at
// the sync marker, then every journal record after it.
func (s *store) open(ctx context.Context) (err error) {
	jdir := filepath.Join(s.root, stateDir, "journal")
	if err := os.MkdirAll(jdir, 0o755); err != nil {
		return fmt.Errorf("creating log directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(s.root, stateDir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return fmt.Errorf("log %s is in use by another process: %w", s.root, err)
	}
	s.lock = lock
	defer func() {
		if err != nil {
			s.lock.Close()
			s.lock = nil
		}
	}()
	return s.rebuild(ctx)
}

// rebuild recovers the tree from the log directory, which the caller has
// locked: the durable state at the sync marker, then every journal record
// after it, cutting a torn final record. Opening runs it, and so does a
// broken store recovering in process (health.go), on a fresh store whose
// state then replaces the broken one's. On error s.j is closed.
func (s *store) rebuild(ctx context.Context) (err error) {
	jdir := filepath.Join(s.root, stateDir, "journal")
	defer func() {
		if err != nil && s.j != nil {
			s.j.close()
			s.j = nil
		}
	}()
	s.reader.store = s

	synced, err := readMarker(s.root)
	if err != nil {
		return err
	}
	s.synced = synced
	if s.cr, err = s.fetchRange(ctx, synced); err != nil {
		return fmt.Errorf("recovering log at synced size %d: %w", synced, err)
	}
	if err := s.loadRightmost(ctx, synced); err != nil {
		return fmt.Errorf("recovering log at synced size %d: %w", synced, err)
	}
	root, err := s.cr.GetRootHash(nil)
	if err != nil {
		return err
	}
	if synced == 0 {
		root = emptyRoot()
	}
	s.size, s.rootHsh = synced, root

	// Replay the journal.
	bases, err := segments(jdir)
	if err != nil {
		return err
	}
	tailBase, tailSize := synced, int64(0)
	replayed := 0
	for i, base := range bases {
		b, err := os.ReadFile(filepath.Join(jdir, segmentName(base)))
		if err != nil {
			return err
		}
		recs, good := decodeRecords(b)
		last := i == len(bases)-1
		if good != len(b) && (!last || intactRecordIn(b[good+1:])) {
			return fmt.Errorf("%w: segment %s damaged at offset %d", errCorrupt, segmentName(base), good)
		}
		for _, r := range recs {
			end := r.first + uint64(r.count)
			if end <= s.cr.End() {
				continue // already durable in the tiles
			}
			if r.first != s.cr.End() {
				return fmt.Errorf("%w: record at %d follows size %d", errCorrupt, r.first, s.cr.End())
			}
			leaves := make([][]byte, r.count)
			ents, _ := splitEntries(r.payload, int(r.count))
			for k, e := range ents {
				leaves[k] = leafHash(e[2:])
			}
			if err := s.integrate(r.payload, leaves); err != nil {
				return fmt.Errorf("replaying journal: %w", err)
			}
			replayed += int(r.count)
		}
		if last {
			tailBase, tailSize = base, int64(good) // cut a torn final record
		}
	}
	if pub, err := publishedSize(s.root); err != nil {
		return err
	} else if pub > s.cr.End() {
		return fmt.Errorf("%w: journal ends at %d entries, but a checkpoint of %d was published", errCorrupt, s.cr.End(), pub)
	}
	if s.j, err = openSegment(jdir, tailBase, tailSize); err != nil {
		return err
	}
	if replayed > 0 {
		s.logger.InfoContext(ctx, "log recovered from journal", "path", s.root, "replayed", replayed, "size", s.size)
		// Make the replayed tiles durable so the next start need not
		// replay them again.
		if err := s.syncPoint(); err != nil {
			return fmt.Errorf("recovering log: sync point: %w", err)
		}
	}
	return nil
}

// loadRightmost loads the rightmost tile of every level and the rightmost
// bundle for a tree of the given size.
func (s *store) loadRightmost(ctx context.Context, size uint64) error {
	for level := uint64(0); size>>(8*level) > 0; level++ {
		n := size >> (8 * level) // nodes at this tile level
		w := n % layout.TileWidth
		index := n / layout.TileWidth
		if w == 0 {
			// The rightmost tile is full; the next hash starts a new tile.
			index--
		}
		b, err := s.reader.ReadTile(ctx, level, index, uint8(w))
		if err != nil {
			return err
		}
		if want := int(cmp.Or(w, layout.TileWidth)) * 32; len(b) != want {
			return fmt.Errorf("%w: tile %s has %d bytes, want %d", errCorrupt, layout.TilePath(level, index, uint8(w)), len(b), want)
		}
		s.tiles[level] = &tileBuf{index: index, hashes: b}
	}
	if w := size % layout.EntryBundleWidth; w > 0 {
		b, err := s.reader.ReadEntryBundle(ctx, size/layout.EntryBundleWidth, uint8(w))
		if err != nil {
			return err
		}
		s.bundle, s.bundleN = b, int(w)
	}
	return nil
}

func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || (err != nil && strings.Contains(err.Error(), "no such file"))
}

// intactRecordIn reports whether an intact record starts anywhere in b:
// damage followed by intact records is not a torn tail.
func intactRecordIn(b []byte) bool {
	for i := 0; ; i++ {
		k := bytes.Index(b[i:], []byte(recordMagic))
		if k < 0 {
			return false
		}
		i += k
		if recs, _ := decodeRecords(b[i:]); len(recs) > 0 {
			return true
		}
	}
}

// publishedSize is the size of the published checkpoint, 0 if there is
// none or it is torn (it is rewritten on opening).
func publishedSize(root string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(root, layout.CheckpointPath))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	lines := strings.SplitN(string(b), "\n", 3)
	if len(lines) < 3 {
		return 0, nil
	}
	n, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return 0, nil
	}
	return n, nil
}
