package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/reputation"
)

// Aggregates returns this region's own aggregates of the given hashes;
// hashes it has never seen are absent. It reflects every batch whose
// PutBatch returned before it was called.
func (s *Store) Aggregates(ctx context.Context, sha256s []string) (_ map[string]store.Aggregate, err error) {
	defer store.Classify(&err)
	aggs, err := s.lookup(ctx, sha256s, false)
	if err != nil {
		return nil, fmt.Errorf("reading aggregates: %w", err)
	}
	return aggs, nil
}

// Global returns, per hash, this region's aggregate merged with every other
// region's (see [store.Store]); hashes nobody has seen are absent. It
// reflects every PutBatch and PutRemote that returned before it was called.
func (s *Store) Global(ctx context.Context, sha256s []string) (_ map[string]store.Aggregate, err error) {
	defer store.Classify(&err)
	aggs, err := s.lookup(ctx, sha256s, true)
	if err != nil {
		return nil, fmt.Errorf("reading global aggregates: %w", err)
	}
	return aggs, nil
}

// The lookup queries take the hashes as a JSON array in ?1. A query's rows
// are (sha256, prevalence, first_seen, last_seen), a detections query's
// (sha256, name, count), remoteQuery's (sha256, region, prevalence,
// first_seen, last_seen, detections).
//
// Each joins the hashes asked for to a table with CROSS JOIN, which SQLite
// never reorders: the planner, without statistics, would otherwise scan
// the table and probe the hashes, a full scan per lookup
// (TestLookupsSearchByKey).
const (
	hashesCTE  = `WITH h (sha256) AS (SELECT DISTINCT value FROM json_each(?1)) `
	localQuery = hashesCTE + `
		SELECT a.sha256, a.prevalence, a.first_seen, a.last_seen FROM h CROSS JOIN aggregates a USING (sha256)`
	localDetectionsQuery = hashesCTE + `
		SELECT d.sha256, d.name, d.count FROM h CROSS JOIN detections d USING (sha256)`
	remoteQuery = hashesCTE + `
		SELECT r.sha256, r.region, r.prevalence, r.first_seen, r.last_seen, r.detections FROM h CROSS JOIN remote_aggregates r USING (sha256)`
)

