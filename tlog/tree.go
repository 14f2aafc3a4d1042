package tlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/tessera/api/layout"
)

// Fetcher reads the public resources of a C2SP tlog-tiles log.
//
// When p > 0, ReadTile and ReadEntryBundle must fall back to the full
// resource if the partial one is absent (a log may delete partial resources
// once it has grown past them), and they must return an error wrapping
// [io/fs.ErrNotExist] when neither exists. Tessera's
// [github.com/transparency-dev/tessera/client.HTTPFetcher] and
// [github.com/transparency-dev/tessera/client.FileFetcher] satisfy this
// contract. Implementations must be safe for concurrent use: [VerifyTree]
// calls them from several goroutines.
type Fetcher interface {
	ReadCheckpoint(ctx context.Context) ([]byte, error)
	ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error)
	ReadEntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error)
}

var (
	// ErrTreeMismatch means that the entries a log serves do not hash to the
	// root it claims for that tree size.
	ErrTreeMismatch = errors.New("tree mismatch")
	// ErrTileMismatch means that a hash tile a log serves differs from the
	// hashes recomputed from its entries.
	ErrTileMismatch = errors.New("tile mismatch")
)

// FetchError reports that a log resource could not be read. It says nothing
// about the log's honesty, only about its availability: a later attempt may
// succeed. Errors from this package wrap it, so use [errors.As] to find it.
type FetchError struct {
	// Path is the tlog-tiles path of the resource, such as
	// "tile/entries/x001/234.p/17".
	Path string
	// Err is the error the Fetcher returned.
	Err error
}

func (e *FetchError) Error() string { return "fetching " + e.Path + ": " + e.Err.Error() }

// Unwrap returns the Fetcher's error, so that errors.Is(err, fs.ErrNotExist)
// tells a missing resource from other failures.
func (e *FetchError) Unwrap() error { return e.Err }

// TreeReport describes a successful [VerifyTree].
type TreeReport struct {
	// Entries is the number of entries hashed: the tree size.
	Entries uint64
	// Bundles is the number of entry bundles read.
	Bundles uint64
	// Tiles is the number of hash tiles, of all levels, compared with the
	// recomputed hashes.
	Tiles uint64
	// Duration is the wall-clock time the verification took.
	Duration time.Duration
}

// A TreeOption changes how [VerifyTree] works.
type TreeOption func(*treeOptions)

type treeOptions struct {
	concurrency int
}

// defaultConcurrency keeps enough requests in flight to hide the latency of
// an HTTP log without hammering it, and enough goroutines to use every core
// when the log is on a local disk.
const defaultConcurrency = 8

// WithConcurrency sets how many resources [VerifyTree] fetches and hashes at
// once. Values below 1 mean 1. The default is 8.
func WithConcurrency(n int) TreeOption {
	return func(o *treeOptions) { o.concurrency = max(n, 1) }
}

// tileWidth is both the number of hashes in a full tile and the number of
// entries in a full entry bundle.
const tileWidth = layout.TileWidth

// tileHash is one node hash of the tree.
type tileHash = [sha256.Size]byte

// VerifyTree recomputes the whole tree of the given size from the log's entry
// bundles and checks that its root equals root. On the way it checks that
// every hash tile the log serves for that size, at every level, holds exactly
// the recomputed hashes, so that proofs built from the tiles are sound.
//
// The leaf hash of an entry is its RFC 6962 leaf hash. Bundles and tiles are
// fetched through f, by at most the number of goroutines [WithConcurrency]
// sets. A log that has grown past size may serve full resources in place of
// partial ones; only the part the tree of this size covers is checked.
//
// The error wraps [ErrTreeMismatch] when the entries do not hash to root,
// naming the first tile, if any, that disagrees with them and so the bundle
// that probably changed; otherwise [ErrTileMismatch] when a tile differs from
// the recomputed hashes, naming the tile and the first differing hash;
// [ErrMalformed] when a bundle or tile cannot be parsed, naming it;
// and a [*FetchError] when a resource cannot be read. VerifyTree stops at the
// first malformed bundle or fetch error, but reads the whole tree when tiles
// differ, so that a tree mismatch is told from a tile mismatch.
//
// VerifyTree keeps no state between calls, so calls may run concurrently.
func VerifyTree(ctx context.Context, f Fetcher, size uint64, root []byte, opts ...TreeOption) (*TreeReport, error) {
	start := time.Now()
	o := treeOptions{concurrency: defaultConcurrency}
	for _, opt := range opts {
		opt(&o)
	}
	if len(root) != sha256.Size {
		return nil, fmt.Errorf("verifying tree of size %d: root is %d bytes, want %d", size, len(root), sha256.Size)
	}
	v := &treeVerifier{f: f, size: size, concurrency: o.concurrency}
	got, err := v.run(ctx)
	if err != nil {
		return nil, fmt.Errorf("verifying tree of size %d: %w", size, err)
	}
	if !bytes.Equal(got[:], root) {
		where := ""
		if v.fault != nil {
			where = fmt.Sprintf("; first disagreement with the log's tiles: %s: %s", v.fault.path, v.fault.what)
		}
		return nil, fmt.Errorf("verifying tree of size %d: %w: entries hash to %x, want %x%s", size, ErrTreeMismatch, got, root, where)
	}
	if v.fault != nil {
		more := ""
		if v.faults > 1 {
			more = fmt.Sprintf(" (%d tiles are wrong)", v.faults)
		}
		return nil, fmt.Errorf("verifying tree of size %d: %s: %w: %s%s", size, v.fault.path, v.fault.sentinel, v.fault.what, more)
	}
	return &TreeReport{
		Entries:  size,
		Bundles:  bundleCount(size),
		Tiles:    v.tiles.Load(),
		Duration: time.Since(start),
	}, nil
}

