package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/telemetry"
)

// PutBatch stores b in one transaction and returns after it is synced to
// disk; its contribution to the aggregates is visible to every read that
// starts after PutBatch returns. A batch already stored for the same
// (EndpointID, BatchID) is left as it is and PutBatch returns stored=false.
// On any error nothing of b is written.
//
// Records are taken as the telemetry parser validated them; PutBatch checks
// only that b has an endpoint id, a batch id, a pseudonym, and a hash in
// every record.
//
// Concurrent calls share transactions: while one writes, the others queue,
// and the next writer stores everything queued in one transaction, each
// batch in a savepoint of its own, with one sync to disk for all. ctx can
// cancel a batch until its savepoint is released; after that PutBatch
// waits for the commit, so that an error always means nothing was written.
func (s *Store) PutBatch(ctx context.Context, b *store.Batch) (stored bool, err error) {
	defer store.Classify(&err)
	if err := store.CheckBatch(b); err != nil {
		return false, fmt.Errorf("storing batch: %w", err)
	}
	// Everything that depends only on b is built before queueing, so that
	// concurrent callers overlap it.
	r := &putRequest{ctx: ctx, b: b, w: newBatchWrite(b), done: make(chan struct{})}
	s.queueMu.Lock()
	s.queue = append(s.queue, r)
	s.queueMu.Unlock()
	select {
	case <-r.done:
	case s.writer <- struct{}{}:
		select {
		case <-r.done: // the writer before took it
		default:
			s.writeQueued()
		}
		s.unlock()
	}
	if r.err != nil {
		return false, fmt.Errorf("storing batch: %w", r.err)
	}
	return r.stored, nil
}

// A putRequest is a PutBatch call; done is closed when stored and err are
// final.
type putRequest struct {
	ctx    context.Context
	b      *store.Batch
	w      *batchWrite
	stored bool
	err    error
	done   chan struct{}
}

// writeQueued stores every queued batch in one transaction. The caller
// holds the writer.
func (s *Store) writeQueued() {
	s.queueMu.Lock()
	group := s.queue
	s.queue = nil
	s.queueMu.Unlock()
	defer func() {
		for _, r := range group {
			close(r.done)
		}
	}()
	fail := func(err error) {
		for _, r := range group {
			if r.err == nil {
				r.stored, r.err = false, err
			}
		}
	}
	if s.closed.Load() {
		fail(store.ErrClosed)
		return
	}
	if s.pend.records >= s.policy.maxPending {
		// Folding in the background has fallen behind or keeps failing:
		// fold now, and fail closed if that fails.
		if err := s.foldLocked(context.Background(), false); err != nil {
			fail(err)
			return
		}
	}
	type put struct {
		r       *putRequest
		lastID  int64
		sighted map[string]bool
	}
	var puts []put
	// Sightings by the batches before in the group, not yet in pend, and
	// the bases of the group's hashes that become pending.
	groupSighted := make(map[sighting]bool)
	bases := make(map[string]store.Aggregate)
	bg := context.Background()
	err := s.inTx(bg, func() error {
		if len(group) == 1 {
			// Alone in its transaction, a batch needs no savepoint.
			r := group[0]
			lastID, sighted, err := s.putBatch(r.ctx, r.w, nil, bases)
			if err == nil {
				err = r.ctx.Err()
			}
			if err != nil {
				if !errors.Is(err, errDuplicate) {
					r.err = err
				}
				return errNothingToCommit
			}
			puts = append(puts, put{r, lastID, sighted})
			return nil
		}
		for _, r := range group {
			if err := r.ctx.Err(); err != nil {
				r.err = err
				continue
			}
			if _, err := s.w.ExecContext(bg, "SAVEPOINT batch"); err != nil {
				return err
			}
			lastID, sighted, err := s.putBatch(r.ctx, r.w, groupSighted, bases)
			if err == nil {
				err = r.ctx.Err()
			}
			if err != nil {
				if _, rerr := s.w.ExecContext(bg, "ROLLBACK TO batch"); rerr != nil {
					return fmt.Errorf("%w; rolling back: %w", err, rerr)
				}
				if !errors.Is(err, errDuplicate) {
					r.err = err
				}
			} else {
				puts = append(puts, put{r, lastID, sighted})
				for _, h := range r.w.hashes {
					groupSighted[sighting{r.b.Pseudonym, h.sha256}] = true
				}
			}
			if _, err := s.w.ExecContext(bg, "RELEASE batch"); err != nil {
				return err
			}
		}
		return nil
	}, nil, nil)
	if errors.Is(err, errNothingToCommit) {
		return
	}
	if err != nil {
		fail(err)
		return
	}
	s.pendMu.Lock()
	for _, p := range puts {
		w := p.r.w
		refs := make([]recordRef, w.n)
		for i := range refs {
			refs[i] = recordRef{p.lastID - int64(w.n) + 1 + int64(i), p.r.b.Records[i].SHA256}
		}
		s.pend.add(p.r.b.Pseudonym, refs, w.hashes, w.detections, p.sighted, bases, p.lastID, &s.nextSeq)
		p.r.stored = true
	}
	s.pendMu.Unlock()
	if s.pend.records >= s.policy.records {
		s.kickFolder()
	}
}

