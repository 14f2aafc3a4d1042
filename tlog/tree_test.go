package tlog_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/client"
	"github.com/transparency-dev/tessera/fsck"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
	sumdbtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/vitrine-dev/vitrine/tlog"
)

// Tessera's fetchers are what outsiders will hand to VerifyTree.
var (
	_ tlog.Fetcher = client.FileFetcher{}
	_ tlog.Fetcher = (*client.HTTPFetcher)(nil)
)

// testCheckpoint is a checkpoint the test log published.
type testCheckpoint struct {
	size uint64
	root []byte
	raw  []byte
}

// testLog is a log written by Tessera's POSIX driver in a directory.
type testLog struct {
	dir         string
	origin      string
	vkey        string // note verifier key
	verifier    note.Verifier
	entries     [][]byte
	checkpoints []testCheckpoint // in the order published, one per step
}

func (l *testLog) fetcher() client.FileFetcher { return client.FileFetcher{Root: l.dir} }

func (l *testLog) last() testCheckpoint { return l.checkpoints[len(l.checkpoints)-1] }

// testEntry is entry i of every test log.
func testEntry(i int) []byte { return fmt.Appendf(nil, "vitrine test entry %d", i) }

// buildTestLog writes a log into dir with Tessera, growing it to each of
// sizes in turn and waiting at each step until a checkpoint covers exactly
// that size, so that the partial tiles of every step are written.
func buildTestLog(tb testing.TB, dir string, entry func(int) []byte, sizes ...int) *testLog {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	skey, vkey, err := note.GenerateKey(rand.Reader, "vitrine.test/log")
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		tb.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		tb.Fatal(err)
	}
	driver, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		tb.Fatal(err)
	}
	maxStep := 1
	for i, s := range sizes {
		if i > 0 {
			maxStep = max(maxStep, s-sizes[i-1])
		} else {
			maxStep = max(maxStep, s)
		}
	}
	appender, shutdown, reader, err := tessera.NewAppender(ctx, driver, tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithBatching(uint(min(maxStep, 1<<14)), 100*time.Millisecond).
		WithCheckpointInterval(100*time.Millisecond).
		WithPushback(uint(maxStep)+1))
	if err != nil {
		tb.Fatal(err)
	}
	awaiter := tessera.NewPublicationAwaiter(ctx, reader.ReadCheckpoint, 20*time.Millisecond)
	l := &testLog{dir: dir, origin: signer.Name(), vkey: vkey, verifier: verifier}
	for _, size := range sizes {
		futures := make([]tessera.IndexFuture, 0, size-len(l.entries))
		for i := len(l.entries); i < size; i++ {
			e := entry(i)
			l.entries = append(l.entries, e)
			futures = append(futures, appender.Add(ctx, tessera.NewEntry(e)))
		}
		for i, f := range futures {
			idx, err := f()
			if err != nil {
				tb.Fatalf("adding entry: %v", err)
			}
			if want := uint64(size - len(futures) + i); idx.Index != want {
				tb.Fatalf("entry sequenced at %d, want %d", idx.Index, want)
			}
		}
		if _, _, err := awaiter.Await(ctx, futures[len(futures)-1]); err != nil {
			tb.Fatalf("awaiting checkpoint: %v", err)
		}
		raw, err := l.fetcher().ReadCheckpoint(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		cp, _, _, err := log.ParseCheckpoint(raw, l.origin, verifier)
		if err != nil {
			tb.Fatal(err)
		}
		if cp.Size != uint64(size) {
			tb.Fatalf("checkpoint size %d, want %d", cp.Size, size)
		}
		l.checkpoints = append(l.checkpoints, testCheckpoint{size: cp.Size, root: cp.Hash, raw: raw})
	}
	if err := shutdown(ctx); err != nil {
		tb.Fatal(err)
	}
	return l
}

// sumdbRoot computes the root of the first n entries with x/mod's sumdb
// tlog, which shares no code with ours or Tessera's.
func sumdbRoot(tb testing.TB, entries [][]byte, n int) []byte {
	tb.Helper()
	h, err := sumdbtlog.TreeHash(int64(n), sumdbHashes(tb, entries[:n]))
	if err != nil {
		tb.Fatal(err)
	}
	return h[:]
}