// treeVerifier holds the state of one VerifyTree call.
//
// Workers turn entry bundles into leaf hashes, compare them with the level-0
// tiles and reduce each full bundle to the root of its 256-leaf subtree. A
// single consumer takes those roots in index order and stacks them into the
// tiles of the levels above, whose comparisons run in goroutines of their own.
// Only one partial tile per level is held, so memory does not grow with the
// tree.
type treeVerifier struct {
	f           Fetcher
	size        uint64
	concurrency int

	// levels[l] accumulates the hashes of the level-l tile being filled;
	// levels[0] only ever holds the final partial bundle's leaf hashes.
	// Only the consumer goroutine touches it.
	levels []*tileAcc

	tiles  atomic.Uint64
	upper  sync.WaitGroup
	sem    chan struct{}
	cancel context.CancelFunc

	mu     sync.Mutex
	fatal  error      // first error that stops the walk
	fault  *tileFault // lowest wrong tile
	faults int        // number of wrong tiles
}

// tileAcc is a tile being filled with the hashes recomputed for it.
type tileAcc struct {
	hashes [tileWidth]tileHash
	n      int
	index  uint64
}

// tileFault describes a tile that differs from what the entries imply.
type tileFault struct {
	level, index uint64
	path         string
	what         string
	sentinel     error
}

// bundleResult is what a worker learns from one entry bundle.
type bundleResult struct {
	index  uint64
	root   tileHash   // root of the bundle's subtree, for a full bundle
	leaves []tileHash // leaf hashes, for the final partial bundle only
	err    error
}

func (v *treeVerifier) run(parent context.Context) (tileHash, error) {
	if v.size == 0 {
		return sha256.Sum256(nil), nil
	}
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	v.cancel = cancel
	v.sem = make(chan struct{}, v.concurrency)

	bundles := bundleCount(v.size)
	// window bounds how far workers may run ahead of the in-order consumer.
	window := make(chan struct{}, 4*v.concurrency)
	done := v.consume(ctx, v.startWorkers(ctx, bundles, window), window)
	if done == bundles && !v.failed() {
		// Every level above 0 ends in a partial tile, unless it is empty.
		for l := 1; l < len(v.levels); l++ {
			if a := v.levels[l]; a.n > 0 {
				v.checkUpper(ctx, uint64(l), a.index, uint8(a.n), slices.Clone(a.hashes[:a.n]))
			}
		}
	}
	v.upper.Wait()

	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case v.fatal != nil:
		return tileHash{}, v.fatal
	case parent.Err() != nil:
		return tileHash{}, parent.Err()
	case done != bundles:
		return tileHash{}, errors.New("internal error: bundles left unprocessed")
	}
	return v.root(), nil
}

