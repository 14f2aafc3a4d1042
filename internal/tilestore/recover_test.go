package tilestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/tlog"
)

// Crash states are built two ways: by hand, writing journal segments with
// encodeRecord into an empty directory (what survives a power loss before
// the first sync point: the journal and nothing else), and by copying the
// directory of a live log after its appends returned but before it shut
// down (what survives kill -9: everything in the page cache).

// encodeBatch is the journal record of entries starting at index first.
func encodeBatch(first uint64, entries [][]byte) []byte {
	var payload []byte
	for i, e := range entries {
		payload = append(payload, tessera.NewEntry(e).MarshalBundleData(first+uint64(i))...)
	}
	return encodeRecord(nil, first, uint32(len(entries)), payload)
}

func journalDir(root string) string { return filepath.Join(root, stateDir, "journal") }

// writeJournal writes a journal of entries by hand, as records of at most
// 4096 entries, for the log in root to replay when it opens.
func writeJournal(t *testing.T, root string, entries [][]byte) {
	t.Helper()
	var seg []byte
	for first := 0; first < len(entries); first += 4096 {
		seg = append(seg, encodeBatch(uint64(first), entries[first:min(first+4096, len(entries))])...)
	}
	writeSegment(t, root, 0, seg)
}

// writeSegment writes (or replaces) the journal segment starting at base.
func writeSegment(t *testing.T, root string, base uint64, data []byte) {
	t.Helper()
	if err := os.MkdirAll(journalDir(root), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(journalDir(root), segmentName(base)), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func segmentSize(t *testing.T, root string, base uint64) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(journalDir(root), segmentName(base)))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// checkOpened checks a freshly opened log: its size, and the checkpoint it
// published on opening against x/mod's root of want.
func checkOpened(t *testing.T, l *testLog, want [][]byte) {
	t.Helper()
	n := uint64(len(want))
	if got := l.size(); got != n {
		t.Fatalf("size after recovery = %d, want %d", got, n)
	}
	gotSize, gotRoot := awaitCheckpoint(t, l.reader, n)
	if gotSize != n || !bytes.Equal(gotRoot, tlogRoot(t, want)) {
		t.Fatalf("checkpoint after recovery = %d %x, want %d %x", gotSize, gotRoot, n, tlogRoot(t, want))
	}
}

// continueAndVerify appends a few entries to a recovered log, closes it
// and verifies the whole log.
func continueAndVerify(t *testing.T, l *testLog, want [][]byte) {
	t.Helper()
	more := testEntries("after recovery", 5)
	want = append(slices.Clip(want), inLogOrder(t, more, appendAll(t, l.add, more, 1), uint64(len(want)))...)
	l.close()
	verifyLog(t, dirFiles(l.dir), want)
}

func TestRecoverTornTail(t *testing.T) {
	entries := testEntries("a", 300)
	var seg []byte
	var records []int // end offset of each record
	for _, b := range [][2]int{{0, 1}, {1, 4}, {4, 260}, {260, 300}} {
		seg = append(seg, encodeBatch(uint64(b[0]), entries[b[0]:b[1]])...)
		records = append(records, len(seg))
	}
	lastStart := records[len(records)-2]
	flipped := bytes.Clone(seg)
	flipped[len(flipped)-1] ^= 1

	for _, tc := range []struct {
		name    string
		segment []byte
		size    int // entries that survive
	}{
		{name: "intact", segment: seg, size: 300},
		{name: "final record cut in its payload", segment: seg[:len(seg)-1], size: 260},
		{name: "final record cut in its header", segment: seg[:lastStart+10], size: 260},
		{name: "final record cut after its magic", segment: seg[:lastStart+4], size: 260},
		{name: "final record corrupt", segment: flipped, size: 260},
		{name: "garbage after the final record", segment: append(bytes.Clone(seg), "\x00garbage that is no record"...), size: 300},
		{name: "zeros after the final record", segment: append(bytes.Clone(seg), make([]byte, 4096)...), size: 300},
		{name: "half a magic after the final record", segment: append(bytes.Clone(seg), recordMagic[:2]...), size: 300},
		{name: "every record cut", segment: seg[:recordHeader-1], size: 0},
		{name: "empty segment", segment: nil, size: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeSegment(t, dir, 0, tc.segment)
			l := mustOpenLog(t, Config{Path: dir})
			checkOpened(t, l, entries[:tc.size])
			checkJournalClean(t, dir)
			continueAndVerify(t, l, entries[:tc.size])
		})
	}
}

