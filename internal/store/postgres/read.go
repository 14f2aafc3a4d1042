package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vitrine-dev/vitrine/internal/store"
)

// Aggregates returns this region's own aggregates of the given hashes;
// hashes it has never seen are absent. It reads one consistent snapshot.
func (s *Store) Aggregates(ctx context.Context, sha256s []string) (_ map[string]store.Aggregate, err error) {
	defer store.Classify(&err)
	aggs, err := s.lookup(ctx, sha256s, localQuery, localDetectionsQuery)
	if err != nil {
		return nil, fmt.Errorf("reading aggregates: %w", err)
	}
	return aggs, nil
}

// Global returns, per hash, this region's aggregate merged with every other
// region's (see [store.Store]); hashes nobody has seen are absent. It reads
// one consistent snapshot.
func (s *Store) Global(ctx context.Context, sha256s []string) (_ map[string]store.Aggregate, err error) {
	defer store.Classify(&err)
	aggs, err := s.lookup(ctx, sha256s, globalQuery, globalDetectionsQuery)
	if err != nil {
		return nil, fmt.Errorf("reading global aggregates: %w", err)
	}
	return aggs, nil
}

// The lookup queries take the hashes as an array in $1. A query's rows are
// (sha256, prevalence, first_seen, last_seen), a detections query's
// (sha256, name, count).
const (
	localQuery = `SELECT sha256, prevalence, first_seen, last_seen FROM aggregates WHERE sha256 = ANY ($1)`

	localDetectionsQuery = `SELECT sha256, name, count FROM detections WHERE sha256 = ANY ($1)`

	globalQuery = `SELECT sha256, sum(prevalence)::bigint, min(first_seen), max(last_seen) FROM (
			SELECT sha256, prevalence, first_seen, last_seen FROM aggregates WHERE sha256 = ANY ($1)
			UNION ALL
			SELECT sha256, prevalence, first_seen, last_seen FROM remote_aggregates WHERE sha256 = ANY ($1)
		) a GROUP BY sha256`

	globalDetectionsQuery = `SELECT sha256, name, sum(count)::bigint FROM (
			SELECT sha256, name, count FROM detections WHERE sha256 = ANY ($1)
			UNION ALL
			SELECT r.sha256, d.key, d.value::bigint
			FROM remote_aggregates r, jsonb_each_text(r.detections) d WHERE r.sha256 = ANY ($1)
		) d GROUP BY sha256, name`
)

func (s *Store) lookup(ctx context.Context, sha256s []string, query, detectionsQuery string) (map[string]store.Aggregate, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	aggs := make(map[string]store.Aggregate)
	if len(sha256s) == 0 {
		return aggs, nil
	}
	hashes := slices.Compact(slices.Sorted(slices.Values(sha256s)))
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		if err := scanAggregates(ctx, tx, func(a store.Aggregate, _ int64) { aggs[a.SHA256] = a }, query, hashes); err != nil {
			return err
		}
		return scanDetections(ctx, tx, aggs, detectionsQuery, hashes)
	})
	if err != nil {
		return nil, s.closedErr(err)
	}
	return aggs, nil
}

