// Package tilestore is a Tessera storage driver for a POSIX file system that
// makes each batch durable with one fdatasync of a write-ahead journal,
// instead of syncing every tile and bundle file it touches.
//
// The files it serves follow the C2SP tlog-tiles layout exactly, as
// Tessera's own POSIX driver lays them out (checkpoint, tile/<L>/<N>,
// tile/entries/<N>, partial ".p/<W>" variants), so Tessera's client,
// FileFetcher and fsck read a tilestore directory as they read any other.
//
// # Batching
//
// Appends gather in a queue that one sequencer drains: it takes everything
// queued (up to the batch limit), writes it to the journal, syncs, then
// integrates it. While it syncs, new appends gather into the next batch, so
// a lone client waits for one sync while a thousand clients share each one:
// batch size follows load without a timer.
//
// # Durability
//
// An index is returned only after the journal record holding the entry is
// synced. Tiles and bundles are written without syncing; at sync points
// (every SegmentSize bytes of journal, and at shutdown) the file system is
// synced, a marker records the synced size, and older journal segments are
// removed. Opening a store rebuilds the tree state at the marker from the
// tiles and replays the journal on top of it, cutting a torn final record.
//
// # Failures
//
// A failed write or sync breaks the store: it refuses appends (ErrBroken)
// and recovers in process, rebuilding itself from the journal as opening
// does once the file system takes writes again (health.go).
// [Driver.Health] reports its state.
package tilestore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/sys/unix"
)

// Config configures a store.
type Config struct {
	// Path is the directory holding the log.
	Path string
	// HTTPClient reaches the witnesses when checkpoints are published.
	HTTPClient *http.Client
	// SegmentSize is the journal size that triggers a sync point
	// (default 64 MiB).
	SegmentSize int64
	// SyncInterval is the longest time between sync points while the log
	// grows (default 10s). It bounds how much journal a restart replays.
	SyncInterval time.Duration
	// Logger receives operational messages (default slog.Default()).
	Logger *slog.Logger
	// RecoveryInterval is how long a broken store waits before it first
	// tries to recover (default 1s); the wait doubles after each failed
	// attempt, up to RecoveryIntervalMax (default 30s).
	RecoveryInterval    time.Duration
	RecoveryIntervalMax time.Duration
	// OnBatch, if set, is called by the sequencer with the number of
	// entries of every batch it made durable (metrics): it must not block.
	OnBatch func(entries int)

	// faults injects failures of file operations (tests).
	faults func(op, path string) error
}

// Driver is a Tessera driver; pass it to tessera.NewAppender.
type Driver struct {
	cfg  Config
	done chan struct{}
	st   atomic.Pointer[store] // the open store, for Health
}

// New returns a driver for the log in cfg.Path.
func New(cfg Config) *Driver {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.SegmentSize <= 0 {
		cfg.SegmentSize = 64 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = 10 * time.Second
	}
	if cfg.RecoveryInterval <= 0 {
		cfg.RecoveryInterval = time.Second
	}
	if cfg.RecoveryIntervalMax <= 0 {
		cfg.RecoveryIntervalMax = 30 * time.Second
	}
	cfg.RecoveryIntervalMax = max(cfg.RecoveryIntervalMax, cfg.RecoveryInterval)
	return &Driver{cfg: cfg, done: make(chan struct{})}
}

// Wait blocks until the appender's context has ended and the store has
// made everything durable and released the log directory.
func (d *Driver) Wait() { <-d.done }

const stateDir = ".state"