// sumdbHashes stores the hashes of entries the way the sumdb does.
func sumdbHashes(tb testing.TB, entries [][]byte) sumdbtlog.HashReaderFunc {
	tb.Helper()
	var stored []sumdbtlog.Hash
	r := sumdbtlog.HashReaderFunc(func(idx []int64) ([]sumdbtlog.Hash, error) {
		out := make([]sumdbtlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	for i, e := range entries {
		hs, err := sumdbtlog.StoredHashes(int64(i), e, r)
		if err != nil {
			tb.Fatal(err)
		}
		stored = append(stored, hs...)
	}
	return r
}

// runFsck checks the log at its current checkpoint with Tessera's fsck,
// turning a panic into an error.
func runFsck(ctx context.Context, l *testLog, f fsck.Fetcher) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("fsck panicked: %v", r)
		}
	}()
	return fsck.New(l.origin, l.verifier, f, leafHashes, fsck.Opts{N: 8}).Check(ctx)
}

// leafHashes is the bundle hasher Tessera's fsck command uses.
func leafHashes(bundle []byte) ([][]byte, error) {
	var eb api.EntryBundle
	if err := eb.UnmarshalText(bundle); err != nil {
		return nil, err
	}
	hs := make([][]byte, 0, len(eb.Entries))
	for _, e := range eb.Entries {
		hs = append(hs, rfc6962.DefaultHasher.HashLeaf(e))
	}
	return hs, nil
}

// wantTiles counts the hash tiles of a tree of the given size.
func wantTiles(size uint64) uint64 {
	n := uint64(0)
	for m := size; m > 0; m >>= 8 {
		n += (m + 255) / 256
	}
	return n
}

func TestVerifyTree(t *testing.T) {
	t.Parallel()
	sizes := []int{1, 255, 256, 257, 1000}
	l := buildTestLog(t, t.TempDir(), testEntry, sizes...)
	ctx := t.Context()
	// Every step is checked against the final log, whose old partial
	// resources Tessera may have replaced with full ones.
	for _, cp := range l.checkpoints {
		t.Run(fmt.Sprintf("size=%d", cp.size), func(t *testing.T) {
			if got, want := cp.root, sumdbRoot(t, l.entries, int(cp.size)); !bytes.Equal(got, want) {
				t.Fatalf("checkpoint root %x, sumdb computes %x", got, want)
			}
			rep, err := tlog.VerifyTree(ctx, l.fetcher(), cp.size, cp.root)
			if err != nil {
				t.Fatalf("VerifyTree: %v", err)
			}
			if got, want := rep.Entries, cp.size; got != want {
				t.Errorf("report entries %d, want %d", got, want)
			}
			if got, want := rep.Bundles, (cp.size+255)/256; got != want {
				t.Errorf("report bundles %d, want %d", got, want)
			}
			if got, want := rep.Tiles, wantTiles(cp.size); got != want {
				t.Errorf("report tiles %d, want %d", got, want)
			}
		})
	}
	if err := runFsck(ctx, l, l.fetcher()); err != nil {
		t.Errorf("fsck disagrees with VerifyTree: %v", err)
	}
}

func TestVerifyTreeLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping a 66,000-entry log in short mode")
	}
	t.Parallel()
	// 65536 fills a level-1 tile and starts level 2; 65836 adds partial
	// tiles at levels 0 and 1 above full ones.
	l := buildTestLog(t, t.TempDir(), testEntry, 65536, 65836)
	ctx := t.Context()
	for _, cp := range l.checkpoints {
		if got, want := cp.root, sumdbRoot(t, l.entries, int(cp.size)); !bytes.Equal(got, want) {
			t.Fatalf("checkpoint root %x, sumdb computes %x", got, want)
		}
		for _, n := range []int{1, 3, 64} {
			rep, err := tlog.VerifyTree(ctx, l.fetcher(), cp.size, cp.root, tlog.WithConcurrency(n))
			if err != nil {
				t.Fatalf("VerifyTree(size %d, concurrency %d): %v", cp.size, n, err)
			}
			if got, want := rep.Tiles, wantTiles(cp.size); got != want {
				t.Errorf("VerifyTree(size %d): report tiles %d, want %d", cp.size, got, want)
			}
		}
	}
	if err := runFsck(ctx, l, l.fetcher()); err != nil {
		t.Errorf("fsck disagrees with VerifyTree: %v", err)
	}

	// Failures deep in the walk stop every worker and report the cause.
	cp := l.last()
	errBroken := errors.New("connection reset")
	f := &faultyFetcher{FileFetcher: l.fetcher(), bundle: 100, err: errBroken}
	_, err := tlog.VerifyTree(ctx, f, cp.size, cp.root)
	var fe *tlog.FetchError
	if !errors.As(err, &fe) || fe.Path != "tile/entries/100" || !errors.Is(err, errBroken) {
		t.Errorf("VerifyTree with bundle 100 failing: got %v, want a FetchError for tile/entries/100", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f = &faultyFetcher{FileFetcher: l.fetcher(), bundle: 100, cancel: cancel}
	if _, err := tlog.VerifyTree(cctx, f, cp.size, cp.root); !errors.Is(err, context.Canceled) {
		t.Errorf("VerifyTree cancelled at bundle 100: got %v, want %v", err, context.Canceled)
	}
}

// faultyFetcher fails or cancels when asked for one entry bundle.
type faultyFetcher struct {
	client.FileFetcher
	bundle uint64
	err    error
	cancel context.CancelFunc
}

func (f *faultyFetcher) ReadEntryBundle(ctx context.Context, i uint64, p uint8) ([]byte, error) {
	if i == f.bundle {
		if f.cancel != nil {
			f.cancel()
			return nil, ctx.Err()
		}
		return nil, f.err
	}
	return f.FileFetcher.ReadEntryBundle(ctx, i, p)
}

func TestVerifyTreeHTTP(t *testing.T) {
	t.Parallel()
	l := buildTestLog(t, t.TempDir(), testEntry, 300)
	srv := httptest.NewServer(http.FileServer(http.Dir(l.dir)))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	f, err := client.NewHTTPFetcher(u, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	cp := l.last()
	if _, err := tlog.VerifyTree(t.Context(), f, cp.size, cp.root); err != nil {
		t.Fatalf("VerifyTree over HTTP: %v", err)
	}
}

func TestVerifyTreeTampered(t *testing.T) {
	t.Parallel()
	src := buildTestLog(t, t.TempDir(), testEntry, 1000)
	cp := src.last()
	flip := func(off int) func([]byte) []byte {
		return func(b []byte) []byte { b[off] ^= 1; return b }
	}
	for _, tc := range []struct {
		name     string
		file     string              // to change, relative to the log's root
		change   func([]byte) []byte // nil deletes the file
		badRoot  bool
		wantErr  error
		notErr   error
		wantMsg  []string
		fsckFine bool // fsck cannot see it: it trusts the checkpoint's root
	}{{
		name: "entry bundle byte", file: "tile/entries/001", change: flip(300),
		wantErr: tlog.ErrTreeMismatch, wantMsg: []string{"tile/entries/001", "tile/0/001"},
	}, {
		name: "partial entry bundle byte", file: "tile/entries/003.p/232", change: flip(5),
		wantErr: tlog.ErrTreeMismatch, wantMsg: []string{"tile/entries/003.p/232", "tile/0/003.p/232"},
	}, {
		name: "level-0 tile byte", file: "tile/0/002", change: flip(17*32 + 3),
		wantErr: tlog.ErrTileMismatch, notErr: tlog.ErrTreeMismatch,
		wantMsg: []string{"tile/0/002", "hash 17", "entry 529"},
	}, {
		name: "partial level-0 tile byte", file: "tile/0/003.p/232", change: flip(231 * 32),
		wantErr: tlog.ErrTileMismatch, notErr: tlog.ErrTreeMismatch,
		wantMsg: []string{"tile/0/003.p/232", "hash 231", "entry 999"},
	}, {
		name: "level-1 tile byte", file: "tile/1/000.p/3", change: flip(32 + 31),
		wantErr: tlog.ErrTileMismatch, notErr: tlog.ErrTreeMismatch,
		wantMsg: []string{"tile/1/000.p/3", "hash 1", "tile/0/001"},
	}, {
		name: "wrong root", badRoot: true, fsckFine: true,
		wantErr: tlog.ErrTreeMismatch, notErr: tlog.ErrTileMismatch,
	}, {
		name: "truncated bundle", file: "tile/entries/000", change: func(b []byte) []byte { return b[:len(b)-1] },
		wantErr: tlog.ErrMalformed, wantMsg: []string{"tile/entries/000"},
	}, {
		name: "dangling byte after bundle", file: "tile/entries/000", change: func(b []byte) []byte { return append(b, 0) },
		wantErr: tlog.ErrMalformed, wantMsg: []string{"tile/entries/000"},
	}, {
		name: "extra entry in bundle", file: "tile/entries/002", change: func(b []byte) []byte { return append(b, 0, 1, 'x') },
		wantErr: tlog.ErrMalformed, wantMsg: []string{"tile/entries/002"},
		fsckFine: true, // fsck hashes only the first 256 entries
	}, {
		name: "missing entry in partial bundle", file: "tile/entries/003.p/232", change: dropLastEntry,
		wantErr: tlog.ErrMalformed, wantMsg: []string{"tile/entries/003.p/232", "231 entries, want 232"},
	}, {
		name: "truncated tile", file: "tile/0/001", change: func(b []byte) []byte { return b[:len(b)-32] },
		wantErr: tlog.ErrMalformed, wantMsg: []string{"tile/0/001"},
	}, {
		name: "missing bundle", file: "tile/entries/002",
		wantErr: fs.ErrNotExist, wantMsg: []string{"tile/entries/002"},
	}, {
		name: "missing level-1 tile", file: "tile/1/000.p/3",
		wantErr: fs.ErrNotExist, wantMsg: []string{"tile/1/000.p/3"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			l := src
			if tc.file != "" {
				l = tamperedCopy(t, src, tc.file, tc.change)
			}
			root := bytes.Clone(cp.root)
			if tc.badRoot {
				root[0] ^= 1
			}
			_, err := tlog.VerifyTree(t.Context(), l.fetcher(), cp.size, root)
			t.Logf("VerifyTree: %v", err)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("VerifyTree: got %v, want %v", err, tc.wantErr)
			}
			if tc.notErr != nil && errors.Is(err, tc.notErr) {
				t.Errorf("VerifyTree: got %v, which should not be %v", err, tc.notErr)
			}
			var fe *tlog.FetchError
			if got, want := errors.As(err, &fe), tc.file != "" && tc.change == nil; got != want {
				t.Errorf("VerifyTree: got %v, FetchError %t, want %t", err, got, want)
			} else if got && fe.Path != tc.file {
				t.Errorf("FetchError path %q, want %q", fe.Path, tc.file)
			}
			for _, s := range tc.wantMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("VerifyTree: got %q, want it to mention %q", err, s)
				}
			}
			err = runFsck(t.Context(), l, l.fetcher())
			t.Logf("fsck: %.200v", err)
			if (err == nil) != tc.fsckFine {
				t.Errorf("fsck: got %v, want failure %t", err, !tc.fsckFine)
			}
		})
	}
}