// checkJournalClean checks that every journal segment holds whole records
// only: a torn tail left in place would end up in front of new records.
func checkJournalClean(t *testing.T, root string) {
	t.Helper()
	bases, err := segments(journalDir(root))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bases {
		data, err := os.ReadFile(filepath.Join(journalDir(root), segmentName(b)))
		if err != nil {
			t.Fatal(err)
		}
		if _, good := decodeRecords(data); good != len(data) {
			t.Errorf("journal segment %s has %d bytes after its last record", segmentName(b), len(data)-good)
		}
	}
}

// A damaged record in the final segment that intact records follow is not a
// torn tail: those records were acknowledged (and maybe published), and
// cutting them would let new entries take their indices.
func TestRecoverDamageBeforeIntactRecords(t *testing.T) {
	entries := testEntries("a", 30)
	seg := encodeBatch(0, entries[:10])
	seg[len(seg)-1] ^= 1 // inside the first record's payload
	seg = append(seg, encodeBatch(10, entries[10:20])...)
	seg = append(seg, encodeBatch(20, entries[20:])...)
	dir := t.TempDir()
	writeSegment(t, dir, 0, seg)
	_, err := openLog(t, Config{Path: dir})
	if err == nil || !strings.Contains(err.Error(), segmentName(0)) {
		t.Fatalf("open with a damaged record before intact ones: err = %v, want an error naming %s", err, segmentName(0))
	}
}

func TestRecoverSegments(t *testing.T) {
	entries := testEntries("a", 40)
	seg0 := append(encodeBatch(0, entries[:10]), encodeBatch(10, entries[10:30])...)
	seg30 := encodeBatch(30, entries[30:35])
	corrupt := bytes.Clone(seg0)
	corrupt[recordHeader+3] ^= 0x80

	type segment struct {
		base uint64
		data []byte
	}
	for _, tc := range []struct {
		name     string
		segments []segment
		size     int    // entries that survive, if the open succeeds
		wantErr  string // or a part of the open's error
	}{
		{name: "two intact segments", segments: []segment{{0, seg0}, {30, seg30}}, size: 35},
		{name: "final segment torn", segments: []segment{{0, seg0}, {30, seg30[:len(seg30)-3]}}, size: 30},
		{name: "final segment empty", segments: []segment{{0, seg0}, {30, nil}}, size: 30},
		{name: "earlier segment torn", segments: []segment{{0, seg0[:len(seg0)-1]}, {30, seg30}}, wantErr: segmentName(0)},
		{name: "earlier segment with trailing garbage", segments: []segment{{0, append(bytes.Clone(seg0), "junk"...)}, {30, seg30}}, wantErr: segmentName(0)},
		{name: "earlier segment corrupt", segments: []segment{{0, corrupt}, {30, seg30}}, wantErr: segmentName(0)},
		{name: "middle segment torn", segments: []segment{{0, seg0}, {30, seg30[:10]}, {35, encodeBatch(35, entries[35:])}}, wantErr: segmentName(30)},
		{name: "gap between records", segments: []segment{{0, seg0}, {31, encodeBatch(31, entries[31:35])}}, wantErr: "record at 31 follows size 30"},
		{name: "records before the start", segments: []segment{{5, encodeBatch(5, entries[5:10])}}, wantErr: "record at 5 follows size 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, s := range tc.segments {
				writeSegment(t, dir, s.base, s.data)
			}
			l, err := openLog(t, Config{Path: dir})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("open: err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			checkOpened(t, l, entries[:tc.size])
			continueAndVerify(t, l, entries[:tc.size])
		})
	}
}