// Appender opens the log, recovering it from its journal, and starts the
// sequencer and the checkpoint publisher. It implements Tessera's appender
// lifecycle; the goroutines stop when ctx ends.
func (d *Driver) Appender(ctx context.Context, opts *tessera.AppendOptions) (*tessera.Appender, tessera.LogReader, error) {
	s := &store{
		root:     d.cfg.Path,
		logger:   d.cfg.Logger,
		segSize:  d.cfg.SegmentSize,
		syncIvl:  d.cfg.SyncInterval,
		recIvl:   d.cfg.RecoveryInterval,
		recMax:   d.cfg.RecoveryIntervalMax,
		faults:   d.cfg.faults,
		onBatch:  d.cfg.OnBatch,
		maxBatch: int(max(1, opts.BatchMaxSize())),
		maxQueue: int(opts.PushbackMaxOutstanding()),
		wake:     make(chan struct{}, 1),
		tiles:    map[uint64]*tileBuf{},
		dirs:     map[string]bool{},
		cpNotify: make(chan struct{}, 1),
		pubKick:  make(chan struct{}, 1),
		done:     d.done,
	}
	s.reader = &reader{root: s.root}
	if err := s.open(ctx); err != nil {
		return nil, nil, err
	}
	s.newCP = opts.CheckpointPublisher(s.reader, d.cfg.HTTPClient)
	// Publish once before returning, as Tessera's drivers do, so that a log
	// whose witnesses cannot be reached says so at start. A failure is not
	// fatal: the publisher keeps trying, and nothing unwitnessed is served.
	if err := s.publish(ctx, true); err != nil {
		s.logger.WarnContext(ctx, "first checkpoint not published yet", "err", err)
	}
	d.st.Store(s)
	go s.sequence(ctx)
	go s.publishLoop(ctx, opts.CheckpointInterval(), opts.CheckpointRepublishInterval())
	return &tessera.Appender{Add: s.add}, s.reader, nil
}

// store is one open log.
type store struct {
	root     string
	logger   *slog.Logger
	segSize  int64
	syncIvl  time.Duration
	recIvl   time.Duration // first wait before recovering
	recMax   time.Duration // longest wait between recovery attempts
	faults   func(op, path string) error
	onBatch  func(entries int)
	maxBatch int
	maxQueue int
	reader   *reader
	newCP    func(context.Context, uint64, []byte) ([]byte, error)
	lock     *os.File

	mu      sync.Mutex
	queue   []pending
	wake    chan struct{}
	broken  error       // why the store broke; nil while healthy
	refusal error       // what refused appends get while broken
	health  Health      // guarded by mu; set with setHealth
	down    atomic.Bool // health.State != Healthy, read without mu
	size    uint64      // integrated size, guarded by mu
	rootHsh []byte      // root at size, guarded by mu

	// Owned by the sequencer goroutine (and open before it starts).
	j  *journal
	cr *compact.Range
	// tmu guards tiles and bundle, which the reader serves partial
	// resources from, and cr, whose size says which bundle is being filled.
	tmu     sync.RWMutex
	tiles   map[uint64]*tileBuf // level -> rightmost tile
	bundle  []byte              // rightmost bundle's entries
	bundleN int
	dirs    map[string]bool
	writes  []fileWrite
	// avail is the least free space seen since the store broke or
	// last failed to recover (health.go).
	avail uint64

	done      chan struct{}
	cpNotify  chan struct{}
	pubKick   chan struct{} // publish now, whatever the backoff
	synced    uint64        // size at the last sync point
	published uint64
	pubAt     time.Time
}

type pending struct {
	e   *tessera.Entry
	res *result
}

// result is a future's value.
type result struct {
	done chan struct{}
	idx  uint64
	err  error
}

func (r *result) get() (tessera.Index, error) {
	<-r.done
	return tessera.Index{Index: r.idx}, r.err
}

// tileBuf is the rightmost tile of one level.
type tileBuf struct {
	index  uint64
	hashes []byte // 32 bytes per hash, at most 256 hashes
}

type fileWrite struct {
	path string
	data []byte
}

var rangeFactory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

