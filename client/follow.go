package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"sync"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	tclient "github.com/transparency-dev/tessera/client"

	"github.com/vitrine-dev/vitrine/tlog"
)

// ErrForked is wrapped by the error of a [Follower] that caught the log
// contradicting itself: a checkpoint inconsistent with one it verified
// before, or entries that do not hash to the root the log signed. It wraps
// [tlog.ErrInconsistent] too. The error's text names both checkpoints'
// sizes and roots; [*ForkError] carries them.
var ErrForked = fmt.Errorf("log forked: %w", tlog.ErrInconsistent)

// ForkError is the evidence of a fork: two checkpoints of the same log, each
// signed, that no single append-only log can have published.
type ForkError struct {
	Origin string
	// Seen is the checkpoint verified before; Now the one that contradicts
	// it. Both are signed notes, as the log served them.
	Seen, Now []byte
	Reason    string
}

func (e *ForkError) Error() string {
	return fmt.Sprintf("%s: log forked: %s (checkpoint seen before:\n%s\ncheckpoint now:\n%s)", e.Origin, e.Reason, e.Seen, e.Now)
}

func (e *ForkError) Unwrap() error { return ErrForked }

// ErrPause, returned by the function an [Follower.Update] hands entries
// to, takes the entry and asks Update to stop once it has handed out the
// entries it has read and proven with it, rather than read more: Update
// then returns the checkpoint and ErrPause, with the state past every
// entry handed out (none is read twice). A caller that works in chunks
// (commits what it has every so many entries) pauses this way; an
// Update that reaches the checkpoint returns nil, paused or not.
var ErrPause = errors.New("paused")

// chunkBundles is how many entry bundles a [Follower] reads before it
// proves them and hands their entries out: enough that the consistency
// proof per chunk costs little beside hashing, few enough that a chunk's
// entries fit in memory (64 bundles of 256 entries).
var chunkBundles uint64 = 64

// A Follower reads a log's entries in order and hands each one out only
// once it is proven to be in a checkpoint that meets the log's witness
// policy. It keeps its position in a [FollowState], which it updates only
// past entries it handed out; a follower made again from a saved state goes
// on where it stopped, trusting nothing it has not proven since.
//
// How entries are proven: the state holds the compact range of every entry
// handed out so far (the roots of at most 64 perfect subtrees). A chunk of
// entries read from the log is appended to a copy of it, which gives the
// root of the tree up to the chunk's end; a consistency proof from that
// tree to the verified checkpoint, read from the log's tiles and checked,
// proves the chunk. At the checkpoint's size the root must equal the
// checkpoint's. The bytes handed out are the bytes hashed: there is no
// second read.
//
// A Follower is not safe for concurrent use.
type Follower struct {
	log   *Log
	state FollowState
	rf    *compact.RangeFactory
}

// NewFollower returns a follower of l that starts from st, or from the
// log's first entry when st is nil. A state saved for another log (another
// origin, or another key under the same origin) is refused.
func NewFollower(l *Log, st *FollowState) (*Follower, error) {
	f := &Follower{log: l, rf: &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}}
	if st == nil {
		f.state = FollowState{Origin: l.Origin(), Key: l.KeyHash()}
		return f, nil
	}
	if err := st.check(l); err != nil {
		return nil, err
	}
	f.state = *st
	f.state.Range = cloneHashes(st.Range)
	return f, nil
}

// State returns the follower's position, to save and resume from.
func (f *Follower) State() FollowState {
	s := f.state
	s.Range = cloneHashes(s.Range)
	s.Checkpoint = bytes.Clone(s.Checkpoint)
	return s
}

