package tilestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// A store that fails to write or sync (a full disk, an I/O error) is
// broken: the files and the page cache no longer say what is durable, so
// it refuses every append, failing closed, and acknowledges nothing more.
// It does not wait for a restart to mend. The sequencer tries to recover
// at growing intervals (Config.RecoveryInterval doubling up to
// Config.RecoveryIntervalMax): each attempt first checks that the log's
// file system takes a synced write again, then rebuilds the store from its
// directory exactly as opening does (marker, tiles, journal replay, a sync
// point that rewrites what it replayed) into a fresh store, whose state
// replaces the broken one's. Appends are refused until then, with an error
// wrapping ErrBroken. One line is logged when the store breaks and one when
// it recovers (and one when an attempt fails for a new reason), never one
// per refused append: [Driver.Health] counts those.

// ErrBroken is the error, wrapped, of an append refused because storage
// failed. The store recovers by itself once storage works again; retry
// after [Health.RetryAfter].
var ErrBroken = errors.New("log storage failed")

// errBroken is the internal name of ErrBroken.
var errBroken = ErrBroken

// State is the state of a store's storage.
type State int

// States of a store.
const (
	// Healthy stores take appends.
	Healthy State = iota
	// Broken stores refuse appends until a recovery attempt succeeds.
	Broken
	// Recovering stores are broken and running a recovery attempt.
	Recovering
	// Closed stores have shut down (or not opened yet).
	Closed
)

func (s State) String() string {
	switch s {
	case Healthy:
		return "healthy"
	case Broken:
		return "broken"
	case Recovering:
		return "recovering"
	}
	return "closed"
}

// MarshalText writes the state's name, as in JSON health reports.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a state's name.
func (s *State) UnmarshalText(b []byte) error {
	for st := Healthy; st <= Closed; st++ {
		if st.String() == string(b) {
			*s = st
			return nil
		}
	}
	return fmt.Errorf("unknown storage state %q", b)
}

// Health is a report of a store's storage, for readiness checks and
// operators.
type Health struct {
	State State `json:"state"`
	// Since is when the store broke (Broken, Recovering).
	Since time.Time `json:"since,omitzero"`
	// Reason is the failure that broke it.
	Reason string `json:"reason,omitempty"`
	// Attempts counts the recovery attempts since it broke, and
	// LastAttempt says why the last one failed.
	Attempts    int    `json:"attempts,omitempty"`
	LastAttempt string `json:"last_attempt,omitempty"`
	// NextAttempt is when the next recovery attempt is due.
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// Refused counts the appends refused since it broke.
	Refused uint64 `json:"refused,omitempty"`
	// Recoveries counts the times the store recovered in process since it
	// opened, and Recovered is when it last did.
	Recoveries int       `json:"recoveries,omitempty"`
	Recovered  time.Time `json:"recovered,omitzero"`
}

// OK reports whether the store takes appends.
func (h Health) OK() bool { return h.State == Healthy }

// Summary says in one line what state the storage is in, since when and
// how many appends it refused, without the reason (which may name files):
// "storage broken since 2025-01-02T03:04:05Z, 12 appends refused".
func (h Health) Summary() string {
	line := "storage " + h.State.String()
	if !h.Since.IsZero() {
		line += " since " + h.Since.UTC().Format(time.RFC3339)
	}
	if h.Refused > 0 {
		line += fmt.Sprintf(", %d appends refused", h.Refused)
	}
	return line
}

// RetryAfter is how long a client refused by a broken store should wait
// before trying again: until the next recovery attempt, and at least a
// second.
func (h Health) RetryAfter(now time.Time) time.Duration {
	if h.State == Healthy {
		return 0
	}
	return max(time.Second, h.NextAttempt.Sub(now).Round(time.Second))
}