func (s *store) add(_ context.Context, e *tessera.Entry) tessera.IndexFuture {
	r := &result{done: make(chan struct{})}
	var refused error
	s.mu.Lock()
	switch {
	case s.broken != nil:
		refused = s.refusal
		if refused == nil {
			refused = s.broken
		}
		s.health.Refused++
	case s.maxQueue > 0 && len(s.queue) >= s.maxQueue:
		refused = tessera.ErrPushback
	default:
		s.queue = append(s.queue, pending{e, r})
	}
	s.mu.Unlock()
	if refused != nil {
		r.err = refused
		close(r.done)
		return r.get
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return r.get
}

// sequence is the single writer: it drains the queue batch by batch.
func (s *store) sequence(ctx context.Context) {
	defer s.shutdown()
	var batch []pending
	tick := time.NewTicker(s.syncIvl)
	defer tick.Stop()
	// While the store is broken, retry is armed for the next recovery
	// attempt, and watch ticks to see whether space came back, which
	// calls for an attempt at once (health.go).
	var retry *time.Timer
	var watch *time.Ticker
	defer func() {
		if retry != nil {
			retry.Stop()
		}
		if watch != nil {
			watch.Stop()
		}
	}()
	for {
		var retryC, watchC <-chan time.Time
		if retry != nil {
			retryC = retry.C
		}
		if watch != nil {
			watchC = watch.C
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if !s.isBroken() && s.j.size > 0 {
				if err := s.syncPoint(); err != nil {
					s.fail(fmt.Errorf("%w: sync point: %w", errBroken, err))
				}
			}
		case <-retryC:
			retry = nil
			s.tryRecover(ctx)
		case <-watchC:
			if s.spaceReturned() {
				if retry != nil {
					retry.Stop()
					retry = nil
				}
				s.tryRecover(ctx)
			}
		case <-s.wake:
		}
		batch = s.drain(ctx, batch)
		switch broken := s.isBroken(); {
		case broken && retry == nil:
			s.mu.Lock()
			n := s.health.Attempts
			s.mu.Unlock()
			retry = time.NewTimer(s.recoveryDelay(n))
			if watch == nil && s.outOfSpace() {
				watch = time.NewTicker(spaceWatch)
			}
		case !broken && watch != nil:
			watch.Stop()
			watch = nil
		}
	}
}

func (s *store) isBroken() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.broken != nil
}

// drain commits what is queued, batch by batch, in batch's memory.
func (s *store) drain(ctx context.Context, batch []pending) []pending {
	for {
		s.mu.Lock()
		n := min(len(s.queue), s.maxBatch)
		batch = append(batch[:0], s.queue[:n]...)
		s.queue = s.queue[n:]
		if len(s.queue) == 0 {
			s.queue = nil
		}
		s.mu.Unlock()
		if n == 0 {
			return batch
		}
		s.commit(ctx, batch)
	}
}

// commit makes one batch durable, integrates it and answers its futures.
func (s *store) commit(ctx context.Context, batch []pending) {
	s.mu.Lock()
	first, broken := s.size, s.broken
	s.mu.Unlock()
	err := broken
	if err == nil {
		payload := make([]byte, 0, 64*len(batch))
		leaves := make([][]byte, len(batch))
		for i, p := range batch {
			payload = append(payload, p.e.MarshalBundleData(first+uint64(i))...)
			leaves[i] = p.e.LeafHash()
		}
		err = s.j.append(first, uint32(len(batch)), payload)
		if err != nil && !errors.Is(err, errBroken) {
			// The record was cut back off, but a journal that cannot
			// be written (a full disk) fails the batches after this one
			// too: break, so that callers can tell before they work,
			// and let recovery find out when writing works again.
			err = fmt.Errorf("%w: %w", errBroken, err)
		}
		if err == nil {
			err = s.integrate(payload, leaves)
			if err != nil {
				err = fmt.Errorf("%w: %w", errBroken, err)
			}
		}
		if errors.Is(err, errBroken) {
			s.fail(err)
		}
	}
	for i, p := range batch {
		p.res.idx, p.res.err = first+uint64(i), err
		close(p.res.done)
	}
	if err != nil {
		// Every failure broke the store, and fail logged that once;
		// while it is broken add refuses appends before they get here.
		return
	}
	if s.onBatch != nil {
		s.onBatch(len(batch))
	}
	select {
	case s.cpNotify <- struct{}{}:
	default:
	}
	if s.j.size >= s.segSize {
		if err := s.syncPoint(); err != nil {
			s.fail(fmt.Errorf("%w: sync point: %w", errBroken, err))
		}
	}
}