// lookup returns the local aggregates of sha256s, merged with the other
// regions' if global is set. Pending hashes come from memory (see
// delta.base), the others from the database.
func (s *Store) lookup(ctx context.Context, sha256s []string, global bool) (map[string]store.Aggregate, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	aggs := make(map[string]store.Aggregate)
	if len(sha256s) == 0 {
		return aggs, nil
	}
	sha256s = slices.Compact(slices.Sorted(slices.Values(sha256s)))
	release, err := s.admitReader(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	s.pendMu.RLock()
	defer s.pendMu.RUnlock()
	var folded []string
	for _, h := range sha256s {
		if a, ok := s.pendingState(h); ok {
			aggs[h] = a
		} else {
			folded = append(folded, h)
		}
	}
	var remote []store.Aggregate
	if len(folded) > 0 || global {
		err := s.readTx(ctx, func(tx *sql.Tx) error {
			if len(folded) > 0 {
				j, err := json.Marshal(folded)
				if err != nil {
					return err
				}
				if err := scanAggregates(ctx, tx, func(a store.Aggregate, _ int64) {
					aggs[a.SHA256] = a
				}, localQuery, string(j)); err != nil {
					return err
				}
				if err := scanDetections(ctx, tx, localDetectionsQuery, string(j), aggs); err != nil {
					return err
				}
			}
			if !global {
				return nil
			}
			j, err := json.Marshal(sha256s)
			if err != nil {
				return err
			}
			remote, err = s.scanRemote(ctx, tx, string(j))
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	if !global {
		return aggs, nil
	}
	// What PutRemote gave and no fold has written yet replaces the rows
	// the database holds for the same region and hash, and what it gave
	// since the fold under way started replaces what that fold holds.
	for _, rm := range s.pend.remote {
		for _, h := range sha256s {
			if a, ok := rm[h]; ok {
				remote = append(remote, a)
			}
		}
	}
	if s.folding != nil {
		for region, rm := range s.folding.remote {
			for _, h := range sha256s {
				if a, ok := rm[h]; ok {
					if _, newer := s.pend.remote[region][h]; !newer {
						remote = append(remote, a)
					}
				}
			}
		}
	}
	// The sum is reputation.Merge, the one published: it saturates.
	for _, r := range remote {
		aggs[r.SHA256] = store.Aggregate(reputation.Merge(reputation.Aggregate(aggs[r.SHA256]), reputation.Aggregate(r)))
	}
	return aggs, nil
}

// scanRemote reads the other regions' aggregates of hashes (a JSON array)
// from the database, leaving out those that pending or folding replaces.
// The caller holds pendMu.
func (s *Store) scanRemote(ctx context.Context, tx *sql.Tx, hashes string) ([]store.Aggregate, error) {
	rows, err := tx.QueryContext(ctx, remoteQuery, hashes)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var remote []store.Aggregate
	for rows.Next() {
		var a store.Aggregate
		var region, dets string
		var first, last int64
		if err := rows.Scan(&a.SHA256, &region, &a.Prevalence, &first, &last, &dets); err != nil {
			return nil, err
		}
		if _, ok := s.pend.remote[region][a.SHA256]; ok {
			continue
		}
		if s.folding != nil {
			if _, ok := s.folding.remote[region][a.SHA256]; ok {
				continue
			}
		}
		a.FirstSeen, a.LastSeen = fromMicro(first), fromMicro(last)
		if dets != "{}" {
			if err := json.Unmarshal([]byte(dets), &a.Detections); err != nil {
				return nil, fmt.Errorf("detections of %s from %s: %w", a.SHA256, region, err)
			}
		}
		remote = append(remote, a)
	}
	return remote, rows.Err()
}

// ChangedAggregates returns, in the order of their last change, up to limit
// of this region's aggregates that changed after cursor, and the cursor to
// pass next time: the change sequence number of the last one returned, or
// cursor itself if none changed. Cursor 0 starts from the beginning. An
// aggregate that changes again moves to the end of the order, so a reader
// that follows the cursor sees every aggregate's latest state, and every
// batch whose PutBatch returned before the call. Remote aggregates are not
// included.
//
// Pending changes come from memory; the database is read only for a
// cursor behind the last folded change, so a follower that keeps up, as
// the exchange between regions does, costs no database reads at all.
func (s *Store) ChangedAggregates(ctx context.Context, cursor int64, limit int) (_ []store.Aggregate, _ int64, err error) {
	defer store.Classify(&err)
	if s.closed.Load() {
		return nil, cursor, fmt.Errorf("reading changed aggregates: %w", store.ErrClosed)
	}
	if limit <= 0 {
		return nil, cursor, nil
	}
	release, err := s.admitReader(ctx)
	if err != nil {
		return nil, cursor, fmt.Errorf("reading changed aggregates: %w", err)
	}
	defer release()
	s.pendMu.RLock()
	defer s.pendMu.RUnlock()

	// Pending changes, by sequence number. A pending hash's folded row
	// carries an older number, which no longer counts.
	type change struct {
		a   store.Aggregate
		seq int64
	}
	var pend []change
	for _, d := range s.pend.hashes {
		if d.seq > cursor {
			pend = append(pend, change{store.Aggregate{SHA256: d.sha256}, d.seq})
		}
	}
	if s.folding != nil {
		for h, d := range s.folding.hashes {
			if d.seq > cursor && s.pend.hashes[h] == nil {
				pend = append(pend, change{store.Aggregate{SHA256: d.sha256}, d.seq})
			}
		}
	}
	slices.SortFunc(pend, func(a, b change) int { return cmp.Compare(a.seq, b.seq) })

	// Folded changes, up to limit of them.
	var folded []change
	if cursor < s.foldedSeq {
		err := s.readTx(ctx, func(tx *sql.Tx) error {
			rows, err := tx.QueryContext(ctx, `SELECT a.sha256, a.prevalence, a.first_seen, a.last_seen, a.seq
				FROM changes c JOIN aggregates a ON a.sha256 = c.sha256 AND a.seq = c.seq
				WHERE c.seq > ? ORDER BY c.seq`, cursor)
			if err != nil {
				return err
			}
			defer rows.Close()
			for len(folded) < limit && rows.Next() {
				var a store.Aggregate
				var first, last, seq int64
				if err := rows.Scan(&a.SHA256, &a.Prevalence, &first, &last, &seq); err != nil {
					return err
				}
				if s.isPending(a.SHA256) {
					continue
				}
				a.FirstSeen, a.LastSeen = fromMicro(first), fromMicro(last)
				folded = append(folded, change{a, seq})
			}
			if err := rows.Close(); err != nil {
				return err
			}
			if len(folded) == 0 {
				return nil
			}
			hashes := make([]string, len(folded))
			aggs := make(map[string]store.Aggregate, len(folded))
			for i, c := range folded {
				hashes[i] = c.a.SHA256
				aggs[c.a.SHA256] = c.a
			}
			j, err := json.Marshal(hashes)
			if err != nil {
				return err
			}
			if err := scanDetections(ctx, tx, localDetectionsQuery, string(j), aggs); err != nil {
				return err
			}
			for i := range folded {
				folded[i].a = aggs[folded[i].a.SHA256]
			}
			return nil
		})
		if err != nil {
			return nil, cursor, fmt.Errorf("reading changed aggregates: %w", err)
		}
	}

	// The first limit of the two, merged by sequence number.
	changed := make([]store.Aggregate, 0, min(limit, len(pend)+len(folded)))
	next := cursor
	for len(changed) < limit && (len(pend) > 0 || len(folded) > 0) {
		var c change
		if len(folded) == 0 || (len(pend) > 0 && pend[0].seq < folded[0].seq) {
			c, pend = pend[0], pend[1:]
			c.a, _ = s.pendingState(c.a.SHA256)
		} else {
			c, folded = folded[0], folded[1:]
		}
		changed = append(changed, c.a)
		next = c.seq
	}
	return changed, next, nil
}

// CountRecords returns how many records the store holds.
func (s *Store) CountRecords(ctx context.Context) (_ int64, err error) {
	defer store.Classify(&err)
	if s.closed.Load() {
		return 0, fmt.Errorf("counting records: %w", store.ErrClosed)
	}
	var n int64
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM records`).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting records: %w", s.closedErr(err))
	}
	return n, nil
}

// PutRemote records the aggregates that region reported with its cursor,
// replacing, hash by hash, what it reported before; of several aggregates
// of one hash in aggs, the last counts. They count in Global at once, and
// are written to the database with the cursor by the next fold, which
// starts as soon as enough are pending or two seconds have passed: the
// exchange thereby writes a hot hash once per fold, not once per pull,
// and in key order with the batches' aggregates.
func (s *Store) PutRemote(ctx context.Context, region string, aggs []store.Aggregate, cursor int64) (err error) {
	defer store.Classify(&err)
	if err := store.CheckRemote(region, aggs); err != nil {
		return fmt.Errorf("storing remote aggregates of %q: %w", region, err)
	}
	if s.closed.Load() {
		return fmt.Errorf("storing remote aggregates of %s: %w", region, store.ErrClosed)
	}
	s.pendMu.RLock()
	full := s.pend.remoteRows >= s.policy.maxPending
	s.pendMu.RUnlock()
	if full {
		// Folding has fallen behind or keeps failing: fold now, and fail
		// closed if that fails.
		s.lock()
		err := s.foldLocked(ctx, false)
		s.unlock()
		if err != nil {
			return fmt.Errorf("storing remote aggregates of %s: %w", region, err)
		}
	}
	own := make([]store.Aggregate, len(aggs))
	for i, a := range aggs {
		a.SHA256 = strings.Clone(a.SHA256)
		own[i] = a
	}
	s.pendMu.Lock()
	s.pend.addRemote(region, own, cursor)
	due := s.pend.remoteRows >= s.policy.records
	s.pendMu.Unlock()
	if due {
		s.kickFolder()
	}
	return nil
}

// RemoteCursor returns the cursor of region's last PutRemote that a fold
// has written, or 0.
func (s *Store) RemoteCursor(ctx context.Context, region string) (_ int64, err error) {
	defer store.Classify(&err)
	if s.closed.Load() {
		return 0, fmt.Errorf("reading the cursor of %s: %w", region, store.ErrClosed)
	}
	var c int64
	err = s.read.QueryRowContext(ctx, `SELECT cursor FROM remote_cursors WHERE region = ?`, region).Scan(&c)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading the cursor of %s: %w", region, s.closedErr(err))
	}
	return c, nil
}

// isPending reports whether the database does not hold all there is of
// hash sha: whether a batch not yet folded, or a fold under way, holds
// some of it. The caller holds pendMu.
func (s *Store) isPending(sha string) bool {
	return s.pend.hashes[sha] != nil || (s.folding != nil && s.folding.hashes[sha] != nil)
}

// pendingState returns the aggregate of hash sha if it is pending: as the
// batches not yet folded, or the fold under way, leave it. The caller
// holds pendMu.
func (s *Store) pendingState(sha string) (store.Aggregate, bool) {
	if d := s.pend.hashes[sha]; d != nil {
		return d.state(), true
	}
	if s.folding != nil {
		if d := s.folding.hashes[sha]; d != nil {
			return d.state(), true
		}
	}
	return store.Aggregate{}, false
}

// readTx runs f in a read transaction, so that all it reads comes from one
// snapshot.
func (s *Store) readTx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return s.closedErr(err)
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return s.closedErr(err)
	}
	return tx.Commit()
}

// closedErr is store.ErrClosed if the store was closed under a read, and
// err otherwise.
func (s *Store) closedErr(err error) error {
	var caller *store.CallerError
	if s.closed.Load() && !errors.As(err, &caller) {
		return store.ErrClosed
	}
	return err
}

// querier is a transaction or a connection.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// scanAggregates runs query, whose rows are (sha256, prevalence,
// first_seen, last_seen) and optionally seq, and hands each to f.
func scanAggregates(ctx context.Context, tx querier, f func(a store.Aggregate, seq int64), query string, args ...any) error {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	for rows.Next() {
		var a store.Aggregate
		var first, last, seq int64
		dest := []any{&a.SHA256, &a.Prevalence, &first, &last}
		if len(cols) == 5 {
			dest = append(dest, &seq)
		}
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		a.FirstSeen, a.LastSeen = fromMicro(first), fromMicro(last)
		f(a, seq)
	}
	return rows.Err()
}

// scanDetections runs query, whose rows are (sha256, name, count), and adds
// each count to the aggregate of its hash in aggs.
func scanDetections(ctx context.Context, tx querier, query, hashes string, aggs map[string]store.Aggregate) error {
	rows, err := tx.QueryContext(ctx, query, hashes)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var sha, name string
		var n int64
		if err := rows.Scan(&sha, &name, &n); err != nil {
			return err
		}
		a, ok := aggs[sha]
		if !ok {
			continue
		}
		if a.Detections == nil {
			a.Detections = make(map[string]int64)
			aggs[sha] = a
		}
		a.Detections[name] += n
	}
	return rows.Err()
}

func fromMicro(us int64) time.Time { return time.UnixMicro(us).UTC() }