// tamperedCopy copies the log into a fresh directory and applies change to
// file there; a nil change deletes the file.
func tamperedCopy(t *testing.T, src *testLog, file string, change func([]byte) []byte) *testLog {
	t.Helper()
	l := *src
	l.dir = t.TempDir()
	if err := os.CopyFS(l.dir, os.DirFS(src.dir)); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(l.dir, filepath.FromSlash(file))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if change == nil {
		err = os.Remove(p)
	} else {
		err = os.WriteFile(p, change(b), 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &l
}

// dropLastEntry removes the last entry of a bundle.
func dropLastEntry(b []byte) []byte {
	last := 0
	for off := 0; off < len(b); off += 2 + int(binary.BigEndian.Uint16(b[off:])) {
		last = off
	}
	return b[:last]
}

func TestVerifyTreeEmpty(t *testing.T) {
	empty := rfc6962.DefaultHasher.EmptyRoot()
	wrong := bytes.Clone(empty)
	wrong[0] ^= 1
	for _, tc := range []struct {
		name    string
		root    []byte
		wantErr error
	}{
		{"empty root", empty, nil},
		{"other root", wrong, tlog.ErrTreeMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := tlog.VerifyTree(t.Context(), client.FileFetcher{Root: t.TempDir()}, 0, tc.root)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("VerifyTree: got %v, want %v", err, tc.wantErr)
			}
			if err == nil && (rep.Entries != 0 || rep.Tiles != 0) {
				t.Errorf("VerifyTree: got report %+v, want nothing read", rep)
			}
		})
	}
}

func TestVerifyTreeBadInput(t *testing.T) {
	f := client.FileFetcher{Root: t.TempDir()}
	if _, err := tlog.VerifyTree(t.Context(), f, 10, []byte("short")); err == nil {
		t.Error("VerifyTree with a 5-byte root: got nil error")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	root := make([]byte, 32)
	if _, err := tlog.VerifyTree(ctx, f, 1000, root); !errors.Is(err, context.Canceled) {
		t.Errorf("VerifyTree with a cancelled context: got %v, want %v", err, context.Canceled)
	}
}