var (
	// errDuplicate rolls back the savepoint of a batch already stored.
	errDuplicate = errors.New("batch already stored")
	// errNothingToCommit rolls back the transaction of a lone batch that
	// was not stored; the batch's own outcome is in its request.
	errNothingToCommit = errors.New("nothing to commit")
)

// inTx runs f in a write transaction on the writer connection, which the
// caller holds. It commits only if f succeeds and ctx is still live; once it
// starts to commit it finishes, whatever ctx does, so that the outcome is
// known. If commitLock is not nil, it is held from just before COMMIT until
// onCommit, called only if the commit succeeds, returns.
func (s *Store) inTx(ctx context.Context, f func() error, commitLock sync.Locker, onCommit func()) error {
	_, err := s.w.ExecContext(ctx, "BEGIN IMMEDIATE")
	if err == nil {
		err = f()
	}
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		if commitLock != nil {
			commitLock.Lock()
			defer commitLock.Unlock()
		}
		if _, err = s.w.ExecContext(context.WithoutCancel(ctx), "COMMIT"); err == nil {
			if onCommit != nil {
				onCommit()
			}
			return nil
		}
	}
	// The driver reports a statement that ctx interrupted as failed even
	// if it completed, BEGIN included, so roll back whatever happened. An
	// interrupted statement may have rolled the transaction back already,
	// which makes this ROLLBACK fail harmlessly.
	_, _ = s.w.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
	return err
}

// putBatch writes the batch and returns the id of its last record and which
// of its hashes its pseudonym had already sighted before: in folded
// sightings, in batches not folded yet, or earlier in the group. It adds
// to bases those of the hashes that become pending (see lookupBases). It checks
// ctx between statements but does not let it interrupt one, since SQLite
// rolls back the whole transaction, the group's, when a statement is
// interrupted.
func (s *Store) putBatch(ctx context.Context, w *batchWrite, groupSighted map[sighting]bool, bases map[string]store.Aggregate) (lastID int64, sighted map[string]bool, err error) {
	run := context.WithoutCancel(ctx)
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	var firstID int64
	if err := s.w.QueryRowContext(run, nextRecordIDQuery).Scan(&firstID); err != nil {
		return 0, nil, err
	}
	res, err := s.w.ExecContext(run, `INSERT INTO batches (pseudonym, batch_id, country, received, count, wrapped_key, key_id, first_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`, append(w.batch, firstID)...)
	if err != nil {
		return 0, nil, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return 0, nil, err
	} else if n == 0 {
		return 0, nil, errDuplicate
	}
	batchPK, err := res.LastInsertId()
	if err != nil {
		return 0, nil, err
	}
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	for i := range w.records {
		c := &w.records[i]
		c.args[0], c.args[1] = firstID+int64(c.first), batchPK
	}
	for i := range w.personal {
		w.personal[i].args[0] = firstID + int64(w.personal[i].first)
	}
	if err := s.execChunks(ctx, w.records); err != nil {
		return 0, nil, err
	}
	if err := s.execChunks(ctx, w.personal); err != nil {
		return 0, nil, err
	}
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	if err := s.lookupBases(run, w.hashes, bases); err != nil {
		return 0, nil, err
	}
	sighted, err = s.sighted(run, w.pseudonym, w.hashes, groupSighted, bases)
	if err != nil {
		return 0, nil, err
	}
	return firstID + int64(w.n) - 1, sighted, nil
}

// sighted returns which of hashes pseudonym has sighted: in the folded
// sightings, in pending batches or those of the fold under way, or in also
// (which may be nil). It reads the folded sightings only of hashes that
// the database may hold (see maybeFolded), which lookupBases has put in
// bases if they are not pending: most hashes a batch reports for the first
// time are new to the region. The caller
// holds the writer, so none of them changes meanwhile.
func (s *Store) sighted(ctx context.Context, pseudonym string, hashes []hashSummary, also map[sighting]bool, bases map[string]store.Aggregate) (map[string]bool, error) {
	sighted := make(map[string]bool)
	var list []string
	for _, h := range hashes {
		if k := (sighting{pseudonym, h.sha256}); s.pend.sighted[k] || also[k] || (s.folding != nil && s.folding.sighted[k]) {
			sighted[h.sha256] = true
		} else if s.maybeFolded(h.sha256, bases) {
			list = append(list, h.sha256)
		}
	}
	if len(list) == 0 {
		return sighted, nil
	}
	j, err := json.Marshal(list)
	if err != nil {
		return nil, err
	}
	rows, err := s.w.QueryContext(ctx, `SELECT sha256 FROM sightings
		WHERE pseudonym = ? AND sha256 IN (SELECT value FROM json_each(?))`, pseudonym, string(j))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return nil, err
		}
		sighted[h] = true
	}
	return sighted, rows.Err()
}

