package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/vitrine-dev/vitrine/internal/store"
)

// Records returns the records q selects, in id order, and whether there
// were more than q.Limit. By hash, it finds them through hash_records, which
// folds fill, and the ids pending hashes carry; by endpoint, through the
// endpoint's batches (the unique index on pseudonym and batch id) and
// their ranges of record ids. Each shape of query is prepared once.
func (s *Store) Records(ctx context.Context, q store.RecordQuery) (_ []store.StoredRecord, _ bool, err error) {
	defer store.Classify(&err)
	q, err = store.CheckQuery(q)
	if err != nil {
		return nil, false, fmt.Errorf("reading records: %w", err)
	}
	if s.closed.Load() {
		return nil, false, fmt.Errorf("reading records: %w", store.ErrClosed)
	}
	release, err := s.admitReader(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("reading records: %w", err)
	}
	defer release()
	var recs []store.StoredRecord
	s.pendMu.RLock()
	defer s.pendMu.RUnlock()
	err = s.readTx(ctx, func(tx *sql.Tx) error {
		var ids []int64
		if q.SHA256 != "" {
			if ids, err = s.recordsOfHash(ctx, tx, q); err != nil {
				return err
			}
			if len(ids) == 0 {
				return nil
			}
		}
		stmt, err := s.recordsStmt(ctx, q)
		if err != nil {
			return err
		}
		recs, err = scanRecords(ctx, tx.StmtContext(ctx, stmt), q, ids)
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

// recordsOfHash returns the ids of the records of q's hash above q.After,
// ascending: the folded ones from hash_records, the pending ones from
// memory. When nothing else narrows the query, only the first q.Limit+1
// can be answered, and only those are returned. The caller holds pendMu.
func (s *Store) recordsOfHash(ctx context.Context, tx *sql.Tx, q store.RecordQuery) ([]int64, error) {
	window := q.Pseudonym == "" && q.From.IsZero() && q.To.IsZero()
	limit := -1 // no limit
	if window {
		limit = q.Limit + 1
	}
	stmt, err := s.readStmt(ctx, `SELECT record_id FROM hash_records WHERE sha256 = ? AND record_id > ? ORDER BY record_id LIMIT ?`)
	if err != nil {
		return nil, err
	}
	rows, err := tx.StmtContext(ctx, stmt).QueryContext(ctx, q.SHA256, q.After, limit)
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
	for _, d := range []*pending{s.pend, s.folding} {
		if d == nil {
			continue
		}
		if h := d.hashes[q.SHA256]; h != nil {
			for _, id := range h.ids {
				if id > q.After {
					ids = append(ids, id)
				}
			}
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if window && len(ids) > limit {
		ids = ids[:limit]
	}
	return ids, nil
}

// recordColumns are what scanRecords reads, from records r, batches b
// and personal p.
const recordColumns = `r.id, r.time, r.kind, r.sha256, r.size, r.detection, r.product, r.ruledb,
		b.pseudonym, b.country, b.batch_id, b.received, b.wrapped_key, b.key_id, p.sealed`

// recordsSQL is the query for q's shape: by the ids of a hash (a JSON
// array, the first parameter) or by the endpoint's batches, with only the
// conditions q has, so that SQLite plans each shape once. The parameters
// follow in the order of recordsArgs.
func recordsSQL(q store.RecordQuery) string {
	var b strings.Builder
	b.WriteString("SELECT " + recordColumns + "\n\tFROM ")
	if q.SHA256 != "" {
		b.WriteString(`json_each(?) j CROSS JOIN records r ON r.id = j.value
		JOIN batches b ON b.pk = r.batch_pk`)
	} else {
		b.WriteString(`batches b
		JOIN records r ON b.pseudonym = ? AND r.id >= b.first_id AND r.id < b.first_id + b.count`)
	}
	b.WriteString("\n\tLEFT JOIN personal p ON p.record_id = r.id\n\tWHERE r.id > ?")
	if q.SHA256 != "" && q.Pseudonym != "" {
		b.WriteString(" AND b.pseudonym = ?")
	}
	if !q.From.IsZero() {
		b.WriteString(" AND r.time >= ?")
	}
	if !q.To.IsZero() {
		b.WriteString(" AND r.time < ?")
	}
	b.WriteString("\n\tORDER BY r.id LIMIT ?")
	return b.String()
}

// recordsArgs are the parameters of recordsSQL(q).
func recordsArgs(q store.RecordQuery, ids []int64) ([]any, error) {
	var args []any
	if q.SHA256 != "" {
		j, err := json.Marshal(ids)
		if err != nil {
			return nil, err
		}
		args = append(args, string(j))
	} else {
		args = append(args, q.Pseudonym)
	}
	args = append(args, q.After)
	if q.SHA256 != "" && q.Pseudonym != "" {
		args = append(args, q.Pseudonym)
	}
	if !q.From.IsZero() {
		args = append(args, q.From.UnixMicro())
	}
	if !q.To.IsZero() {
		args = append(args, q.To.UnixMicro())
	}
	return append(args, q.Limit+1), nil
}

// recordsStmt returns the prepared statement of q's shape.
func (s *Store) recordsStmt(ctx context.Context, q store.RecordQuery) (*sql.Stmt, error) {
	return s.readStmt(ctx, recordsSQL(q))
}

// readStmt returns query prepared on the reader pool, preparing it once.
// database/sql prepares it again on each connection the first time it
// runs there.
func (s *Store) readStmt(ctx context.Context, query string) (*sql.Stmt, error) {
	s.readStmtsMu.Lock()
	defer s.readStmtsMu.Unlock()
	if st := s.readStmts[query]; st != nil {
		return st, nil
	}
	st, err := s.read.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if s.readStmts == nil {
		s.readStmts = map[string]*sql.Stmt{}
	}
	s.readStmts[query] = st
	return st, nil
}

// scanRecords runs stmt, a recordsStmt of q, for up to q.Limit+1 records.
func scanRecords(ctx context.Context, stmt *sql.Stmt, q store.RecordQuery, ids []int64) ([]store.StoredRecord, error) {
	args, err := recordsArgs(q, ids)
	if err != nil {
		return nil, err
	}
	rows, err := stmt.QueryContext(ctx, args...)
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

// admitReader waits for one of the reader pool's connections to be free
// for this read, first come first served (database/sql hands a freed
// connection to a random waiter, which made the slowest reads far slower
// than the rest under load), before the read takes pendMu, so that reads
// waiting for a connection do not hold back a fold. It returns the
// function that lets the next read in.
func (s *Store) admitReader(ctx context.Context) (func(), error) {
	select {
	case s.readers <- struct{}{}:
		return func() { <-s.readers }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// DeleteRecords deletes the records with the given ids, both halves, in
// one transaction, after folding what is pending so that the aggregates,
// which keep counting them, do not depend on records that are gone.
func (s *Store) DeleteRecords(ctx context.Context, ids []int64) (_ int64, err error) {
	defer store.Classify(&err)
	n, err := s.deleteRecordsOf(ctx, ids, `SELECT value FROM json_each(?1)`, "")
	if err != nil {
		return 0, fmt.Errorf("deleting records: %w", err)
	}
	return n, nil
}

// deleteRecordsOf deletes, after folding what is pending and in one
// transaction, the records whose ids idsQuery selects given keys as the
// JSON array ?1, with their sealed halves and their hash_records rows,
// then runs then (if not empty) with the same parameter. It returns how
// many records it deleted.
func (s *Store) deleteRecordsOf(ctx context.Context, keys []int64, idsQuery, then string) (int64, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	s.lock()
	defer s.unlock()
	if s.closed.Load() {
		return 0, store.ErrClosed
	}
	if err := s.foldLocked(ctx, false); err != nil {
		return 0, err
	}
	j, err := json.Marshal(keys)
	if err != nil {
		return 0, err
	}
	var n int64
	err = s.inTx(ctx, func() error {
		if err := s.deleteHashRecords(ctx, `SELECT sha256, id FROM records WHERE id IN (`+idsQuery+`)`, string(j)); err != nil {
			return err
		}
		if _, err := s.w.ExecContext(ctx, `DELETE FROM personal WHERE record_id IN (`+idsQuery+`)`, string(j)); err != nil {
			return err
		}
		res, err := s.w.ExecContext(ctx, `DELETE FROM records WHERE id IN (`+idsQuery+`)`, string(j))
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil || then == "" {
			return err
		}
		_, err = s.w.ExecContext(ctx, then, string(j))
		return err
	}, nil, nil)
	return n, err
}