// integrate adds a durable batch to the bundles and tiles and advances the
// tree. payload holds the batch's entries in bundle encoding.
//
// Only full tiles and bundles are written to files here. The rightmost,
// partial tile of each level and the partial bundle stay in memory, where
// the reader serves them from; they are written out at sync points, which
// is all recovery needs. This keeps file creation, the costliest file
// system operation here, off the per-batch path.
func (s *store) integrate(payload []byte, leaves [][]byte) error {
	entries, err := splitEntries(payload, len(leaves))
	if err != nil {
		return err
	}
	s.tmu.Lock()
	defer s.tmu.Unlock()
	s.writes = s.writes[:0]
	start := s.cr.End()
	for i, e := range entries {
		idx := start + uint64(i)
		s.bundle = append(s.bundle, e...)
		s.bundleN++
		if s.bundleN == layout.EntryBundleWidth {
			s.writes = append(s.writes, fileWrite{layout.EntriesPath(idx/layout.EntryBundleWidth, 0), s.bundle})
			s.bundle, s.bundleN = nil, 0
		}
		if err := s.cr.Append(leaves[i], s.visit); err != nil {
			return err
		}
	}
	for _, w := range s.writes {
		if err := s.writeFile(w.path, w.data); err != nil {
			return err
		}
	}
	root, err := s.cr.GetRootHash(nil)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.size, s.rootHsh = s.cr.End(), root
	s.mu.Unlock()
	return nil
}

// writePartials writes the rightmost partial tile of every level and the
// partial bundle, so that the files on disk describe the whole tree.
func (s *store) writePartials() error {
	s.tmu.RLock()
	defer s.tmu.RUnlock()
	size := s.cr.End()
	if s.bundleN > 0 {
		if err := s.writeFile(layout.EntriesPath(size/layout.EntryBundleWidth, uint8(s.bundleN)), s.bundle); err != nil {
			return err
		}
	}
	for level, t := range s.tiles {
		if w := len(t.hashes) / 32; w > 0 && w < layout.TileWidth {
			if err := s.writeFile(layout.TilePath(level, t.index, uint8(w)), t.hashes); err != nil {
				return err
			}
		}
	}
	return nil
}

// partialTile returns the first p hashes of tile (level, index) if it is
// the rightmost tile of its level and holds at least p hashes.
func (s *store) partialTile(level, index uint64, p uint8) ([]byte, bool) {
	s.tmu.RLock()
	defer s.tmu.RUnlock()
	t := s.tiles[level]
	if t == nil || t.index != index || len(t.hashes) < int(p)*32 {
		return nil, false
	}
	return slicesClone(t.hashes[:int(p)*32]), true
}

// partialBundle returns the first p entries of bundle index if it is the
// bundle being filled and holds at least p entries.
func (s *store) partialBundle(index uint64, p uint8) ([]byte, bool) {
	s.tmu.RLock()
	defer s.tmu.RUnlock()
	if s.bundleN < int(p) || s.cr.End()/layout.EntryBundleWidth != index {
		return nil, false
	}
	ents, err := splitEntries(s.bundle, -1)
	if err != nil {
		return nil, false
	}
	n := 0
	for _, e := range ents[:p] {
		n += len(e)
	}
	return slicesClone(s.bundle[:n]), true
}