// Update reads the log's checkpoint, verifies it (log signature, witness
// quorum), and calls fn with every entry from the follower's position up
// to the checkpoint's size, in index order, each once it is proven. It
// returns the checkpoint. An error from fn stops Update, and the follower
// stays after the last entry fn accepted; calling Update again goes on
// from there. fn may keep entry: its bytes are not reused.
//
// The error wraps [ErrForked] (with a [*ForkError]) when the log
// contradicts what the follower verified before, [tlog.ErrTreeMismatch]
// when the entries the log serves are not those its checkpoint signs,
// naming the first entry of the chunk that failed, and a
// [*tlog.FetchError] when the log cannot be read.
func (f *Follower) Update(ctx context.Context, fn func(index uint64, entry []byte) error) (*tlog.Checkpoint, error) {
	cp, err := f.log.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	if err := f.consistent(ctx, cp); err != nil {
		return nil, err
	}
	r, err := f.rf.NewRange(0, f.state.Size, cloneHashes(f.state.Range))
	if err != nil {
		return nil, fmt.Errorf("%s: follower state: %w", f.log.Origin(), err)
	}
	for r.End() < cp.Size {
		start := r.End()
		end := min(cp.Size, (start/256+chunkBundles)*256)
		entries, leaves, ranges, err := f.read(ctx, start, end, cp.Size)
		if err != nil {
			return nil, err
		}
		next, err := f.rf.NewRange(0, r.End(), cloneHashes(r.Hashes()))
		if err != nil {
			return nil, err
		}
		// Each bundle's subtree was hashed where it was read; what is
		// left here is one merge per bundle.
		for _, br := range ranges {
			if err := next.AppendRange(br, nil); err != nil {
				return nil, err
			}
		}
		if err := f.prove(ctx, next, cp, start); err != nil {
			return nil, err
		}
		// Proven: hand the chunk out, entry by entry, keeping the state
		// just past the last one fn accepted.
		pause := false
		for i, e := range entries {
			if err := fn(start+uint64(i), e); err == ErrPause {
				pause = true
			} else if err != nil {
				return nil, f.advance(r, leaves[:i], cp, err)
			}
		}
		// All handed out: the proven range is the state.
		r = next
		if err := f.advance(r, nil, cp, nil); err != nil {
			return nil, err
		}
		if pause && r.End() < cp.Size {
			return cp, ErrPause
		}
	}
	f.state.Checkpoint, f.state.Root, f.state.CheckpointSize = cp.Raw, bytes.Clone(cp.Hash), cp.Size
	return cp, nil
}

// consistent checks cp against the checkpoint the state last trusted.
func (f *Follower) consistent(ctx context.Context, cp *tlog.Checkpoint) error {
	return f.log.Consistent(ctx, f.state.Checkpoint, cp)
}

// Consistent proves cp, a checkpoint of l verified under its witness
// policy, consistent with seen, a checkpoint of l verified before and kept
// (as the log served it; nil when there is none yet): same size and root,
// or a consistency proof read from the log's tiles from seen's tree to
// cp's. A contradiction is a [*ForkError] that holds both checkpoints; a
// seen that is not l's (another log of the same origin) is refused, since
// it is no evidence against l.
func (l *Log) Consistent(ctx context.Context, seen []byte, cp *tlog.Checkpoint) error {
	if seen == nil {
		return nil
	}
	old, err := l.kept(seen)
	if err != nil {
		return err
	}
	return l.consistentFrom(ctx, old, cp)
}

// ConsistentState is [Log.Consistent] for a monitor state kept as a
// [tlog.State]: its checkpoint must be the log's, of the size and root the
// state says, and cp consistent with it.
func (l *Log) ConsistentState(ctx context.Context, st *tlog.State, cp *tlog.Checkpoint) error {
	if st.Checkpoint == nil {
		return fmt.Errorf("%s: the state holds no checkpoint: it is no evidence of what the log committed to", l.Origin())
	}
	old, err := l.kept(st.Checkpoint)
	if err != nil {
		return err
	}
	if old.Size != st.Size || !bytes.Equal(old.Hash, st.Root) {
		return fmt.Errorf("%s: the state says %d entries with root %x, the checkpoint it keeps %d with root %x", l.Origin(), st.Size, st.Root, old.Size, old.Hash)
	}
	return l.consistentFrom(ctx, old, cp)
}

// kept is [Log.Kept] with the error a consistency check gives.
func (l *Log) kept(seen []byte) (*tlog.Checkpoint, error) {
	old, err := l.Kept(seen)
	if err != nil {
		return nil, fmt.Errorf("%s: the checkpoint kept from before is not this log's (another log of that origin?): %w", l.Origin(), err)
	}
	return old, nil
}

