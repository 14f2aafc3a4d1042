package rebuilder

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/rebuild"
	"github.com/vitrine-dev/vitrine/tlog"
)

// state is what the rebuilder remembers between passes and restarts.
type state struct {
	// The last checkpoint verified under the witness policy, as a
	// monitor keeps it.
	tlog.State
	// Next is the index of the first entry without a verdict.
	Next uint64 `json:"next"`
	// LogKey and ReleaseKey are pinned on first use.
	LogKey     string `json:"log_key"`
	ReleaseKey string `json:"release_key"`
}

func (r *Rebuilder) loadState() (*state, error) {
	b, err := os.ReadFile(r.statePath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading rebuilder state: %w", err)
	}
	var s state
	if err := httpapi.DecodeStrict(b, &s); err != nil {
		return nil, fmt.Errorf("loading rebuilder state from %s: corrupt: %w", r.statePath(), err)
	}
	if s.Next > s.Size || len(s.Root) != 32 || s.Origin == "" {
		return nil, fmt.Errorf("loading rebuilder state from %s: corrupt: next %d, size %d, root of %d bytes", r.statePath(), s.Next, s.Size, len(s.Root))
	}
	return &s, nil
}

// saveState replaces the state atomically and durably.
func (r *Rebuilder) saveState(s *state) error {
	b, err := jsonIndent(s)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(r.statePath(), b, 0o600); err != nil {
		return fmt.Errorf("saving rebuilder state: %w", err)
	}
	return nil
}

// checkpoint reads the release log's checkpoint, verifies it under the
// witness policy, checks the pinned keys and proves it consistent with the
// state's. It returns the state to continue from, with the new checkpoint
// (not yet saved), and the checkpoint.
func (r *Rebuilder) checkpoint(ctx context.Context, t *trust) (*state, *tlog.Checkpoint, error) {
	prev, err := r.loadState()
	if err != nil {
		return nil, nil, err
	}
	if prev != nil && (prev.LogKey != t.logKey || prev.ReleaseKey != t.releasePEM) {
		return nil, nil, fmt.Errorf("%w: the discovery document names release-log key %q and a release key that the state (%s) does not pin",
			ErrKeyChanged, t.logKey, r.statePath())
	}
	cp, err := t.log.Checkpoint(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("the release log: %w", err)
	}
	next := &state{State: tlog.State{Origin: cp.Origin, Size: cp.Size, Root: cp.Hash, Checkpoint: cp.Raw}, LogKey: t.logKey, ReleaseKey: t.releasePEM}
	if prev == nil {
		return next, cp, nil
	}
	next.Next = prev.Next
	if prev.Origin != cp.Origin {
		return nil, nil, fmt.Errorf("the release log's origin is %q, the state's %q", cp.Origin, prev.Origin)
	}
	if err := t.log.ConsistentState(ctx, &prev.State, cp); err != nil {
		return nil, nil, fmt.Errorf("the release log: %w", err)
	}
	return next, cp, nil
}

