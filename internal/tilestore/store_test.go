package tilestore

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"github.com/transparency-dev/tessera/fsck"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// The tests drive the store the way the log server does, through
// tessera.NewAppender, and check what it wrote with code we did not write:
// Tessera's fsck and client over the directory, and x/mod's tlog for tree
// hashes and tile contents.

const testOrigin = "example.com/vitrine/tilestore-test"

func TestMain(m *testing.M) {
	// Tessera's fsck and client log through klog; keep test output quiet.
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	os.Exit(m.Run())
}

// testKey is the checkpoint key every test log signs with, so that a log
// reopened by another driver keeps verifying.
var testKey = sync.OnceValues(func() (note.Signer, note.Verifier) {
	skey, vkey, err := note.GenerateKey(rand.Reader, testOrigin)
	if err != nil {
		panic(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		panic(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		panic(err)
	}
	return s, v
})

// testLog is one store opened through Tessera's appender lifecycle.
type testLog struct {
	tb       testing.TB
	dir      string
	driver   *Driver
	add      tessera.AddFn
	reader   tessera.LogReader
	shutdown func(context.Context) error
	cancel   context.CancelFunc
	closed   bool
}

// openLog opens the store in cfg.Path with the log server's options,
// adjusted by opts. The log is closed cleanly when the test ends.
func openLog(tb testing.TB, cfg Config, opts ...func(*tessera.AppendOptions)) (*testLog, error) {
	tb.Helper()
	signer, _ := testKey()
	o := tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithCheckpointInterval(10*time.Millisecond).
		WithCheckpointRepublishInterval(time.Minute).
		WithBatching(4096, time.Millisecond)
	for _, opt := range opts {
		opt(o)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	app, shutdown, r, err := tessera.NewAppender(ctx, d, o)
	if err != nil {
		cancel()
		return nil, err
	}
	l := &testLog{tb: tb, dir: cfg.Path, driver: d, add: app.Add, reader: r, shutdown: shutdown, cancel: cancel}
	tb.Cleanup(l.close)
	return l, nil
}

func mustOpenLog(tb testing.TB, cfg Config, opts ...func(*tessera.AppendOptions)) *testLog {
	tb.Helper()
	l, err := openLog(tb, cfg, opts...)
	if err != nil {
		tb.Fatalf("opening log: %v", err)
	}
	return l
}

func withBatching(size uint) func(*tessera.AppendOptions) {
	return func(o *tessera.AppendOptions) { o.WithBatching(size, time.Millisecond) }
}

// close shuts the log down the way logserver.Log.Close does: wait for a
// checkpoint covering every entry, stop, and wait for the final sync point.
func (l *testLog) close() {
	if l.closed {
		return
	}
	l.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.shutdown(ctx); err != nil {
		l.tb.Errorf("shutting down log %s: %v", l.dir, err)
	}
	l.cancel()
	l.driver.Wait()
}

// size returns the integrated size the store reports.
func (l *testLog) size() uint64 {
	l.tb.Helper()
	n, err := l.reader.IntegratedSize(context.Background())
	if err != nil {
		l.tb.Fatalf("IntegratedSize: %v", err)
	}
	return n
}

// testEntries returns n distinct entries of varied lengths.
func testEntries(prefix string, n int) [][]byte {
	es := make([][]byte, n)
	for i := range es {
		es[i] = fmt.Appendf(nil, "%s %d %s", prefix, i, strings.Repeat("x", i%97))
	}
	return es
}

// appendAll adds entries from the given number of goroutines and returns
// the index each entry got.
func appendAll(tb testing.TB, add tessera.AddFn, entries [][]byte, workers int) []uint64 {
	tb.Helper()
	idx := make([]uint64, len(entries))
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(entries) {
					return
				}
				got, err := add(context.Background(), tessera.NewEntry(entries[i]))()
				if err != nil {
					errs <- fmt.Errorf("adding entry %d: %w", i, err)
					return
				}
				idx[i] = got.Index
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
	return idx
}

// inLogOrder checks that idx holds every index of first..first+len-1 once
// and returns the entries in index order.
func inLogOrder(tb testing.TB, entries [][]byte, idx []uint64, first uint64) [][]byte {
	tb.Helper()
	out := make([][]byte, len(entries))
	for i, x := range idx {
		if x < first || x-first >= uint64(len(entries)) {
			tb.Fatalf("entry %d got index %d, want one in [%d, %d)", i, x, first, first+uint64(len(entries)))
		}
		if out[x-first] != nil {
			tb.Fatalf("index %d given to two entries", x)
		}
		out[x-first] = entries[i]
	}
	return out
}

// storedHashes returns x/mod tlog's stored hashes for entries and a reader
// over them.
func storedHashes(tb testing.TB, entries [][]byte) tlog.HashReaderFunc {
	tb.Helper()
	var hashes []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x < 0 || x >= int64(len(hashes)) {
				return nil, fmt.Errorf("no stored hash %d", x)
			}
			out[i] = hashes[x]
		}
		return out, nil
	})
	for i, e := range entries {
		h, err := tlog.StoredHashes(int64(i), e, r)
		if err != nil {
			tb.Fatalf("tlog.StoredHashes(%d): %v", i, err)
		}
		hashes = append(hashes, h...)
	}
	return r
}