// visit records a new tree node in its tile if it is on a tile level.
func (s *store) visit(id compact.NodeID, hash []byte) {
	if id.Level%layout.TileHeight != 0 {
		return
	}
	level := uint64(id.Level / layout.TileHeight)
	t := s.tiles[level]
	if t == nil {
		t = &tileBuf{index: id.Index / layout.TileWidth}
		s.tiles[level] = t
	}
	if len(t.hashes) == layout.TileWidth*32 {
		t.index++
		t.hashes = t.hashes[:0:0]
	}
	t.hashes = append(t.hashes, hash...)
	if len(t.hashes) == layout.TileWidth*32 {
		s.writes = append(s.writes, fileWrite{layout.TilePath(level, t.index, 0), slicesClone(t.hashes)})
	}
}

func slicesClone(b []byte) []byte { return append([]byte(nil), b...) }

// writeFile replaces path atomically for readers (temporary file and
// rename) without syncing: the journal holds what is needed to rebuild it.
func (s *store) writeFile(rel string, data []byte) error {
	if err := s.fault("write", rel); err != nil {
		return err
	}
	p := filepath.Join(s.root, rel)
	dir := filepath.Dir(p)
	if !s.dirs[dir] {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		s.dirs[dir] = true
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// syncPoint makes every file written so far durable, records the synced
// size and drops the journal segments it covers.
func (s *store) syncPoint() error {
	size := s.cr.End()
	if err := s.writePartials(); err != nil {
		return err
	}
	if err := s.fault("syncfs", s.root); err != nil {
		return err
	}
	if err := syncFS(s.root); err != nil {
		return err
	}
	if err := writeMarker(s.root, size); err != nil {
		return err
	}
	jdir := s.j.dir
	old, err := segments(jdir)
	if err != nil {
		return err
	}
	if err := s.j.close(); err != nil {
		return err
	}
	j, err := openSegment(jdir, size, 0)
	if err != nil {
		return err
	}
	s.j = j
	for _, b := range old {
		if b != size {
			if err := os.Remove(filepath.Join(jdir, segmentName(b))); err != nil {
				return err
			}
		}
	}
	s.gcPartials(s.synced, size)
	s.synced = size
	return syncDir(jdir)
}

// gcPartials removes the partial tiles and bundles of every tile that
// filled up between the sync points at sizes from and to: their full
// versions are durable now.
func (s *store) gcPartials(from, to uint64) {
	for level := uint64(0); to>>(8*(level+1)) > 0; level++ {
		shift := 8 * (level + 1)
		for n := from >> shift; n < to>>shift; n++ {
			_ = os.RemoveAll(filepath.Join(s.root, layout.TilePath(level, n, 0)+".p"))
			if level == 0 {
				_ = os.RemoveAll(filepath.Join(s.root, layout.EntriesPath(n, 0)+".p"))
			}
		}
	}
}

func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// shutdown makes everything durable on the way out so the next open has
// nothing to replay.
func (s *store) shutdown() {
	s.mu.Lock()
	broken := s.broken
	s.mu.Unlock()
	if broken == nil {
		if err := s.syncPoint(); err != nil {
			s.logger.Error("final sync point", "err", err)
		}
	}
	_ = s.j.close()
	if s.lock != nil {
		_ = s.lock.Close()
	}
	// Fail whatever is still queued.
	s.mu.Lock()
	q := s.queue
	s.queue = nil
	if s.broken == nil {
		s.broken = errors.New("log closed")
	}
	s.refusal = errors.New("log closed")
	s.setHealth(Health{State: Closed, Recoveries: s.health.Recoveries, Recovered: s.health.Recovered})
	s.mu.Unlock()
	for _, p := range q {
		p.res.err = errors.New("log closed")
		close(p.res.done)
	}
	close(s.done)
}

// current returns the integrated size and root.
func (s *store) current() (uint64, []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size, s.rootHsh
}

// fetchRange rebuilds the compact range of [0, size) from durable tiles.
func (s *store) fetchRange(ctx context.Context, size uint64) (*compact.Range, error) {
	if size == 0 {
		return rangeFactory.NewEmptyRange(0), nil
	}
	nodes, err := client.FetchRangeNodes(ctx, size, s.reader.ReadTile)
	if err != nil {
		return nil, err
	}
	return rangeFactory.NewRange(0, size, nodes)
}