// consistentFrom proves cp consistent with old, a checkpoint of l kept
// from before; a contradiction is a [*ForkError].
func (l *Log) consistentFrom(ctx context.Context, old, cp *tlog.Checkpoint) error {
	fork := func(reason string) error {
		return &ForkError{Origin: cp.Origin, Seen: old.Raw, Now: cp.Raw, Reason: reason}
	}
	switch {
	case cp.Size < old.Size:
		return fork(fmt.Sprintf("the log shrank from %d to %d entries", old.Size, cp.Size))
	case cp.Size == old.Size:
		if !bytes.Equal(cp.Hash, old.Hash) {
			return fork(fmt.Sprintf("two roots for %d entries", cp.Size))
		}
		return nil
	}
	proof, err := tlog.ConsistencyProof(ctx, l.Fetcher, old.Size, cp.Size)
	if err != nil {
		return fmt.Errorf("%s: consistency: %w", cp.Origin, err)
	}
	if err := tlog.VerifyConsistency(old.Size, cp.Size, old.Hash, cp.Hash, proof); err != nil {
		return fork(fmt.Sprintf("no consistency proof from %d to %d entries: %v", old.Size, cp.Size, err))
	}
	return nil
}

// readers is how many entry bundles a Follower reads and hashes at once:
// enough to hide an HTTP log's latency and use every core on a local one.
const readers = 8