// maybeFolded reports whether the database may hold sightings of hash sha:
// whether it held its aggregate when the hash became pending, or holds it
// now (bases, filled by lookupBases, has the hash if it is not pending).
// Folds write a hash's sightings with its aggregate.
func (s *Store) maybeFolded(sha string, bases map[string]store.Aggregate) bool {
	if d := s.pend.hashes[sha]; d != nil {
		return d.base.SHA256 != ""
	}
	if s.folding != nil && s.folding.hashes[sha] != nil {
		return true // its chunk may have been written
	}
	b, ok := bases[sha]
	return !ok || b.SHA256 != ""
}

// lookupBases adds to bases the aggregate of each of hashes that is not
// pending and not in bases already: from the fold under way if it holds
// the hash, from the database otherwise (absent if neither has it). The
// caller holds the writer, so that neither changes meanwhile.
func (s *Store) lookupBases(ctx context.Context, hashes []hashSummary, bases map[string]store.Aggregate) error {
	var list []string
	for _, h := range hashes {
		if s.pend.hashes[h.sha256] != nil {
			continue
		}
		if _, ok := bases[h.sha256]; ok {
			continue
		}
		if s.folding != nil {
			if d := s.folding.hashes[h.sha256]; d != nil {
				bases[d.sha256] = d.state()
				continue
			}
		}
		list = append(list, h.sha256)
	}
	if len(list) == 0 {
		return nil
	}
	j, err := json.Marshal(list)
	if err != nil {
		return err
	}
	found := make(map[string]store.Aggregate)
	if err := scanAggregates(ctx, s.w, func(a store.Aggregate, _ int64) { found[a.SHA256] = a }, localQuery, string(j)); err != nil {
		return err
	}
	if err := scanDetections(ctx, s.w, localDetectionsQuery, string(j), found); err != nil {
		return err
	}
	for _, h := range list {
		// An absent hash gets a zero base, so that a later batch of the
		// group does not look it up again.
		bases[h] = found[h]
	}
	return nil
}

// A batchWrite is one batch as the arguments of the statements that store
// it, in chunks of rows, and its summary for the aggregates. The first
// kind.slots arguments of each chunk are the record ids and batch pk that
// only the transaction knows; putBatch sets them.
type batchWrite struct {
	n                 int
	pseudonym         string
	batch             []any
	records, personal []chunk
	hashes            []hashSummary
	detections        []detectionCount
}

type chunk struct {
	kind  stmtKind
	first int // index of the chunk's first row among the rows of its kind
	args  []any
}

func newBatchWrite(b *store.Batch) *batchWrite {
	w := &batchWrite{
		n:         len(b.Records),
		pseudonym: b.Pseudonym,
		batch:     []any{b.Pseudonym, b.BatchID, b.Country, b.Received.UnixMicro(), int64(len(b.Records)), b.Sealed.WrappedKey, boundKeyID(b)},
	}
	w.records = chunkRows(insertRecords, len(b.Records), nil, func(args []any, i int) []any {
		r := &b.Records[i]
		return append(args, r.Time.UnixMicro(), r.Kind, r.SHA256, r.Size, r.Detection, r.Product, int64(r.RuleDB))
	})
	w.personal = personalChunks(b.Sealed.Records)
	w.hashes, w.detections = summarize(b.Records)
	return w
}

// personalChunks is the only code that writes personal data: each record's
// sealed personal half, under the record's id.
func personalChunks(sealed [][]byte) []chunk {
	return chunkRows(insertPersonal, len(sealed), []any{nil}, func(args []any, i int) []any {
		return append(args, sealed[i])
	})
}

// hashSummary is what one batch adds to the aggregate of one hash, but for
// prevalence, which depends on what the store already holds.
type hashSummary struct {
	sha256      string
	first, last int64 // unix microseconds
}

// detectionCount is how many of a batch's records of one hash carry one
// detection name.
type detectionCount struct {
	sha256, name string
	count        int64
}

// summarize returns the distinct hashes of recs, sorted, with the earliest
// and latest record time of each, and the detection counts per hash and
// name, so that aggregates are updated once per hash, not once per record.
func summarize(recs []telemetry.Record) ([]hashSummary, []detectionCount) {
	index := make(map[string]int, len(recs))
	hashes := make([]hashSummary, 0, len(recs))
	type key struct{ sha256, name string }
	var dindex map[key]int
	var detections []detectionCount
	for i := range recs {
		r := &recs[i]
		t := r.Time.UnixMicro()
		if j, ok := index[r.SHA256]; ok {
			h := &hashes[j]
			h.first, h.last = min(h.first, t), max(h.last, t)
		} else {
			index[r.SHA256] = len(hashes)
			hashes = append(hashes, hashSummary{r.SHA256, t, t})
		}
		if r.Detection == "" {
			continue
		}
		if dindex == nil {
			dindex = make(map[key]int)
		}
		k := key{r.SHA256, r.Detection}
		if j, ok := dindex[k]; ok {
			detections[j].count++
		} else {
			dindex[k] = len(detections)
			detections = append(detections, detectionCount{r.SHA256, r.Detection, 1})
		}
	}
	slices.SortFunc(hashes, func(a, b hashSummary) int { return strings.Compare(a.sha256, b.sha256) })
	return hashes, detections
}