// startWorkers checks the bundles in goroutines and returns their results,
// in any order. The channel closes once every worker has stopped.
func (v *treeVerifier) startWorkers(ctx context.Context, bundles uint64, window chan struct{}) <-chan bundleResult {
	jobs := make(chan uint64)
	results := make(chan bundleResult, v.concurrency)
	go func() {
		defer close(jobs)
		for i := range bundles {
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var workers sync.WaitGroup
	for range min(uint64(v.concurrency), bundles) {
		workers.Go(func() {
			w := new(bundleWorker)
			for i := range jobs {
				r := v.checkBundle(ctx, w, i)
				select {
				case results <- r:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	go func() {
		workers.Wait()
		close(results)
	}()
	return results
}

// consume feeds the workers' results into the levels above in bundle order,
// freeing a window slot for each, and returns how many it took. After the
// first error it only drains results, so that the workers can exit.
func (v *treeVerifier) consume(ctx context.Context, results <-chan bundleResult, window chan struct{}) uint64 {
	pending := make(map[uint64]bundleResult)
	next := uint64(0)
	for r := range results {
		if v.failed() {
			continue
		}
		pending[r.index] = r
		for {
			r, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			if r.err != nil {
				v.fail(r.err)
				break
			}
			if r.leaves != nil {
				a := v.acc(0)
				a.n = copy(a.hashes[:], r.leaves)
			} else {
				v.push(ctx, 1, r.root)
			}
			next++
			<-window
		}
	}
	return next
}

// acc returns the accumulator of level l, creating it if need be.
func (v *treeVerifier) acc(l int) *tileAcc {
	for len(v.levels) <= l {
		v.levels = append(v.levels, new(tileAcc))
	}
	return v.levels[l]
}

// push appends the root of a full tile of level l-1 to the level-l tile being
// filled, and carries full tiles upwards.
func (v *treeVerifier) push(ctx context.Context, l int, h tileHash) {
	for {
		a := v.acc(l)
		a.hashes[a.n] = h
		a.n++
		if a.n < tileWidth {
			return
		}
		v.checkUpper(ctx, uint64(l), a.index, 0, slices.Clone(a.hashes[:]))
		h = subtreeRoot(a.hashes[:])
		a.n = 0
		a.index++
		l++
	}
}

// checkUpper compares a tile above level 0 in a goroutine of its own.
func (v *treeVerifier) checkUpper(ctx context.Context, level, index uint64, p uint8, want []tileHash) {
	select {
	case v.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	v.upper.Go(func() {
		defer func() { <-v.sem }()
		if err := v.checkTile(ctx, level, index, p, want); err != nil {
			v.fail(err)
		}
	})
}

// root combines the partial tiles left at every level into the tree root:
// each set bit of the size is one perfect subtree, highest level leftmost.
func (v *treeVerifier) root() tileHash {
	var nodes []tileHash
	for l := len(v.levels) - 1; l >= 0; l-- {
		a := v.levels[l]
		if a.n == 0 {
			continue
		}
		start := 0
		for bit := layout.TileHeight - 1; bit >= 0; bit-- {
			if w := 1 << bit; a.n&w != 0 {
				nodes = append(nodes, subtreeRoot(a.hashes[start:start+w]))
				start += w
			}
		}
	}
	h := nodes[len(nodes)-1]
	for i := len(nodes) - 2; i >= 0; i-- {
		hashNode(&h, &nodes[i], &h)
	}
	return h
}

func (v *treeVerifier) fail(err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.fatal == nil {
		v.fatal = err
		v.cancel()
	}
}

func (v *treeVerifier) failed() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.fatal != nil
}

func (v *treeVerifier) recordFault(f *tileFault) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.faults++
	if v.fault == nil || f.level < v.fault.level || f.level == v.fault.level && f.index < v.fault.index {
		v.fault = f
	}
}

// bundleWorker is the scratch space of one worker, reused across bundles so
// that hashing does not allocate.
type bundleWorker struct {
	entries [][]byte
	leaves  [tileWidth]tileHash
	buf     []byte
}

// checkBundle reads, parses and hashes entry bundle i, compares the leaf
// hashes with level-0 tile i and reduces them to what the consumer needs.
func (v *treeVerifier) checkBundle(ctx context.Context, w *bundleWorker, i uint64) bundleResult {
	p := layout.PartialTileSize(0, i, v.size)
	n := int(p)
	if n == 0 {
		n = tileWidth
	}
	path := layout.EntriesPath(i, p)
	raw, err := v.f.ReadEntryBundle(ctx, i, p)
	if err != nil {
		return bundleResult{index: i, err: fetchError(ctx, path, err)}
	}
	entries, err := parseBundle(w.entries[:0], raw)
	w.entries = entries[:0]
	if err != nil {
		return bundleResult{index: i, err: fmt.Errorf("%s: %w: %v", path, ErrMalformed, err)}
	}
	// A full bundle may stand in for a missing partial one.
	if len(entries) != n && (p == 0 || len(entries) != tileWidth) {
		return bundleResult{index: i, err: fmt.Errorf("%s: %w: %d entries, want %d", path, ErrMalformed, len(entries), n)}
	}
	leaves := w.leaves[:n]
	for j, e := range entries[:n] {
		w.buf = append(append(w.buf[:0], 0), e...)
		leaves[j] = sha256.Sum256(w.buf)
	}
	if err := v.checkTile(ctx, 0, i, p, leaves); err != nil {
		return bundleResult{index: i, err: err}
	}
	if p > 0 {
		return bundleResult{index: i, leaves: slices.Clone(leaves)}
	}
	return bundleResult{index: i, root: subtreeRoot(leaves)}
}

// checkTile compares the tile the log serves at (level, index, p) with want.
// A tile that differs or cannot be parsed is recorded as a fault, and the walk
// goes on; only an error reading it is returned.
func (v *treeVerifier) checkTile(ctx context.Context, level, index uint64, p uint8, want []tileHash) error {
	path := layout.TilePath(level, index, p)
	raw, err := v.f.ReadTile(ctx, level, index, p)
	if err != nil {
		return fetchError(ctx, path, err)
	}
	v.tiles.Add(1)
	// A full tile may stand in for a missing partial one.
	if n := len(raw); n%sha256.Size != 0 || n != len(want)*sha256.Size && (p == 0 || n != tileWidth*sha256.Size) {
		v.recordFault(&tileFault{level: level, index: index, path: path, sentinel: ErrMalformed,
			what: fmt.Sprintf("%d bytes, want %d hashes of %d bytes", n, len(want), sha256.Size)})
		return nil
	}
	for j := range want {
		if !bytes.Equal(raw[j*sha256.Size:(j+1)*sha256.Size], want[j][:]) {
			v.recordFault(&tileFault{level: level, index: index, path: path, sentinel: ErrTileMismatch,
				what: describeHash(level, index, j, v.size)})
			return nil
		}
	}
	return nil
}

// describeHash says where hash j of a tile comes from, naming the resource
// to suspect when it differs.
func describeHash(level, index uint64, j int, size uint64) string {
	child := index*tileWidth + uint64(j)
	if level == 0 {
		return fmt.Sprintf("hash %d differs from the leaf hash of entry %d (%s)",
			j, child, layout.EntriesPath(index, layout.PartialTileSize(0, index, size)))
	}
	return fmt.Sprintf("hash %d differs from the recomputed root of %s", j, layout.TilePath(level-1, child, 0))
}

// bundleCount returns the number of entry bundles in a tree of size leaves.
func bundleCount(size uint64) uint64 {
	n := size / tileWidth
	if size%tileWidth != 0 {
		n++
	}
	return n
}

func fetchError(ctx context.Context, path string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return &FetchError{Path: path, Err: err}
}

// parseBundle splits a C2SP tlog-tiles entry bundle into its entries, each a
// big-endian uint16 length followed by that many bytes, appending them to dst.
// The entries alias b. It rejects a bundle of more than 256 entries or with
// bytes left over.
func parseBundle(dst [][]byte, b []byte) ([][]byte, error) {
	for len(b) > 0 {
		if len(dst) == tileWidth {
			return dst, fmt.Errorf("%d trailing bytes after entry %d", len(b), tileWidth-1)
		}
		if len(b) < 2 {
			return dst, fmt.Errorf("entry %d: truncated length", len(dst))
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if n > len(b) {
			return dst, fmt.Errorf("entry %d: length %d, but only %d bytes left", len(dst), n, len(b))
		}
		dst = append(dst, b[:n:n])
		b = b[n:]
	}
	return dst, nil
}

// subtreeRoot returns the root of the perfect subtree whose nodes at its
// lowest level are hs, whose length must be a power of two. It overwrites hs.
func subtreeRoot(hs []tileHash) tileHash {
	for n := len(hs); n > 1; n /= 2 {
		for k := 0; k < n/2; k++ {
			hashNode(&hs[k], &hs[2*k], &hs[2*k+1])
		}
	}
	return hs[0]
}

// hashNode sets dst to the RFC 6962 hash of the interior node with children
// l and r. dst may alias l or r.
func hashNode(dst, l, r *tileHash) {
	var b [1 + 2*sha256.Size]byte
	b[0] = 1
	copy(b[1:], l[:])
	copy(b[1+sha256.Size:], r[:])
	*dst = sha256.Sum256(b[:])
}
