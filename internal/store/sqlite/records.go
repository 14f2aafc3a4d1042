package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/vitrine-dev/vitrine/internal/store"
)

// Records returns the records q selects, in id order, and whether there
// were more than q.Limit. By hash, it finds them through hash_records, which
// folds fill, and the ids pending hashes carry; by endpoint, through the
// endpoint's batches (the unique index on pseudonym and batch id) and
// their ranges of record ids.
func (s *Store) Records(ctx context.Context, q store.RecordQuery) ([]store.StoredRecord, bool, error) {
	q, err := store.CheckQuery(q)
	if err != nil {
		return nil, false, fmt.Errorf("reading records: %w", err)
	}
	if s.closed.Load() {
		return nil, false, fmt.Errorf("reading records: %w", store.ErrClosed)
	}
	var recs []store.StoredRecord
	s.pendMu.RLock()
	defer s.pendMu.RUnlock()
	err = s.readTx(ctx, func(tx *sql.Tx) error {
		if q.SHA256 != "" {
			ids, err := s.recordsOfHash(ctx, tx, q.SHA256)
			if err != nil {
				return err
			}
			recs, err = scanRecords(ctx, tx, recordsByHash, q, ids)
			return err
		}
		recs, err = scanRecords(ctx, tx, recordsByEndpoint, q, nil)
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("reading records: %w", err)
	}
	more := len(recs) > q.Limit
	if more {
		recs = recs[:q.Limit]
	}
	return recs, more, nil
}

// recordsOfHash returns the ids of the records of hash sha, ascending: the
// folded ones from hash_records, the pending ones from memory. The caller
// holds pendMu.
func (s *Store) recordsOfHash(ctx context.Context, tx *sql.Tx, sha string) ([]int64, error) {
	rows, err := tx.QueryContext(ctx, `SELECT record_id FROM hash_records WHERE sha256 = ? ORDER BY record_id`, sha)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if d := s.pend.hashes[sha]; d != nil {
		ids = append(ids, d.ids...)
	}
	if s.folding != nil {
		if d := s.folding.hashes[sha]; d != nil {
			ids = append(ids, d.ids...)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// recordsQuery reads records, with their batch's columns and their sealed
// halves, from the join %s of records r and batches b, with q's conditions
// as parameters (see scanRecords).
const recordsQuery = `SELECT r.id, r.time, r.kind, r.sha256, r.size, r.detection, r.product, r.ruledb,
		b.pseudonym, b.country, b.batch_id, b.received, b.wrapped_key, b.key_id, p.sealed
	FROM %s
	LEFT JOIN personal p ON p.record_id = r.id
	WHERE (?2 = '' OR b.pseudonym = ?2) AND (?3 = '' OR r.sha256 = ?3)
		AND (?4 IS NULL OR r.time >= ?4) AND (?5 IS NULL OR r.time < ?5) AND r.id > ?7
	ORDER BY r.id LIMIT ?6`

// The record queries: by the ids in ?1, and by the endpoint in ?2, whose
// records are its batches' ranges of ids.
var (
	recordsByHash = fmt.Sprintf(recordsQuery, `json_each(?1) j CROSS JOIN records r ON r.id = j.value
		JOIN batches b ON b.pk = r.batch_pk`)
	recordsByEndpoint = fmt.Sprintf(recordsQuery, `batches b
		JOIN records r ON b.pseudonym = ?2 AND r.id >= b.first_id AND r.id < b.first_id + b.count`)
)

// scanRecords runs query, recordsByHash or recordsByEndpoint, with the ids (as ?1, a JSON
// array) and q's conditions, for up to q.Limit+1 records.
func scanRecords(ctx context.Context, tx *sql.Tx, query string, q store.RecordQuery, ids []int64) ([]store.StoredRecord, error) {
	j, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	var from, to sql.NullInt64
	if !q.From.IsZero() {
		from = sql.NullInt64{Int64: q.From.UnixMicro(), Valid: true}
	}
	if !q.To.IsZero() {
		to = sql.NullInt64{Int64: q.To.UnixMicro(), Valid: true}
	}
	rows, err := tx.QueryContext(ctx, query, string(j), q.Pseudonym, q.SHA256, from, to, q.Limit+1, q.After)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var recs []store.StoredRecord
	for rows.Next() {
		var sr store.StoredRecord
		var t, received, ruledb int64
		var keyID sql.NullString
		r := &sr.Record
		if err := rows.Scan(&sr.ID, &t, &r.Kind, &r.SHA256, &r.Size, &r.Detection, &r.Product, &ruledb,
			&sr.Pseudonym, &sr.Country, &sr.BatchID, &received, &sr.WrappedKey, &keyID, &sr.Sealed); err != nil {
			return nil, err
		}
		sr.KeyID = keyID.String
		r.Time, sr.Received, r.RuleDB = fromMicro(t), fromMicro(received), uint64(ruledb)
		recs = append(recs, sr)
	}
	return recs, rows.Err()
}

// DeleteRecords deletes the records with the given ids, both halves, in
// one transaction, after folding what is pending so that the aggregates,
// which keep counting them, do not depend on records that are gone.
func (s *Store) DeleteRecords(ctx context.Context, ids []int64) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	s.lock()
	defer s.unlock()
	if s.closed.Load() {
		return 0, fmt.Errorf("deleting records: %w", store.ErrClosed)
	}
	if err := s.foldLocked(ctx, false); err != nil {
		return 0, fmt.Errorf("deleting records: %w", err)
	}
	j, err := json.Marshal(ids)
	if err != nil {
		return 0, err
	}
	var n int64
	err = s.inTx(ctx, func() error {
		if _, err := s.w.ExecContext(ctx, `DELETE FROM hash_records WHERE (sha256, record_id) IN
			(SELECT r.sha256, r.id FROM json_each(?) j CROSS JOIN records r ON r.id = j.value)`, string(j)); err != nil {
			return err
		}
		if _, err := s.w.ExecContext(ctx, `DELETE FROM personal WHERE record_id IN (SELECT value FROM json_each(?))`, string(j)); err != nil {
			return err
		}
		res, err := s.w.ExecContext(ctx, `DELETE FROM records WHERE id IN (SELECT value FROM json_each(?))`, string(j))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	}, nil, nil)
	if err != nil {
		return 0, fmt.Errorf("deleting records: %w", err)
	}
	return n, nil
}
