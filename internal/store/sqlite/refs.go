package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/vitrine-dev/vitrine/internal/store"
)

// RecordRefs reads the refs of the stored records, in id order, in one read
// transaction, and hands them to f in pages of at most pageSize (see
// [store.Store]).
//
// One transaction is one snapshot: SQLite's WAL keeps it whole while
// batches are stored and records deleted beside it. Its bound through is
// the largest id given out as of the snapshot (see nextRecordIDQuery):
// PutBatch writes a batch's records in the transaction that gives them
// their ids, on the only writer, past that id, so a record the snapshot
// does not hold gets a larger one. The bound never goes back, even when
// the newest records are deleted. Records are written at PutBatch, not by
// folds, so pending batches are in the snapshot like folded ones.
//
// The read transaction holds its snapshot until the last page is handed
// over: meanwhile SQLite cannot checkpoint the WAL past it, so the WAL
// grows with what is written during the read.
func (s *Store) RecordRefs(ctx context.Context, pageSize int, f func(page []store.RecordRef) error) (through int64, err error) {
	defer store.Classify(&err)
	pageSize, err = store.CheckPageSize(pageSize)
	if err != nil {
		return 0, fmt.Errorf("reading record refs: %w", err)
	}
	if s.closed.Load() {
		return 0, fmt.Errorf("reading record refs: %w", store.ErrClosed)
	}
	err = s.readTx(ctx, func(tx *sql.Tx) error {
		var next int64
		if err := tx.QueryRowContext(ctx, nextRecordIDQuery).Scan(&next); err != nil {
			return err
		}
		through = next - 1
		rows, err := tx.QueryContext(ctx, `SELECT id, sha256, time FROM records ORDER BY id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		pager := store.NewRefPager(pageSize, f)
		for rows.Next() {
			var r store.RecordRef
			var t int64
			if err := rows.Scan(&r.ID, &r.SHA256, &t); err != nil {
				return err
			}
			r.Time = fromMicro(t)
			if err := pager.Add(r); err != nil {
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return pager.Flush()
	})
	if err != nil {
		return 0, fmt.Errorf("reading record refs: %w", err)
	}
	return through, nil
}

// nextRecordIDQuery returns the id that follows the largest ever given to
// a record, so that no id is given twice, which RecordRefs' bound relies
// on: the largest of the largest id stored, the last record folded
// (fold_state.record_id, which deletions do not lower; DeleteRecords folds
// first), and the last id of the last batch (whose records may be deleted
// since). Each part reads one row or the end of a b-tree.
const nextRecordIDQuery = `SELECT 1 + max(
	coalesce((SELECT max(id) FROM records), 0),
	(SELECT record_id FROM fold_state),
	coalesce((SELECT first_id + count - 1 FROM batches ORDER BY pk DESC LIMIT 1), 0))`