func TestRecoverStrayJournalFile(t *testing.T) {
	dir := t.TempDir()
	writeSegment(t, dir, 0, encodeBatch(0, testEntries("a", 3)))
	if err := os.WriteFile(filepath.Join(journalDir(dir), "notanumber.wal"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := openLog(t, Config{Path: dir}); err == nil || !strings.Contains(err.Error(), "notanumber.wal") {
		t.Fatalf("open with a stray journal file: err = %v, want one naming it", err)
	}
}

// copyTree copies the directory of a live log. Files can vanish under it
// while a sync point removes old segments and partial tiles; it then
// starts over.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	for try := 0; ; try++ {
		dst := filepath.Join(t.TempDir(), "copy")
		err := os.CopyFS(dst, os.DirFS(src))
		if err == nil {
			return dst
		}
		if !errors.Is(err, fs.ErrNotExist) || try == 20 {
			t.Fatalf("copying %s: %v", src, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRecoverCrashCopy recovers copies of live logs: what kill -9 leaves
// (the page cache made it to the files) and what a power loss before the
// first sync point leaves (only the synced journal).
func TestRecoverCrashCopy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		segSize int64
		damage  func(t *testing.T, dir string)
	}{
		{name: "kill -9"},
		{name: "kill -9 with sync points", segSize: 4 << 10},
		{name: "power loss before a sync point", damage: func(t *testing.T, dir string) {
			if _, err := os.Stat(filepath.Join(dir, stateDir, markerFile)); err == nil {
				t.Fatal("a sync point happened; the tiles cannot be dropped")
			}
			for _, p := range []string{"tile", layout.CheckpointPath} {
				if err := os.RemoveAll(filepath.Join(dir, p)); err != nil {
					t.Fatal(err)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entries := testEntries("a", 600)
			live := mustOpenLog(t, Config{Path: t.TempDir(), SegmentSize: tc.segSize}, withBatching(32))
			want := inLogOrder(t, entries, appendAll(t, live.add, entries, 8), 0)
			// Let the last checkpoint be written before copying.
			awaitCheckpoint(t, live.reader, uint64(len(want)))
			crashed := copyTree(t, live.dir)
			live.close()
			verifyLog(t, dirFiles(live.dir), want)

			if tc.damage != nil {
				tc.damage(t, crashed)
			}
			l := mustOpenLog(t, Config{Path: crashed, SegmentSize: tc.segSize})
			checkOpened(t, l, want)
			continueAndVerify(t, l, want)
		})
	}
}

// TestSyncPoints runs a log with a 4 KiB journal segment size, so that
// sync points come every few batches.
func TestSyncPoints(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Path: dir, SegmentSize: 4 << 10}
	entries := testEntries("a", 3000)
	l := mustOpenLog(t, cfg, withBatching(64))
	want := inLogOrder(t, entries, appendAll(t, l.add, entries, 16), 0)
	if m, err := readMarker(dir); err != nil || m == 0 {
		t.Errorf("sync marker while running = %d, %v; want sync points to have happened", m, err)
	}
	// Each sync point removes the segments below its marker. (One may be
	// under way still; its removals follow its marker.)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		m, err := readMarker(dir)
		if err != nil {
			t.Fatal(err)
		}
		bases, err := segments(journalDir(dir))
		if err != nil {
			t.Fatal(err)
		}
		if len(bases) > 0 && bases[0] >= m {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("journal segments %v below the sync marker %d", bases, m)
		}
	}
	l.close()

	// The final sync point covers everything and leaves one empty segment.
	if m, err := readMarker(dir); err != nil || m != uint64(len(want)) {
		t.Errorf("sync marker after close = %d, %v; want %d", m, err, len(want))
	}
	if bases, err := segments(journalDir(dir)); err != nil || len(bases) != 1 || bases[0] != uint64(len(want)) {
		t.Errorf("journal segments after close = %v, %v; want [%d]", bases, err, len(want))
	} else if got := segmentSize(t, dir, bases[0]); got != 0 {
		t.Errorf("final segment has %d bytes, want 0", got)
	}
	verifyLog(t, dirFiles(dir), want)

	l = mustOpenLog(t, cfg, withBatching(64))
	checkOpened(t, l, want)
	continueAndVerify(t, l, want)
}

// fullTilePartials lists the partial-tile and partial-bundle directories of
// tiles that are full in a tree of the given size.
func fullTilePartials(t *testing.T, dir string, size uint64) []string {
	t.Helper()
	var found []string
	for level := uint64(0); size>>(8*(level+1)) > 0; level++ {
		for n := range size >> (8 * (level + 1)) {
			ps := []string{layout.TilePath(level, n, 0) + ".p"}
			if level == 0 {
				ps = append(ps, layout.EntriesPath(n, 0)+".p")
			}
			for _, p := range ps {
				if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
					found = append(found, p)
				}
			}
		}
	}
	return found
}

// Sync points remove the partial tiles and bundles whose full version is
// durable, all of them: also those of tiles that were rightmost at an
// earlier sync point and filled up since, several tiles ago.
func TestSyncPointRemovesPartials(t *testing.T) {
	for _, tc := range []struct {
		name    string
		segSize int64
		phases  []int // entries appended before each clean shutdown
	}{
		{name: "small segments", segSize: 4 << 10, phases: []int{3000}},
		{name: "tiles filled between shutdowns", phases: []int{100, 600, 1000}},
		{name: "several tiles filled after a small segment", segSize: 4 << 10, phases: []int{100, 2000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			size := 0
			for i, n := range tc.phases {
				l := mustOpenLog(t, Config{Path: dir, SegmentSize: tc.segSize}, withBatching(4096))
				appendAll(t, l.add, testEntries(fmt.Sprint(i), n), 16)
				l.close()
				size += n
				if left := fullTilePartials(t, dir, uint64(size)); len(left) > 0 {
					t.Errorf("at size %d, partials of full tiles left after the final sync point: %v", size, left)
				}
			}
		})
	}
}

// TestReadPartialFromFull checks that partial tiles and bundles whose
// files are gone (garbage-collected) are cut from the full resource, for
// readers and for recovery.
func TestReadPartialFromFull(t *testing.T) {
	// A log big enough for a full level-1 tile, built fast: its journal is
	// written by hand and replayed when the log opens.
	dir := t.TempDir()
	want := testEntries("a", 70000)
	writeJournal(t, dir, want)
	l := mustOpenLog(t, Config{Path: dir})
	checkOpened(t, l, want)
	l.close()
	for _, p := range fullTilePartials(t, dir, uint64(len(want))) {
		if err := os.RemoveAll(filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}

	ctx := context.Background()
	l = mustOpenLog(t, Config{Path: dir})
	r := l.reader
	hr := storedHashes(t, want)
	for _, tc := range []struct{ level, index uint64 }{{0, 0}, {0, 1}, {0, 272}, {1, 0}} {
		for _, p := range []uint8{1, 17, 255} {
			wantTile, err := tlog.ReadTileData(tlog.Tile{H: layout.TileHeight, L: int(tc.level), N: int64(tc.index), W: int(p)}, hr)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := r.ReadTile(ctx, tc.level, tc.index, p); err != nil || !bytes.Equal(got, wantTile) {
				t.Errorf("ReadTile(%d, %d, %d) = %d bytes, %v; want x/mod's %d bytes", tc.level, tc.index, p, len(got), err, len(wantTile))
			}
			if tc.level != 0 {
				continue
			}
			var wantBundle []byte
			for i := range uint64(p) {
				idx := tc.index*layout.EntryBundleWidth + i
				wantBundle = append(wantBundle, tessera.NewEntry(want[idx]).MarshalBundleData(idx)...)
			}
			if got, err := r.ReadEntryBundle(ctx, tc.index, p); err != nil || !bytes.Equal(got, wantBundle) {
				t.Errorf("ReadEntryBundle(%d, %d) = %d bytes, %v; want %d bytes", tc.index, p, len(got), err, len(wantBundle))
			}
		}
	}
	// A partial resource that never existed is still an error.
	if _, err := r.ReadTile(ctx, 0, 300, 1); err == nil {
		t.Error("ReadTile of a tile beyond the tree succeeded")
	}
	if _, err := r.ReadEntryBundle(ctx, 273, 200); err == nil {
		t.Error("ReadEntryBundle of more entries than the bundle has succeeded")
	}
	verifyLog(t, r, want)
}

// TestRecoverPartialsGone recovers from a sync marker whose partial tiles
// and bundle have since been removed because their tiles filled up: the
// tree state at the marker is cut from the full tiles.
func TestRecoverPartialsGone(t *testing.T) {
	dir := t.TempDir()
	entries := testEntries("a", 600)
	l := mustOpenLog(t, Config{Path: dir})
	want := inLogOrder(t, entries[:300], appendAll(t, l.add, entries[:300], 8), 0)
	l.close() // sync point at 300

	l = mustOpenLog(t, Config{Path: dir})
	want = append(want, inLogOrder(t, entries[300:], appendAll(t, l.add, entries[300:], 8), 300)...) // tile 1 is full now
	awaitCheckpoint(t, l.reader, 600)
	crashed := copyTree(t, dir)
	if m, err := readMarker(crashed); err != nil || m != 300 {
		t.Fatalf("sync marker in the copy = %d, %v; want 300", m, err)
	}
	for _, p := range []string{layout.TilePath(0, 1, 0) + ".p", layout.EntriesPath(1, 0) + ".p"} {
		if err := os.RemoveAll(filepath.Join(crashed, p)); err != nil {
			t.Fatal(err)
		}
	}
	l2 := mustOpenLog(t, Config{Path: crashed})
	checkOpened(t, l2, want)
	continueAndVerify(t, l2, want)
}

// A store that failed while integrating a batch must not reach another
// sync point: the tree has advanced past tiles that were never written,
// and a sync point would record that size and drop the journal that can
// rebuild them.
func TestBrokenStoreKeepsJournal(t *testing.T) {
	dir := t.TempDir()
	want := testEntries("before", layout.EntryBundleWidth-1)
	writeJournal(t, dir, want)
	// Writing bundle 0 out when it fills up fails: its temporary name is a
	// directory.
	block := filepath.Join(dir, layout.EntriesPath(0, 0)+".tmp")
	if err := os.MkdirAll(block, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Path: dir, SyncInterval: 5 * time.Millisecond}
	l := mustOpenLog(t, cfg)
	checkOpened(t, l, want)
	synced, err := readMarker(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.add(context.Background(), tessera.NewEntry([]byte("failed")))(); err == nil {
		t.Fatal("append succeeded although its bundle could not be written")
	}
	time.Sleep(20 * cfg.SyncInterval) // give the periodic sync point its chances
	l.close()
	if m, err := readMarker(dir); err != nil || m != synced {
		t.Errorf("sync marker after the failure = %d, %v; want %d, as before it", m, err, synced)
	}

	if err := os.Remove(block); err != nil {
		t.Fatal(err)
	}
	l, err = openLog(t, cfg)
	if err != nil {
		t.Fatalf("reopening after the failure: %v", err)
	}
	// The entry was journaled before the failure, so it is replayed.
	want = append(want, []byte("failed"))
	checkOpened(t, l, want)
	continueAndVerify(t, l, want)
}

// A log whose journal lost records that a published checkpoint covers must
// not open: new entries would take the lost indices and fork the log.
// (The journal is synced before an index is returned, so this takes
// storage that lost synced data, or a damaged record treated as a torn
// tail.)
func TestRecoverBelowPublishedCheckpoint(t *testing.T) {
	entries := testEntries("a", 300)
	live := mustOpenLog(t, Config{Path: t.TempDir()}, withBatching(32))
	appendAll(t, live.add, entries, 1)
	awaitCheckpoint(t, live.reader, 300)
	crashed := copyTree(t, live.dir)
	live.close()

	// Lose the final record, and the tiles: only the checkpoint tells.
	seg := filepath.Join(journalDir(crashed), segmentName(0))
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(seg, data[:len(data)-1], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(crashed, "tile")); err != nil {
		t.Fatal(err)
	}
	if _, err := openLog(t, Config{Path: crashed}); err == nil {
		t.Fatal("open recovered a log smaller than its published checkpoint")
	}
}
