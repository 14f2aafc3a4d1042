package tilestore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
)

// diskFaults fails the file operations it is told to with ENOSPC, as a
// full disk does, until it is cleared.
type diskFaults struct {
	mu  sync.Mutex
	ops map[string]bool // "write", "syncfs", "probe"
	hit atomic.Int64
}

func (f *diskFaults) set(ops ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = map[string]bool{}
	for _, op := range ops {
		f.ops[op] = true
	}
}

func (f *diskFaults) fail(op, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ops[op] {
		f.hit.Add(1)
		return syscall.ENOSPC
	}
	return nil
}

// lines counts log records by level, and keeps their messages.
type lines struct {
	mu   sync.Mutex
	n    map[slog.Level]int
	msgs []string
}

func (l *lines) Enabled(context.Context, slog.Level) bool { return true }
func (l *lines) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == nil {
		l.n = map[slog.Level]int{}
	}
	l.n[r.Level]++
	l.msgs = append(l.msgs, r.Level.String()+" "+r.Message)
	return nil
}
func (l *lines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *lines) WithGroup(string) slog.Handler      { return l }

func (l *lines) count(level slog.Level) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[level]
}

func (l *lines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.msgs)
}

// awaitHealth waits until the driver reports a health that ok accepts.
func awaitHealth(t *testing.T, d *Driver, what string, ok func(Health) bool) Health {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		h := d.Health()
		if ok(h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: health after 20s is %+v", what, h)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// awaitSynced waits until a sync point covers size entries, so that the
// next one comes only after more are appended.
func awaitSynced(t *testing.T, dir string, size uint64) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		if m, err := readMarker(dir); err == nil && m == size {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("sync marker = %d, %v after 20s; want %d", m, err, size)
		}
	}
}

// appendOne appends e and returns its index or the error.
func appendOne(l *testLog, e []byte) (uint64, error) {
	idx, err := l.add(context.Background(), tessera.NewEntry(e))()
	return idx.Index, err
}

// A sync point that fails (the disk is full) breaks the store: it refuses
// appends, and once writes succeed again it recovers in process, as a
// restart would, without losing anything it acknowledged, logging one
// line when it breaks and one when it recovers however many appends it
// refused.
func TestRecoverInProcessAfterFailedSyncPoint(t *testing.T) {
	dir := t.TempDir()
	faults := &diskFaults{}
	logged := &lines{}
	cfg := Config{
		Path:                dir,
		SyncInterval:        10 * time.Millisecond,
		RecoveryInterval:    5 * time.Millisecond,
		RecoveryIntervalMax: 20 * time.Millisecond,
		Logger:              slog.New(logged),
		faults:              faults.fail,
	}
	l := mustOpenLog(t, cfg)
	before := testEntries("before", 300) // a full bundle and tile, and partials
	want := inLogOrder(t, before, appendAll(t, l.add, before, 4), 0)
	if h := l.driver.Health(); h.State != Healthy {
		t.Fatalf("health of a working store = %+v, want healthy", h)
	}

	awaitSynced(t, dir, uint64(len(want)))
	// The disk fills up. The journal still takes an entry (its segment
	// has room), which is acknowledged: it must survive.
	faults.set("write", "syncfs", "probe")
	idx, err := appendOne(l, []byte("acknowledged while the disk filled"))
	if err != nil {
		t.Fatalf("append before the sync point: %v", err)
	}
	if idx != uint64(len(want)) {
		t.Fatalf("index %d, want %d", idx, len(want))
	}
	want = append(want, []byte("acknowledged while the disk filled"))
	h := awaitHealth(t, l.driver, "the failed sync point to break the store", func(h Health) bool { return !h.OK() })
	if h.Since.IsZero() || h.Reason == "" {
		t.Errorf("broken health = %+v, want when and why", h)
	}

	// Appends are refused, with ErrBroken, while the disk stays full, and
	// the recovery attempts fail.
	const refused = 50
	for i := range refused {
		if _, err := appendOne(l, []byte("refused")); !errors.Is(err, ErrBroken) {
			t.Fatalf("append %d to a broken store: err = %v, want ErrBroken", i, err)
		}
	}
	h = awaitHealth(t, l.driver, "recovery attempts", func(h Health) bool { return h.Attempts >= 3 })
	if h.OK() || h.Refused < refused {
		t.Fatalf("health while the disk is full = %+v, want broken with %d refused", h, refused)
	}

	// Space comes back: the store recovers by itself.
	faults.set()
	h = awaitHealth(t, l.driver, "recovery", Health.OK)
	if h.Recoveries != 1 || h.Recovered.IsZero() {
		t.Errorf("health after recovery = %+v, want one recovery", h)
	}
	if got := l.size(); got != uint64(len(want)) {
		t.Fatalf("size after recovery = %d, want %d", got, len(want))
	}
	after := testEntries("after", 300)
	want = append(want, inLogOrder(t, after, appendAll(t, l.add, after, 4), uint64(len(want)))...)
	l.close()
	verifyLog(t, dirFiles(dir), want)

	// One line when it broke, one when it recovered; a failed attempt is
	// logged only when its reason changes.
	if got := logged.count(slog.LevelError); got != 1 {
		t.Errorf("%d error lines, want 1 (the failure): %q", got, logged.all())
	}
	if got := logged.count(slog.LevelWarn); got > 2 {
		t.Errorf("%d warning lines for %d refused appends and %d attempts, want at most 2: %q", got, refused, h.Attempts, logged.all())
	}
	if !slices.ContainsFunc(logged.all(), func(m string) bool { return m == "INFO log storage recovered in process; appends resume" }) {
		t.Errorf("no line saying the store recovered: %q", logged.all())
	}
}