// ChangedAggregates returns, in the order of their last change, up to limit
// of this region's aggregates that changed after cursor, and the cursor to
// pass next time: the change sequence number of the last one returned, or
// cursor itself if none changed. Cursor 0 starts from the beginning. An
// aggregate that changes again moves to the end of the order, so a reader
// that follows the cursor sees every aggregate's latest state. Remote
// aggregates are not included.
func (s *Store) ChangedAggregates(ctx context.Context, cursor int64, limit int) (_ []store.Aggregate, _ int64, err error) {
	defer store.Classify(&err)
	if s.closed.Load() {
		return nil, cursor, fmt.Errorf("reading changed aggregates: %w", store.ErrClosed)
	}
	if limit <= 0 {
		return nil, cursor, nil
	}
	var changed []store.Aggregate
	next := cursor
	err = s.readTx(ctx, func(tx pgx.Tx) error {
		err := scanAggregates(ctx, tx, func(a store.Aggregate, seq int64) {
			changed = append(changed, a)
			next = seq
		}, `SELECT sha256, prevalence, first_seen, last_seen, seq FROM aggregates WHERE seq > $1 ORDER BY seq LIMIT $2`, cursor, limit)
		if err != nil || len(changed) == 0 {
			return err
		}
		hashes := make([]string, len(changed))
		byHash := make(map[string]store.Aggregate, len(changed))
		for i, a := range changed {
			hashes[i] = a.SHA256
			byHash[a.SHA256] = a
		}
		if err := scanDetections(ctx, tx, byHash, localDetectionsQuery, hashes); err != nil {
			return err
		}
		for i, a := range changed {
			changed[i] = byHash[a.SHA256]
		}
		return nil
	})
	if err != nil {
		return nil, cursor, fmt.Errorf("reading changed aggregates: %w", s.closedErr(err))
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
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM records`).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting records: %w", s.closedErr(err))
	}
	return n, nil
}

// PutRemote records the aggregates that region reported, replacing, hash by
// hash, what it reported before, and region's cursor with them, in one
// transaction. Of several aggregates of one hash in aggs, the last counts.
// It is durable on return.
func (s *Store) PutRemote(ctx context.Context, region string, aggs []store.Aggregate, cursor int64) (err error) {
	defer store.Classify(&err)
	if err := store.CheckRemote(region, aggs); err != nil {
		return fmt.Errorf("storing remote aggregates of %q: %w", region, err)
	}
	if s.closed.Load() {
		return fmt.Errorf("storing remote aggregates of %s: %w", region, store.ErrClosed)
	}
	last := make(map[string]int, len(aggs))
	for i, a := range aggs {
		last[a.SHA256] = i
	}
	var (
		hashes, dets []string
		prevalences  []int64
		first, lastS []time.Time
	)
	for i, a := range aggs {
		if last[a.SHA256] != i {
			continue
		}
		d := []byte("{}")
		if len(a.Detections) > 0 {
			var err error
			if d, err = json.Marshal(a.Detections); err != nil {
				return fmt.Errorf("storing remote aggregates of %s: %w", region, err)
			}
		}
		hashes = append(hashes, a.SHA256)
		prevalences = append(prevalences, a.Prevalence)
		first = append(first, a.FirstSeen)
		lastS = append(lastS, a.LastSeen)
		dets = append(dets, string(d))
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if len(hashes) > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO remote_aggregates (sha256, region, prevalence, first_seen, last_seen, detections)
				SELECT h, $2, p, f, l, d::jsonb FROM unnest($1::text[], $3::bigint[], $4::timestamptz[], $5::timestamptz[], $6::text[]) AS u (h, p, f, l, d)
				ORDER BY h
				ON CONFLICT (sha256, region) DO UPDATE SET
					prevalence = excluded.prevalence,
					first_seen = excluded.first_seen,
					last_seen = excluded.last_seen,
					detections = excluded.detections`,
				hashes, region, prevalences, first, lastS, dets); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO remote_cursors (region, cursor) VALUES ($1, $2)
			ON CONFLICT (region) DO UPDATE SET cursor = excluded.cursor`, region, cursor)
		return err
	})
	if err != nil {
		return fmt.Errorf("storing remote aggregates of %s: %w", region, s.closedErr(err))
	}
	return nil
}

// RemoteCursor returns the cursor of region's last PutRemote, or 0.
func (s *Store) RemoteCursor(ctx context.Context, region string) (_ int64, err error) {
	defer store.Classify(&err)
	if s.closed.Load() {
		return 0, fmt.Errorf("reading the cursor of %s: %w", region, store.ErrClosed)
	}
	var c int64
	err = s.pool.QueryRow(ctx, `SELECT cursor FROM remote_cursors WHERE region = $1`, region).Scan(&c)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading the cursor of %s: %w", region, s.closedErr(err))
	}
	return c, nil
}

// readTx runs f in a read-only transaction that sees one snapshot.
func (s *Store) readTx(ctx context.Context, f func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, f)
}

// scanAggregates runs query, whose rows are (sha256, prevalence,
// first_seen, last_seen) and optionally seq, and hands each to f.
func scanAggregates(ctx context.Context, tx pgx.Tx, f func(a store.Aggregate, seq int64), query string, args ...any) error {
	rows, err := tx.Query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	withSeq := len(rows.FieldDescriptions()) == 5
	for rows.Next() {
		var a store.Aggregate
		var seq int64
		dest := []any{&a.SHA256, &a.Prevalence, &a.FirstSeen, &a.LastSeen}
		if withSeq {
			dest = append(dest, &seq)
		}
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		a.FirstSeen, a.LastSeen = a.FirstSeen.UTC(), a.LastSeen.UTC()
		f(a, seq)
	}
	return rows.Err()
}

// scanDetections runs query, whose rows are (sha256, name, count), and adds
// each count to the aggregate of its hash in aggs.
func scanDetections(ctx context.Context, tx pgx.Tx, aggs map[string]store.Aggregate, query string, args ...any) error {
	rows, err := tx.Query(ctx, query, args...)
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