// begin reads the discovery document and the release log's checkpoint,
// verified and proved consistent with the state's.
func (r *Rebuilder) begin(ctx context.Context) (*trust, *state, *tlog.Checkpoint, error) {
	t, err := r.resolve(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	st, cp, err := r.checkpoint(ctx, t)
	return t, st, cp, err
}

// readEntry reads the entry at index from the log's tiles and proves it
// included in cp, a checkpoint verified under the witness policy.
func readEntry(ctx context.Context, t *trust, cp *tlog.Checkpoint, index uint64) ([]byte, error) {
	entry, _, err := t.log.Entry(ctx, cp, index)
	if err != nil {
		return nil, fmt.Errorf("release-log entry %d: %w", index, err)
	}
	return entry, nil
}

// Rebuilt is a release a pass rebuilt, with the verdict's URL relative to
// /rebuilds/.
type Rebuilt struct {
	*rebuild.Predicate
	URL string
}

// RebuildNew runs one pass: it verifies the release log's checkpoint under
// the witness policy and proves it consistent with the last one seen,
// saves it, then rebuilds every entry from the state's next index on,
// saving the state after each verdict. An entry already in the verdict
// index is not rebuilt again. It returns the releases rebuilt; on error,
// those rebuilt before it. The error wraps [tlog.ErrInconsistent] or
// [ErrKeyChanged] when the platform cannot be trusted any more.
func (r *Rebuilder) RebuildNew(ctx context.Context) ([]Rebuilt, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, st, cp, err := r.begin(ctx)
	if err != nil {
		return nil, err
	}
	if err := r.saveState(st); err != nil {
		return nil, err
	}
	var done []Rebuilt
	for st.Next < cp.Size {
		i := st.Next
		idx, err := r.loadIndex()
		if err != nil {
			return done, err
		}
		if idx.find(i) == nil {
			entry, err := readEntry(ctx, t, cp, i)
			if err != nil {
				return done, err
			}
			got, err := r.judge(ctx, t, i, entry)
			switch {
			case errors.Is(err, errSkip):
			case err != nil:
				return done, err
			default:
				done = append(done, *got)
			}
		}
		st.Next = i + 1
		if err := r.saveState(st); err != nil {
			return done, err
		}
	}
	return done, nil
}

// judge rebuilds one entry, signs the verdict and stores it.
func (r *Rebuilder) judge(ctx context.Context, t *trust, index uint64, entry []byte) (*Rebuilt, error) {
	j, err := r.rebuildEntry(ctx, t, index, entry)
	if err != nil {
		return nil, err
	}
	env, err := rebuild.Sign(ctx, r.Key, j.subjects, j.pred)
	if err != nil {
		return nil, fmt.Errorf("signing the verdict on entry %d: %w", index, err)
	}
	l, err := r.store(j.pred, env)
	if err != nil {
		return nil, err
	}
	return &Rebuilt{Predicate: j.pred, URL: l.URL}, nil
}

// RebuildOne rebuilds the release-log entry at index, whether or not it
// has a verdict, and replaces its verdict. The entry must be in the
// release log's current checkpoint, which must be consistent with the
// state's; the state itself is left alone.
func (r *Rebuilder) RebuildOne(ctx context.Context, index uint64) (*Rebuilt, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, _, cp, err := r.begin(ctx)
	if err != nil {
		return nil, err
	}
	if index >= cp.Size {
		return nil, fmt.Errorf("release-log entry %d: the log's checkpoint has %d entries", index, cp.Size)
	}
	entry, err := readEntry(ctx, t, cp, index)
	if err != nil {
		return nil, err
	}
	got, err := r.judge(ctx, t, index, entry)
	if errors.Is(err, errSkip) {
		return nil, fmt.Errorf("release-log entry %d: %w", index, err)
	}
	return got, err
}

// Pins is what a check against the release log trusts instead of the
// platform's discovery document.
type Pins struct {
	// LogKey is the release log's verifier key (a signed-note vkey); the
	// discovered one must equal it. Empty trusts the discovered one.
	LogKey string
	// WitnessPolicy is the C2SP tlog-policy the checkpoint must meet,
	// used instead of the discovered one. Nil uses the discovered one.
	// A policy with quorum none, which the log operator alone meets, is
	// refused whichever way it comes.
	WitnessPolicy []byte
}

// LoggedEntry reads the release-log entry at index from the platform's
// log, proved included in its current checkpoint, which must meet the
// witness policy (pins override the discovery document's log key and
// policy). It reads and keeps no state: it is for checking a verdict
// against the log (`vitrine rebuild verify --platform`), and needs only
// Platform (and Client).
func (r *Rebuilder) LoggedEntry(ctx context.Context, index uint64, pins Pins) ([]byte, error) {
	t, err := r.resolve(ctx)
	if err != nil {
		return nil, err
	}
	if pins.LogKey != "" && pins.LogKey != t.logKey {
		return nil, fmt.Errorf("%w: the platform's release log has key %q, the pinned one is %q", ErrKeyChanged, t.logKey, pins.LogKey)
	}
	if pins.WitnessPolicy != nil {
		if t.log.Policy, err = tlog.ParsePolicy(pins.WitnessPolicy); err != nil {
			return nil, fmt.Errorf("the pinned witness policy: %w", err)
		}
	}
	if t.log.Policy.Quorum() == "none" {
		return nil, errors.New("the witness policy has quorum none: any log operator alone meets it; pin a policy with witnesses")
	}
	cp, err := t.log.Checkpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("the release log: %w", err)
	}
	if index >= cp.Size {
		return nil, fmt.Errorf("release-log entry %d: the log's checkpoint has %d entries", index, cp.Size)
	}
	return readEntry(ctx, t, cp, index)
}

// Follow runs a pass every interval until ctx is done or the platform can
// no longer be trusted (see [Rebuilder.RebuildNew]); other failures are
// logged and retried.
func (r *Rebuilder) Follow(ctx context.Context, interval time.Duration) error {
	for {
		done, err := r.RebuildNew(ctx)
		for _, d := range done {
			r.logger().InfoContext(ctx, d.Summary(), "url", d.URL)
		}
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, tlog.ErrInconsistent) || errors.Is(err, ErrKeyChanged):
			return err
		case err != nil:
			r.logger().WarnContext(ctx, "rebuild pass failed; retrying", "err", err, "in", interval)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
