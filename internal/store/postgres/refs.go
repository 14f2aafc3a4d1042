package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/vitrine-dev/vitrine/internal/store"
)

// RecordRefs reads the refs of the stored records, in id order, from one
// REPEATABLE READ snapshot, and hands them to f in pages of at most
// pageSize (see [store.Store]).
//
// A snapshot alone is not enough for the bound through: batches are
// written concurrently and a batch's ids come from its pk, which the
// identity sequence gives out when the batch is inserted, not when it
// commits. A batch that took pk 7 can commit after one that took pk 8, so
// a snapshot can hold the records of pk 8 and not yet those of pk 7. So
// RecordRefs first settles the bound (see settledBound): it waits until
// no transaction that inserted a batch is under way, takes the largest id
// the pks given out so far allow, and lets ingest go on; every batch
// inserted afterwards has a larger pk, hence larger ids. The snapshot,
// taken after that, holds every record up to the bound that was not
// deleted meanwhile, and RecordRefs leaves out the records beyond it.
func (s *Store) RecordRefs(ctx context.Context, pageSize int, f func(page []store.RecordRef) error) (_ int64, err error) {
	defer store.Classify(&err)
	pageSize, err = store.CheckPageSize(pageSize)
	if err != nil {
		return 0, fmt.Errorf("reading record refs: %w", err)
	}
	if s.closed.Load() {
		return 0, fmt.Errorf("reading record refs: %w", store.ErrClosed)
	}
	through, err := s.settledBound(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading record refs: settling the bound: %w", s.closedErr(err))
	}
	err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, sha256, time FROM records WHERE id <= $1 ORDER BY id`, through)
		if err != nil {
			return err
		}
		defer rows.Close()
		pager := store.NewRefPager(pageSize, f)
		for rows.Next() {
			var r store.RecordRef
			if err := rows.Scan(&r.ID, &r.SHA256, &r.Time); err != nil {
				return err
			}
			r.Time = r.Time.UTC()
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
		return 0, fmt.Errorf("reading record refs: %w", s.closedErr(err))
	}
	return through, nil
}

// settleLockTimeout bounds how long settledBound waits for the batches under
// way, during which new batches queue behind it: a commitment that cannot
// settle its bound soon fails, to be retried, rather than stall ingest.
const settleLockTimeout = "2s"

// settledBound returns, once no transaction that inserted a batch is
// under way, the largest record id that a batch given a pk so far can
// hold. PutBatch inserts its batch row, and so takes its pk, before its
// records, and holds a ROW EXCLUSIVE lock on batches from then until it
// ends, which a SHARE lock waits for. Every pk given out before the lock
// was granted belongs to a batch that has committed or rolled back, and
// every pk given out after it is larger, since the identity sequence
// hands out values one at a time (CACHE 1, the default, which the schema
// keeps). So no record with an id at most the bound can still appear, and
// the bound never goes back, whatever is deleted.
func (s *Store) settledBound(ctx context.Context) (int64, error) {
	var lastPK int64
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '`+settleLockTimeout+`'`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `LOCK TABLE batches IN SHARE MODE`); err != nil {
			return err
		}
		// Null until the sequence has given out a value.
		return tx.QueryRow(ctx, `SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('batches', 'pk')::regclass), 0)`).Scan(&lastPK)
	})
	if err != nil || lastPK == 0 {
		return 0, err
	}
	return (lastPK+1)<<recordIDBits - 1, nil
}