// A store broken while integrating a batch (writing a full bundle failed)
// holds a tree ahead of its files. Recovery must rebuild from the journal,
// not go on from that state: the batch, journaled before the failure, is
// replayed, as a restart would.
func TestRecoverInProcessAfterFailedIntegrate(t *testing.T) {
	dir := t.TempDir()
	faults := &diskFaults{}
	cfg := Config{Path: dir, RecoveryInterval: 5 * time.Millisecond, faults: faults.fail}
	l := mustOpenLog(t, cfg)
	want := testEntries("before", layout.EntryBundleWidth-1)
	appendAll(t, l.add, want, 1)

	faults.set("write", "probe")
	// This entry fills bundle 0, which cannot be written.
	if _, err := appendOne(l, []byte("journaled, then failed")); !errors.Is(err, ErrBroken) {
		t.Fatalf("append whose bundle cannot be written: err = %v, want ErrBroken", err)
	}
	awaitHealth(t, l.driver, "attempts while writes fail", func(h Health) bool { return h.Attempts >= 2 })
	faults.set()
	awaitHealth(t, l.driver, "recovery", Health.OK)
	want = append(want, []byte("journaled, then failed"))
	continueAndVerify(t, l, want)
}

// Recovery that fails after the probe (the rebuild needs more than the
// probe wrote) leaves the store broken and in its state, and a later
// attempt recovers.
func TestRecoverInProcessRebuildFails(t *testing.T) {
	dir := t.TempDir()
	faults := &diskFaults{}
	cfg := Config{Path: dir, SyncInterval: 10 * time.Millisecond, RecoveryInterval: 5 * time.Millisecond, RecoveryIntervalMax: 10 * time.Millisecond, faults: faults.fail}
	l := mustOpenLog(t, cfg)
	want := testEntries("before", 100)
	appendAll(t, l.add, want, 1)
	awaitSynced(t, dir, uint64(len(want)))
	faults.set("syncfs") // the probe passes, the rebuild's sync point does not
	if _, err := appendOne(l, []byte("last")); err != nil {
		t.Fatal(err)
	}
	want = append(want, []byte("last"))
	awaitHealth(t, l.driver, "failed recovery attempts", func(h Health) bool { return h.Attempts >= 3 && h.LastAttempt != "" })
	if got := l.size(); got != uint64(len(want)) {
		t.Fatalf("size while broken = %d, want %d", got, len(want))
	}
	faults.set()
	awaitHealth(t, l.driver, "recovery", Health.OK)
	continueAndVerify(t, l, want)
}

func TestHealthRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		h    Health
		want time.Duration
	}{
		{Health{State: Healthy}, 0},
		{Health{State: Broken, NextAttempt: now.Add(8 * time.Second)}, 8 * time.Second},
		{Health{State: Recovering, NextAttempt: now.Add(-time.Second)}, time.Second},
		{Health{State: Broken, NextAttempt: now.Add(100 * time.Millisecond)}, time.Second},
	}
	for _, tt := range tests {
		if got := tt.h.RetryAfter(now); got != tt.want {
			t.Errorf("%+v.RetryAfter = %v, want %v", tt.h, got, tt.want)
		}
	}
}

func TestStateText(t *testing.T) {
	for st := Healthy; st <= Closed; st++ {
		b, err := st.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var got State
		if err := got.UnmarshalText(b); err != nil || got != st {
			t.Errorf("state %v: text %q reads back as %v, %v", st, b, got, err)
		}
	}
	var s State
	if err := s.UnmarshalText([]byte("on fire")); err == nil {
		t.Error("an unknown state name was accepted")
	}
}

// A checkpoint that cannot be written (the disk is full) is not signed,
// witnessed and tried again at every checkpoint interval: the publisher
// backs off, logs the failure once, and publishes again once it can.
func TestPublishBacksOff(t *testing.T) {
	dir := t.TempDir()
	faults := &diskFaults{}
	logged := &lines{}
	l := mustOpenLog(t, Config{Path: dir, Logger: slog.New(logged), faults: faults.fail})
	faults.set("checkpoint")
	want := testEntries("a", 10)
	appendAll(t, l.add, want, 1)
	for range 20 { // every one asks for a publication
		time.Sleep(15 * time.Millisecond) // a checkpoint interval and a half
		want = append(want, []byte("more"))
		if _, err := appendOne(l, want[len(want)-1]); err != nil {
			t.Fatal(err)
		}
	}
	// 300ms of 10ms checkpoint intervals, and a first retry after 0.5–1s.
	if n := faults.hit.Load(); n > 2 {
		t.Errorf("%d publications tried in 300ms while checkpoints cannot be written, want at most 2", n)
	}
	if n := logged.count(slog.LevelWarn); n > 1 {
		t.Errorf("%d warnings, want at most 1: %q", n, logged.all())
	}
	faults.set()
	awaitCheckpoint(t, l.reader, uint64(len(want)))
}

// A store on a real file system that filled up recovers within seconds of
// space coming back, long before its next recovery attempt is due: it
// watches the free space (one statfs a second) while broken.
func TestRecoverWhenSpaceReturns(t *testing.T) {
	mnt := mountTmpfs(t, "4m")
	cfg := Config{Path: filepath.Join(mnt, "log"), RecoveryInterval: time.Hour}
	l := mustOpenLog(t, cfg)
	want := testEntries("before", 100)
	appendAll(t, l.add, want, 1)
	filler := fill(t, mnt)
	for i := 0; ; i++ {
		e := fmt.Appendf(nil, "while the disk fills %d", i)
		_, err := appendOne(l, e)
		if errors.Is(err, ErrBroken) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if want = append(want, e); i > 1000 {
			t.Fatal("appends succeed on a full disk")
		}
	}
	h := awaitHealth(t, l.driver, "the store to break", func(h Health) bool { return !h.OK() })
	if h.NextAttempt.Before(time.Now().Add(time.Minute)) {
		t.Fatalf("next attempt due at %v, want in an hour", h.NextAttempt)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	h = awaitHealth(t, l.driver, "recovery once space came back", Health.OK)
	if h.Recoveries != 1 {
		t.Errorf("health %+v, want one recovery", h)
	}
	after := testEntries("after", 300)
	appendAll(t, l.add, after, 1)
	want = append(want, after...)
	l.close()
	verifyLog(t, dirFiles(cfg.Path), want)
}
