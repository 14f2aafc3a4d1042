package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vitrine-dev/vitrine/internal/store"
)

// recordColumns are the columns fetchRecords scans, from records r,
// batches b and personal p.
const recordColumns = `r.id, r.time, r.kind, r.sha256, r.size, r.detection, r.product, r.ruledb,
	b.pseudonym, b.country, b.batch_id, b.received, b.wrapped_key, b.key_id, p.sealed`

// Records returns the records q selects, in id order, and whether there
// were more than q.Limit: by hash through the records_sha256 index, by
// endpoint through its batches, whose records' ids are the batch's pk
// shifted by recordIDBits plus their index.
func (s *Store) Records(ctx context.Context, q store.RecordQuery) (_ []store.StoredRecord, _ bool, err error) {
	defer store.Classify(&err)
	q, err = store.CheckQuery(q)
	if err != nil {
		return nil, false, fmt.Errorf("reading records: %w", err)
	}
	if s.closed.Load() {
		return nil, false, fmt.Errorf("reading records: %w", store.ErrClosed)
	}
	var from, to *time.Time
	if !q.From.IsZero() {
		from = &q.From
	}
	if !q.To.IsZero() {
		to = &q.To
	}
	var query string
	if q.SHA256 != "" {
		query = `SELECT ` + recordColumns + `
			FROM records r JOIN batches b ON b.pk = r.batch_pk LEFT JOIN personal p ON p.record_id = r.id
			WHERE r.sha256 = $1 AND ($2 = '' OR b.pseudonym = $2)
				AND ($3::timestamptz IS NULL OR r.time >= $3) AND ($4::timestamptz IS NULL OR r.time < $4) AND r.id > $6
			ORDER BY r.id LIMIT $5`
	} else {
		query = `SELECT ` + recordColumns + `
			FROM batches b
			JOIN records r ON r.id >= b.pk << ` + fmt.Sprint(recordIDBits) + ` AND r.id < (b.pk << ` + fmt.Sprint(recordIDBits) + `) + b.count
			LEFT JOIN personal p ON p.record_id = r.id
			WHERE b.pseudonym = $2 AND ($1 = '' OR r.sha256 = $1)
				AND ($3::timestamptz IS NULL OR r.time >= $3) AND ($4::timestamptz IS NULL OR r.time < $4) AND r.id > $6
			ORDER BY r.id LIMIT $5`
	}
	rows, err := s.pool.Query(ctx, query, q.SHA256, q.Pseudonym, from, to, q.Limit+1, q.After)
	if err != nil {
		return nil, false, fmt.Errorf("reading records: %w", s.closedErr(err))
	}
	recs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.StoredRecord, error) {
		var sr store.StoredRecord
		var ruledb int64
		r := &sr.Record
		var keyID *string
		err := row.Scan(&sr.ID, &r.Time, &r.Kind, &r.SHA256, &r.Size, &r.Detection, &r.Product, &ruledb,
			&sr.Pseudonym, &sr.Country, &sr.BatchID, &sr.Received, &sr.WrappedKey, &keyID, &sr.Sealed)
		if keyID != nil {
			sr.KeyID = *keyID
		}
		r.Time, sr.Received, r.RuleDB = r.Time.UTC(), sr.Received.UTC(), uint64(ruledb)
		return sr, err
	})
	if err != nil {
		return nil, false, fmt.Errorf("reading records: %w", s.closedErr(err))
	}
	more := len(recs) > q.Limit
	if more {
		recs = recs[:q.Limit]
	}
	return recs, more, nil
}

// DeleteRecords deletes the records with the given ids, both halves, in
// one transaction.
func (s *Store) DeleteRecords(ctx context.Context, ids []int64) (_ int64, err error) {
	defer store.Classify(&err)
	if len(ids) == 0 {
		return 0, nil
	}
	if s.closed.Load() {
		return 0, fmt.Errorf("deleting records: %w", store.ErrClosed)
	}
	var n int64
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM personal WHERE record_id = ANY ($1)`, ids); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM records WHERE id = ANY ($1)`, ids)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("deleting records: %w", s.closedErr(err))
	}
	return n, nil
}