// tlogRoot is the root of the tree of entries, computed by x/mod's tlog.
func tlogRoot(tb testing.TB, entries [][]byte) []byte {
	tb.Helper()
	if len(entries) == 0 {
		return rfc6962.DefaultHasher.EmptyRoot()
	}
	h, err := tlog.TreeHash(int64(len(entries)), storedHashes(tb, entries))
	if err != nil {
		tb.Fatalf("tlog.TreeHash: %v", err)
	}
	return h[:]
}

// awaitCheckpoint waits until f serves a valid checkpoint of at least size
// entries and returns it.
func awaitCheckpoint(tb testing.TB, f fsck.Fetcher, size uint64) (cpSize uint64, root []byte) {
	tb.Helper()
	_, v := testKey()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cp, _, _, err := client.FetchCheckpoint(context.Background(), f.ReadCheckpoint, v, testOrigin)
		if err == nil && cp.Size >= size {
			return cp.Size, cp.Hash
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no checkpoint of size %d after 10s (last: %+v, %v)", size, cp, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// leafHashes is fsck's bundle hasher, as in Tessera's cmd/fsck.
func leafHashes(bundle []byte) ([][]byte, error) {
	var eb api.EntryBundle
	if err := eb.UnmarshalText(bundle); err != nil {
		return nil, err
	}
	hs := make([][]byte, len(eb.Entries))
	for i, e := range eb.Entries {
		hs[i] = rfc6962.DefaultHasher.HashLeaf(e)
	}
	return hs, nil
}

func unbundle(b []byte) ([][]byte, error) {
	var eb api.EntryBundle
	err := eb.UnmarshalText(b)
	return eb.Entries, err
}

// verifyLog checks the log f serves against the entries it should hold:
// the checkpoint's size and root (x/mod tlog), Tessera's fsck over f,
// every entry read back through Tessera's client, and every tile of the
// tree against x/mod's tile data.
func verifyLog(tb testing.TB, f fsck.Fetcher, want [][]byte) {
	tb.Helper()
	ctx := context.Background()
	n := uint64(len(want))
	gotSize, gotRoot := awaitCheckpoint(tb, f, n)
	if gotSize != n {
		tb.Fatalf("checkpoint size = %d, want %d", gotSize, n)
	}
	if n == 0 {
		if wantRoot := rfc6962.DefaultHasher.EmptyRoot(); !bytes.Equal(gotRoot, wantRoot) {
			tb.Fatalf("checkpoint root = %x, want the empty tree's %x", gotRoot, wantRoot)
		}
		return
	}
	hr := storedHashes(tb, want)
	wantRoot, err := tlog.TreeHash(int64(n), hr)
	if err != nil {
		tb.Fatalf("tlog.TreeHash: %v", err)
	}
	if !bytes.Equal(gotRoot, wantRoot[:]) {
		tb.Fatalf("checkpoint root = %x, want %x (x/mod tlog)", gotRoot, wantRoot)
	}

	_, v := testKey()
	if err := fsck.New(testOrigin, v, f, leafHashes, fsck.Opts{N: 4}).Check(ctx); err != nil {
		tb.Fatalf("fsck: %v", err)
	}

	size := func(context.Context) (uint64, error) { return n, nil }
	var got uint64
	for e, err := range client.Entries(client.EntryBundles(ctx, 4, size, f.ReadEntryBundle, 0, n), unbundle) {
		if err != nil {
			tb.Fatalf("reading entries: %v", err)
		}
		if e.Index != got {
			tb.Fatalf("read entry %d, want %d", e.Index, got)
		}
		if !bytes.Equal(e.Entry, want[got]) {
			tb.Fatalf("entry %d = %q, want %q", got, e.Entry, want[got])
		}
		got++
	}
	if got != n {
		tb.Fatalf("read %d entries, want %d", got, n)
	}

	for _, t := range tlog.NewTiles(layout.TileHeight, 0, int64(n)) {
		wantTile, err := tlog.ReadTileData(t, hr)
		if err != nil {
			tb.Fatalf("tlog.ReadTileData(%v): %v", t, err)
		}
		gotTile, err := f.ReadTile(ctx, uint64(t.L), uint64(t.N), uint8(t.W%layout.TileWidth))
		if err != nil {
			tb.Fatalf("ReadTile(%d, %d, %d): %v", t.L, t.N, t.W, err)
		}
		if !bytes.Equal(gotTile, wantTile) {
			tb.Fatalf("tile %s differs from x/mod tlog's", t.Path())
		}
	}
}

// dirFiles reads a closed log's directory with Tessera's own file fetcher,
// as a static file server would serve it.
func dirFiles(dir string) fsck.Fetcher { return client.FileFetcher{Root: dir} }

func TestAppend(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries [][]byte
		workers int
		batch   uint
	}{
		{name: "1", entries: testEntries("a", 1), workers: 1, batch: 4096},
		{name: "255", entries: testEntries("a", 255), workers: 8, batch: 4096},
		{name: "256", entries: testEntries("a", 256), workers: 8, batch: 4096},
		{name: "257", entries: testEntries("a", 257), workers: 8, batch: 4096},
		{name: "257 one by one", entries: testEntries("a", 257), workers: 1, batch: 4096},
		{name: "1000 small batches", entries: testEntries("a", 1000), workers: 16, batch: 7},
		{name: "70000", entries: testEntries("a", 70000), workers: 1000, batch: 4096},
		{name: "edge sizes", entries: [][]byte{{}, {0}, bytes.Repeat([]byte{0xff}, 1<<16-1), []byte("after the largest")}, workers: 1, batch: 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() && len(tc.entries) > 10000 {
				t.Skip("large log skipped in -short mode")
			}
			dir := t.TempDir()
			l := mustOpenLog(t, Config{Path: dir}, withBatching(tc.batch))
			want := inLogOrder(t, tc.entries, appendAll(t, l.add, tc.entries, tc.workers), 0)
			if got, n := l.size(), uint64(len(want)); got != n {
				t.Errorf("integrated size = %d, want %d", got, n)
			}
			verifyLog(t, l.reader, want)
			l.close()

			// A clean shutdown leaves nothing to replay and nothing half-written.
			if got, err := readMarker(dir); err != nil || got != uint64(len(want)) {
				t.Errorf("sync marker after close = %d, %v; want %d", got, err, len(want))
			}
			checkNoTempFiles(t, dir)

			// Reopened, the log goes on where it stopped.
			l = mustOpenLog(t, Config{Path: dir}, withBatching(tc.batch))
			if got, n := l.size(), uint64(len(want)); got != n {
				t.Errorf("integrated size after reopening = %d, want %d", got, n)
			}
			more := testEntries("b", 3)
			want = append(want, inLogOrder(t, more, appendAll(t, l.add, more, 1), uint64(len(want)))...)
			l.close()
			verifyLog(t, dirFiles(dir), want)
		})
	}
}

func checkNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".tmp") {
			t.Errorf("temporary file left behind: %s", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenInUse(t *testing.T) {
	dir := t.TempDir()
	first := mustOpenLog(t, Config{Path: dir})
	appendAll(t, first.add, testEntries("a", 3), 1)

	if _, err := openLog(t, Config{Path: dir}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open while the first is open: err = %v, want one saying the log is in use", err)
	}
	// The failed open must not disturb the first.
	appendAll(t, first.add, testEntries("b", 3), 1)
	first.close()

	second, err := openLog(t, Config{Path: dir})
	if err != nil {
		t.Fatalf("open after the first closed: %v", err)
	}
	if got := second.size(); got != 6 {
		t.Errorf("size = %d, want 6", got)
	}
}

// A failed open must release the directory, so that the log can be opened
// again once the damage is repaired without restarting the process.
func TestOpenErrorReleasesLock(t *testing.T) {
	dir := t.TempDir()
	entries := testEntries("a", 20)
	seg0 := encodeBatch(0, entries[:10])
	seg10 := encodeBatch(10, entries[10:])
	writeSegment(t, dir, 0, seg0[:len(seg0)-1]) // damaged, and not the final segment
	writeSegment(t, dir, 10, seg10)
	if _, err := openLog(t, Config{Path: dir}); err == nil {
		t.Fatal("opening a log with a damaged segment succeeded")
	}
	writeSegment(t, dir, 0, seg0) // repaired
	l, err := openLog(t, Config{Path: dir})
	if err != nil {
		t.Fatalf("open after repairing the journal: %v", err)
	}
	if got := l.size(); got != 20 {
		t.Errorf("size = %d, want 20", got)
	}
}

// TestPushback blocks the sequencer after it has journaled a batch (the
// full bundle it then writes is a FIFO nobody reads yet) and checks that
// appends beyond WithPushback's limit are refused with tessera.ErrPushback
// while it is blocked, and that the accepted ones complete once it runs.
func TestPushback(t *testing.T) {
	dir := t.TempDir()
	want := testEntries("before", layout.EntryBundleWidth-1)
	writeJournal(t, dir, want)
	// The next entry fills bundle 0, and the sequencer writes it out.
	bundle := filepath.Join(dir, layout.EntriesPath(0, 0))
	fifo := bundle + ".tmp"
	if err := os.MkdirAll(filepath.Dir(fifo), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	l := mustOpenLog(t, Config{Path: dir}, func(o *tessera.AppendOptions) { o.WithPushback(1) })
	checkOpened(t, l, want)

	ctx := context.Background()
	journaled := journalBytes(t, dir)
	futures := []tessera.IndexFuture{l.add(ctx, tessera.NewEntry([]byte("fills bundle 0")))}
	want = append(want, []byte("fills bundle 0"))
	// Once the journal grows, the sequencer has taken that entry off the
	// queue and is on its way to the FIFO.
	for deadline := time.Now().Add(5 * time.Second); journalBytes(t, dir) == journaled; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the entry was not journaled within 5s")
		}
	}

	const tries = 5
	pushedBack := 0
	for i := range tries {
		e := fmt.Appendf(nil, "while blocked %d", i)
		f := l.add(ctx, tessera.NewEntry(e))
		// Refusals resolve at once; an accepted entry's future waits.
		if done, err := resolved(f); done && errors.Is(err, tessera.ErrPushback) {
			pushedBack++
			continue
		} else if done {
			t.Fatalf("append %d while blocked: err = %v, want ErrPushback or waiting", i, err)
		}
		futures = append(futures, f)
		want = append(want, e)
	}
	if accepted := len(futures) - 1; accepted != 1 || pushedBack != tries-1 {
		t.Errorf("while the sequencer is blocked: %d accepted and %d pushed back, want 1 and %d", accepted, pushedBack, tries-1)
	}

	// Unblock the sequencer.
	read := make(chan []byte, 1)
	go func() {
		b, err := os.ReadFile(fifo)
		if err != nil {
			t.Errorf("reading the FIFO: %v", err)
		}
		read <- b
	}()
	var data []byte
	select {
	case data = <-read:
	case <-time.After(5 * time.Second):
		t.Fatal("the sequencer never opened the FIFO")
	}
	for i, f := range futures {
		first := uint64(layout.EntryBundleWidth - 1)
		idx, err := f()
		if err != nil || idx.Index != first+uint64(i) {
			t.Fatalf("accepted append %q = %d, %v; want %d, nil", want[first+uint64(i)], idx.Index, err, first+uint64(i))
		}
	}
	// The FIFO is bundle 0 now; put what the sequencer wrote into it in
	// its place, a regular file.
	if err := os.Remove(bundle); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bundle, data, 0o644); err != nil {
		t.Fatal(err)
	}

	// The queue drained, the log takes appends again.
	more := testEntries("after", 3)
	want = append(want, inLogOrder(t, more, appendAll(t, l.add, more, 1), uint64(len(want)))...)
	verifyLog(t, l.reader, want)
}