// Health reports the state of the store's storage. It is safe for
// concurrent use and cheap enough to call before every append.
func (d *Driver) Health() Health {
	s := d.st.Load()
	if s == nil {
		return Health{State: Closed}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.health
}

// OK reports whether the store takes appends now, without the store's
// lock: it is asked before every logged read, which must not queue behind
// the appends.
func (d *Driver) OK() bool {
	s := d.st.Load()
	return s != nil && !s.down.Load()
}

// setHealth replaces the store's health. The caller holds s.mu.
func (s *store) setHealth(h Health) {
	s.health = h
	s.down.Store(h.State != Healthy)
}

// fail breaks the store with err unless it is broken already, and logs
// that once. It runs on the sequencer goroutine.
func (s *store) fail(err error) {
	s.mu.Lock()
	if s.broken != nil {
		s.mu.Unlock()
		return
	}
	if !errors.Is(err, ErrBroken) {
		err = fmt.Errorf("%w: %w", ErrBroken, err)
	}
	now := time.Now()
	s.broken = err
	s.refusal = fmt.Errorf("%w; appends are refused until it recovers, which it does by itself once storage works (broken since %s)", err, now.UTC().Format(time.RFC3339))
	// The first attempt's time is known now; the recovery loop sets it
	// again when it schedules it. A report between the two once showed a
	// broken store with no attempt due.
	s.setHealth(Health{State: Broken, Since: now, Reason: err.Error(), Recoveries: s.health.Recoveries, Recovered: s.health.Recovered,
		NextAttempt: now.Add(s.recIvl)})
	s.mu.Unlock()
	s.avail = freeSpace(s.root)
	s.logger.Error("log storage failed: refusing appends and recovering in process", "path", s.root, "err", err)
}

// recoveryDelay returns how long to wait before the next recovery
// attempt after n failed ones, and records when it is due.
func (s *store) recoveryDelay(n int) time.Duration {
	d := s.recIvl
	for i := 0; i < n && d < s.recMax; i++ {
		d *= 2
	}
	d = min(d, s.recMax)
	s.mu.Lock()
	s.health.NextAttempt = time.Now().Add(d)
	s.mu.Unlock()
	return d
}

// tryRecover makes one recovery attempt. It runs on the sequencer
// goroutine, which owns the journal and the tree, so no append is
// integrated meanwhile: add refuses them while the store is broken.
func (s *store) tryRecover(ctx context.Context) {
	s.mu.Lock()
	s.health.State = Recovering
	s.health.Attempts++
	s.mu.Unlock()

	err := s.probe()
	if err == nil {
		err = s.reopen(ctx)
	}

	s.mu.Lock()
	if err != nil {
		again := s.health.LastAttempt == err.Error()
		s.health.State, s.health.LastAttempt = Broken, err.Error()
		s.mu.Unlock()
		s.avail = freeSpace(s.root)
		if !again && ctx.Err() == nil {
			s.logger.Warn("log storage not recovered yet", "path", s.root, "err", err)
		}
		return
	}
	since, refused := s.health.Since, s.health.Refused
	s.broken, s.refusal = nil, nil
	s.setHealth(Health{State: Healthy, Recoveries: s.health.Recoveries + 1, Recovered: time.Now()})
	size := s.size
	s.mu.Unlock()
	s.logger.Info("log storage recovered in process; appends resume", "path", s.root, "size", size, "broken_for", time.Since(since).Round(time.Millisecond), "refused", refused)
	select {
	case s.pubKick <- struct{}{}:
	default:
	}
}

// spaceWatch is how often a broken store looks whether its file system
// has space again, and spaceStep how much more free space than it saw
// since it broke (or last failed to recover) calls for a recovery attempt
// before the backoff's: an operator freeing space expects the log back
// within seconds, not at the next doubled wait.
const (
	spaceWatch = time.Second
	spaceStep  = 1 << 20
)

// outOfSpace reports whether the store broke for want of space: only then
// does freed space call for an attempt before the backoff's. (After an I/O
// error, space others free on a shared disk says nothing.)
func (s *store) outOfSpace() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Is(s.broken, unix.ENOSPC) || errors.Is(s.broken, unix.EDQUOT)
}

// spaceReturned reports whether the log's file system has spaceStep more
// free space than the least seen since the store broke or last failed to
// recover. It costs one statfs.
func (s *store) spaceReturned() bool {
	avail := freeSpace(s.root)
	if avail < s.avail {
		s.avail = avail
	}
	return avail >= s.avail+spaceStep
}

// freeSpace is the space unprivileged users may still take in the file
// system of dir, 0 if it cannot tell.
func freeSpace(dir string) uint64 {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0
	}
	return st.Bavail * uint64(st.Bsize)
}

const probeFile = "probe"

// probe checks that the log's file system takes a synced write again,
// before a recovery attempt does more.
func (s *store) probe() error {
	if err := s.fault("probe", probeFile); err != nil {
		return fmt.Errorf("probing storage: %w", err)
	}
	p := filepath.Join(s.root, stateDir, probeFile)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("probing storage: %w", err)
	}
	_, err = f.Write(make([]byte, 64<<10))
	if err == nil {
		err = unix.Fdatasync(int(f.Fd()))
	}
	f.Close()
	if rerr := os.Remove(p); err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("probing storage: %w", err)
	}
	return nil
}

// reopen rebuilds the store from its directory, as opening does, into a
// fresh store and takes over its state. The broken store's state is left
// alone if that fails.
func (s *store) reopen(ctx context.Context) error {
	ns := &store{
		root:     s.root,
		logger:   s.logger,
		segSize:  s.segSize,
		syncIvl:  s.syncIvl,
		maxBatch: s.maxBatch,
		maxQueue: s.maxQueue,
		tiles:    map[uint64]*tileBuf{},
		dirs:     map[string]bool{},
		faults:   s.faults,
	}
	ns.reader = &reader{root: s.root}
	if err := ns.rebuild(ctx); err != nil {
		return fmt.Errorf("recovering from the journal: %w", err)
	}
	old := s.j
	s.tmu.Lock()
	s.cr, s.tiles, s.bundle, s.bundleN = ns.cr, ns.tiles, ns.bundle, ns.bundleN
	s.mu.Lock()
	s.size, s.rootHsh = ns.size, ns.rootHsh
	s.mu.Unlock()
	s.tmu.Unlock()
	s.j, s.dirs, s.synced = ns.j, ns.dirs, ns.synced
	if old != nil {
		_ = old.close() // perhaps closed already, by a failed sync point
	}
	return nil
}

// fault returns the injected failure of op on path, if any (tests).
func (s *store) fault(op, path string) error {
	if s.faults == nil {
		return nil
	}
	return s.faults(op, path)
}
