package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/vitrine-dev/vitrine/internal/seal"
	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/telemetry"
)

// Batches returns up to q.Limit batches of q.Country with PKs above
// q.After, whole, in PK order, through the index on (country, pk).
func (s *Store) Batches(ctx context.Context, q store.BatchQuery) (_ []store.StoredBatch, err error) {
	defer store.Classify(&err)
	if err := store.CheckBatchQuery(q); err != nil {
		return nil, fmt.Errorf("reading batches: %w", err)
	}
	if s.closed.Load() {
		return nil, fmt.Errorf("reading batches: %w", store.ErrClosed)
	}
	var out []store.StoredBatch
	// One snapshot for the batches and their records.
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("reading batches: %w", s.closedErr(err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	rows, err := tx.Query(ctx, `SELECT pk, pseudonym, batch_id, country, received, count, wrapped_key, key_id
		FROM batches WHERE country = $1 AND pk > $2 ORDER BY pk LIMIT $3`, q.Country, q.After, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("reading batches: %w", s.closedErr(err))
	}
	var counts []int64
	for rows.Next() {
		var sb store.StoredBatch
		var count int64
		var keyID *string
		b := &sb.Batch
		if err := rows.Scan(&sb.PK, &b.Pseudonym, &b.BatchID, &b.Country, &b.Received, &count, &b.Sealed.WrappedKey, &keyID); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading batches: %w", err)
		}
		b.Received = b.Received.UTC()
		if keyID != nil {
			b.Sealed.KeyID = *keyID
		} else if len(b.Sealed.WrappedKey) > 0 {
			b.Sealed.KeyID = seal.KeyID(b.Sealed.WrappedKey)
		}
		out = append(out, sb)
		counts = append(counts, count)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading batches: %w", s.closedErr(err))
	}
	for i := range out {
		sb := &out[i]
		first := sb.PK << recordIDBits
		if q.IDsOnly {
			rows, err := tx.Query(ctx, `SELECT id FROM records WHERE id >= $1 AND id < $2 ORDER BY id`, first, first+counts[i])
			if err != nil {
				return nil, fmt.Errorf("reading batches: %w", s.closedErr(err))
			}
			if sb.IDs, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
				return nil, fmt.Errorf("reading batches: %w", s.closedErr(err))
			}
			continue
		}
		rows, err := tx.Query(ctx, `SELECT r.id, r.time, r.kind, r.sha256, r.size, r.detection, r.product, r.ruledb, p.sealed
			FROM records r LEFT JOIN personal p ON p.record_id = r.id
			WHERE r.id >= $1 AND r.id < $2 ORDER BY r.id`, first, first+counts[i])
		if err != nil {
			return nil, fmt.Errorf("reading batches: %w", s.closedErr(err))
		}
		for rows.Next() {
			var id, ruledb int64
			var r telemetry.Record
			var sealed []byte
			if err := rows.Scan(&id, &r.Time, &r.Kind, &r.SHA256, &r.Size, &r.Detection, &r.Product, &ruledb, &sealed); err != nil {
				rows.Close()
				return nil, fmt.Errorf("reading batches: %w", err)
			}
			r.Time, r.RuleDB = r.Time.UTC(), uint64(ruledb)
			sb.IDs = append(sb.IDs, id)
			sb.Batch.Records = append(sb.Batch.Records, r)
			sb.Batch.Sealed.Records = append(sb.Batch.Sealed.Records, sealed)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("reading batches: %w", s.closedErr(err))
		}
	}
	return out, nil
}

// PutBatches stores the batches in one transaction, each as PutBatch
// would, and returns the ids of every batch's records, stored now or
// before.
func (s *Store) PutBatches(ctx context.Context, bs []*store.Batch) (_ []store.BatchResult, err error) {
	defer store.Classify(&err)
	for i, b := range bs {
		if err := store.CheckBatch(b); err != nil {
			return nil, fmt.Errorf("storing batch %d: %w", i, err)
		}
	}
	if s.closed.Load() {
		return nil, fmt.Errorf("storing batches: %w", store.ErrClosed)
	}
	res := make([]store.BatchResult, len(bs))
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		for i, b := range bs {
			// A batch stored before inserts nothing (ON CONFLICT DO
			// NOTHING) and leaves the transaction usable.
			err := s.putBatch(ctx, tx, b, summarize(b.Records))
			switch {
			case errors.Is(err, errDuplicate):
			case err != nil:
				return err
			default:
				res[i].Stored = true
			}
			var pk, count int64
			if err := tx.QueryRow(ctx, `SELECT pk, count FROM batches WHERE pseudonym = $1 AND batch_id = $2`, b.Pseudonym, b.BatchID).Scan(&pk, &count); err != nil {
				return err
			}
			res[i].PK = pk
			rows, err := tx.Query(ctx, `SELECT id FROM records WHERE id >= $1 AND id < $2 ORDER BY id`, pk<<recordIDBits, pk<<recordIDBits+count)
			if err != nil {
				return err
			}
			if res[i].IDs, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storing batches: %w", s.closedErr(err))
	}
	return res, nil
}

// DeleteBatches deletes the batches with the given PKs, with their records
// and sealed halves, in one transaction.
func (s *Store) DeleteBatches(ctx context.Context, pks []int64) (_ int64, err error) {
	defer store.Classify(&err)
	if len(pks) == 0 {
		return 0, nil
	}
	if s.closed.Load() {
		return 0, fmt.Errorf("deleting batches: %w", store.ErrClosed)
	}
	var n int64
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		ids := fmt.Sprintf(`SELECT r.id FROM batches b JOIN records r
			ON r.id >= b.pk << %[1]d AND r.id < (b.pk << %[1]d) + b.count WHERE b.pk = ANY ($1)`, recordIDBits)
		if _, err := tx.Exec(ctx, `DELETE FROM personal WHERE record_id IN (`+ids+`)`, pks); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM records WHERE id IN (`+ids+`)`, pks)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		_, err = tx.Exec(ctx, `DELETE FROM batches WHERE pk = ANY ($1)`, pks)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("deleting batches: %w", s.closedErr(err))
	}
	return n, nil
}

// boundKeyID is the key_id column of b: NULL when its sealed halves are
// bound to its own wrapped key, and the bound key id when a relocation
// rewrapped the key.
func boundKeyID(b *store.Batch) *string {
	if b.Sealed.KeyID == "" || b.Sealed.KeyID == seal.KeyID(b.Sealed.WrappedKey) {
		return nil
	}
	return &b.Sealed.KeyID
}