// read returns entries [start, end) of the log of the given size, their
// leaf hashes, and the compact range of each bundle's part of them.
// Bundles are read and hashed concurrently.
func (f *Follower) read(ctx context.Context, start, end, size uint64) ([][]byte, [][]byte, []*compact.Range, error) {
	first, last := start/256, (end-1)/256
	type bundle struct {
		entries, leaves [][]byte
		rng             *compact.Range
	}
	bundles := make([]bundle, last-first+1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The first failure is the one to report: the fetches it cancels
	// fail after it, with nothing to say about the log.
	var failMu sync.Mutex
	var failed error
	fail := func(err error) {
		failMu.Lock()
		if failed == nil {
			failed = err
		}
		failMu.Unlock()
		cancel()
	}
	var wg sync.WaitGroup
	next := make(chan uint64)
	for range min(readers, len(bundles)) {
		wg.Go(func() {
			h := sha256.New()
			var scratch [256][32]byte
			for bi := range next {
				b := &bundles[bi-first]
				eb, err := tclient.GetEntryBundle(ctx, f.log.Fetcher.ReadEntryBundle, bi, size)
				if err != nil {
					fail(&tlog.FetchError{Path: fmt.Sprintf("entry bundle %d", bi), Err: err})
					continue
				}
				lo, hi := max(start, bi*256)-bi*256, min(end, bi*256+256)-bi*256
				if uint64(len(eb.Entries)) < hi {
					fail(fmt.Errorf("%s: entry bundle %d holds %d entries, want %d: %w", f.log.Origin(), bi, len(eb.Entries), hi, tlog.ErrTreeMismatch))
					continue
				}
				b.entries = eb.Entries[lo:hi]
				b.leaves = make([][]byte, len(b.entries))
				hashes := make([]byte, 32*len(b.entries))
				for i, e := range b.entries {
					h.Reset()
					h.Write([]byte{rfc6962.RFC6962LeafHashPrefix})
					h.Write(e)
					b.leaves[i] = h.Sum(hashes[32*i : 32*i : 32*(i+1)])
				}
				rng, err := f.bundleRange(h, &scratch, bi*256+lo, b.leaves)
				if err != nil {
					fail(err)
					continue
				}
				b.rng = rng
			}
		})
	}
	for bi := first; bi <= last; bi++ {
		next <- bi
	}
	close(next)
	wg.Wait()
	if failed != nil {
		return nil, nil, nil, failed
	}
	entries := make([][]byte, 0, end-start)
	leaves := make([][]byte, 0, end-start)
	ranges := make([]*compact.Range, 0, len(bundles))
	for _, b := range bundles {
		entries, leaves = append(entries, b.entries...), append(leaves, b.leaves...)
		ranges = append(ranges, b.rng)
	}
	return entries, leaves, ranges, nil
}

// bundleRange returns the compact range of leaves, which begin at index
// begin. A whole bundle (256 leaves from a multiple of 256) is one perfect
// subtree, hashed here with h and scratch and no allocation per node; a
// part of one goes leaf by leaf.
func (f *Follower) bundleRange(h hash.Hash, scratch *[256][32]byte, begin uint64, leaves [][]byte) (*compact.Range, error) {
	if len(leaves) != 256 || begin%256 != 0 {
		r := f.rf.NewEmptyRange(begin)
		for _, l := range leaves {
			if err := r.Append(l, nil); err != nil {
				return nil, err
			}
		}
		return r, nil
	}
	for i, l := range leaves {
		copy(scratch[i][:], l)
	}
	// One write of prefix and both children, and the sum straight into
	// scratch: half the calls of writing them one by one.
	var node [1 + 2*32]byte
	node[0] = rfc6962.RFC6962NodeHashPrefix
	for n := 256; n > 1; n /= 2 {
		for i := 0; i < n/2; i++ {
			copy(node[1:], scratch[2*i][:])
			copy(node[33:], scratch[2*i+1][:])
			h.Reset()
			h.Write(node[:])
			h.Sum(scratch[i][:0])
		}
	}
	return f.rf.NewRange(begin, begin+256, [][]byte{bytes.Clone(scratch[0][:])})
}

// prove checks that the tree r (entries 0 to r.End()) is a prefix of the
// tree cp signs.
func (f *Follower) prove(ctx context.Context, r *compact.Range, cp *tlog.Checkpoint, start uint64) error {
	root, err := r.GetRootHash(nil)
	if err != nil {
		return err
	}
	mismatch := func(why string) error {
		return fmt.Errorf("%s: entries %d to %d: %w: %s", cp.Origin, start, r.End()-1, tlog.ErrTreeMismatch, why)
	}
	if r.End() == cp.Size {
		if !bytes.Equal(root, cp.Hash) {
			return mismatch(fmt.Sprintf("they hash to %x, the checkpoint of %d entries signs %x", root, cp.Size, cp.Hash))
		}
		return nil
	}
	proof, err := tlog.ConsistencyProof(ctx, f.log.Fetcher, r.End(), cp.Size)
	if err != nil {
		return fmt.Errorf("%s: proving entries %d to %d: %w", cp.Origin, start, r.End()-1, err)
	}
	if err := tlog.VerifyConsistency(r.End(), cp.Size, root, cp.Hash, proof); err != nil {
		return mismatch(fmt.Sprintf("the tree they end is not a prefix of the checkpoint's: %v", err))
	}
	return nil
}

// advance moves the state past the entries whose leaf hashes are leaves,
// appended to r, and returns cause.
func (f *Follower) advance(r *compact.Range, leaves [][]byte, cp *tlog.Checkpoint, cause error) error {
	for _, h := range leaves {
		if err := r.Append(h, nil); err != nil {
			return err
		}
	}
	f.state.Size, f.state.Range = r.End(), cloneHashes(r.Hashes())
	// The checkpoint that proved them is the one to be consistent with
	// next time; until the follower reaches its size, the root stored is
	// the checkpoint's, and the range says how far it has read.
	f.state.Checkpoint, f.state.Root, f.state.CheckpointSize = cp.Raw, bytes.Clone(cp.Hash), cp.Size
	return cause
}

func cloneHashes(h [][]byte) [][]byte {
	out := make([][]byte, len(h))
	for i, x := range h {
		out[i] = bytes.Clone(x)
	}
	return out
}

// keyHash names a verifier key: the SHA-256 of its text, hex.
func keyHash(vkey string) string {
	h := sha256.Sum256([]byte(vkey))
	return fmt.Sprintf("%x", h[:])
}

// signatureOnly is the policy of a checkpoint verified under the log's
// witness policy once and kept: its log signature shows it is the log's;
// its cosignatures were counted when it was first verified.
var signatureOnly, _ = tlog.ParsePolicy([]byte("quorum none\n"))

// Kept parses a checkpoint that a monitor verified under the witness
// policy before and kept (in a [FollowState], say), after checking that
// the log's key signed it: a kept checkpoint of another log is refused.
func (l *Log) Kept(raw []byte) (*tlog.Checkpoint, error) {
	return signatureOnly.VerifyCheckpoint(raw, l.Verifier)
}