// journalBytes is the size of the journal of the log in dir.
func journalBytes(t *testing.T, dir string) int64 {
	t.Helper()
	bases, err := segments(journalDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, b := range bases {
		n += segmentSize(t, dir, b)
	}
	return n
}

// resolved reports whether future f resolves within a short while, and its
// error if it does.
func resolved(f tessera.IndexFuture) (bool, error) {
	c := make(chan error, 1)
	go func() {
		_, err := f()
		c <- err
	}()
	select {
	case err := <-c:
		return true, err
	case <-time.After(500 * time.Millisecond):
		return false, nil
	}
}

// Benchmarks: go test -run '^$' -bench . -benchtime 2s ./internal/tilestore/
//
// Each runs b.N appends from SetParallelism(p)×GOMAXPROCS goroutines, every
// goroutine waiting for its entry's index before the next append, and
// reports entries/s.

var benchEntry = bytes.Repeat([]byte("e"), 128)

func benchAppend(b *testing.B, add tessera.AddFn, parallelism int) {
	ctx := context.Background()
	b.SetParallelism(parallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := add(ctx, tessera.NewEntry(benchEntry))(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

var benchParallelism = []int{1, 64, 256}

func goroutines(p int) string { return fmt.Sprintf("goroutines=%d", p*runtime.GOMAXPROCS(0)) }

func BenchmarkAppend(b *testing.B) {
	for _, p := range benchParallelism {
		b.Run(goroutines(p), func(b *testing.B) {
			l := mustOpenLog(b, Config{Path: b.TempDir()}, func(o *tessera.AppendOptions) {
				o.WithCheckpointInterval(100*time.Millisecond).WithBatching(4096, time.Millisecond)
			})
			benchAppend(b, l.add, p)
		})
	}
}

// BenchmarkAppendTesseraPOSIX is the same load on Tessera's own POSIX driver,
// with the batching of its conformance server (256 entries or 1s) and with
// a small maximum age.
func BenchmarkAppendTesseraPOSIX(b *testing.B) {
	for _, age := range []time.Duration{time.Second, 10 * time.Millisecond} {
		for _, p := range benchParallelism {
			b.Run(fmt.Sprintf("maxAge=%v/%s", age, goroutines(p)), func(b *testing.B) {
				signer, _ := testKey()
				d, err := posix.New(context.Background(), posix.Config{Path: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				app, shutdown, _, err := tessera.NewAppender(ctx, d, tessera.NewAppendOptions().
					WithCheckpointSigner(signer).
					WithCheckpointInterval(100*time.Millisecond).
					WithCheckpointRepublishInterval(time.Minute).
					WithBatching(256, age))
				if err != nil {
					cancel()
					b.Fatal(err)
				}
				b.Cleanup(func() {
					if err := shutdown(context.Background()); err != nil {
						b.Errorf("shutdown: %v", err)
					}
					cancel()
				})
				benchAppend(b, app.Add, p)
			})
		}
	}
}
