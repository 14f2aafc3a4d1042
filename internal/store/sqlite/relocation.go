package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

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
	err = s.readTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT pk, pseudonym, batch_id, country, received, count, first_id, wrapped_key, key_id
			FROM batches WHERE country = ? AND pk > ? ORDER BY pk LIMIT ?`, q.Country, q.After, q.Limit)
		if err != nil {
			return err
		}
		type span struct{ first, count int64 }
		var spans []span
		for rows.Next() {
			var sb store.StoredBatch
			var received int64
			var sp span
			var keyID sql.NullString
			b := &sb.Batch
			if err := rows.Scan(&sb.PK, &b.Pseudonym, &b.BatchID, &b.Country, &received, &sp.count, &sp.first, &b.Sealed.WrappedKey, &keyID); err != nil {
				rows.Close()
				return err
			}
			b.Received = fromMicro(received)
			b.Sealed.KeyID = keyID.String
			if b.Sealed.KeyID == "" && len(b.Sealed.WrappedKey) > 0 {
				b.Sealed.KeyID = seal.KeyID(b.Sealed.WrappedKey)
			}
			out = append(out, sb)
			spans = append(spans, sp)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for i := range out {
			if q.IDsOnly {
				if err := readBatchIDs(ctx, tx, &out[i], spans[i].first, spans[i].count); err != nil {
					return err
				}
				continue
			}
			if err := readBatchRecords(ctx, tx, &out[i], spans[i].first, spans[i].count); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading batches: %w", err)
	}
	return out, nil
}

// readBatchRecords reads the records still stored of the batch whose ids
// are first to first+count-1.
func readBatchRecords(ctx context.Context, tx *sql.Tx, sb *store.StoredBatch, first, count int64) error {
	rows, err := tx.QueryContext(ctx, `SELECT r.id, r.time, r.kind, r.sha256, r.size, r.detection, r.product, r.ruledb, p.sealed
		FROM records r LEFT JOIN personal p ON p.record_id = r.id
		WHERE r.id >= ? AND r.id < ? ORDER BY r.id`, first, first+count)
	if err != nil {
		return err
	}
	defer rows.Close()
	b := &sb.Batch
	for rows.Next() {
		var id, t, ruledb int64
		var r telemetry.Record
		var sealed []byte
		if err := rows.Scan(&id, &t, &r.Kind, &r.SHA256, &r.Size, &r.Detection, &r.Product, &ruledb, &sealed); err != nil {
			return err
		}
		r.Time, r.RuleDB = fromMicro(t), uint64(ruledb)
		sb.IDs = append(sb.IDs, id)
		b.Records = append(b.Records, r)
		b.Sealed.Records = append(b.Sealed.Records, sealed)
	}
	return rows.Err()
}

// PutBatches stores the batches as PutBatch would, in one transaction:
// they join the writer's queue together, in order, so that one writer
// takes them all, each in its own savepoint, with one sync. It then reads
// back the ids of every batch's records, stored now or before.
func (s *Store) PutBatches(ctx context.Context, bs []*store.Batch) (_ []store.BatchResult, err error) {
	defer store.Classify(&err)
	if len(bs) == 0 {
		return nil, nil
	}
	reqs := make([]*putRequest, len(bs))
	for i, b := range bs {
		if err := store.CheckBatch(b); err != nil {
			return nil, fmt.Errorf("storing batch %d: %w", i, err)
		}
		reqs[i] = &putRequest{ctx: ctx, b: b, w: newBatchWrite(b), done: make(chan struct{})}
	}
	s.queueMu.Lock()
	s.queue = append(s.queue, reqs...)
	s.queueMu.Unlock()
	last := reqs[len(reqs)-1]
	select {
	case <-last.done:
	case s.writer <- struct{}{}:
		select {
		case <-last.done:
		default:
			s.writeQueued()
		}
		s.unlock()
	}
	res := make([]store.BatchResult, len(bs))
	for i, r := range reqs {
		<-r.done
		if r.err != nil {
			return nil, fmt.Errorf("storing batch %d: %w", i, r.err)
		}
		res[i].Stored = r.stored
	}
	err = s.readTx(ctx, func(tx *sql.Tx) error {
		for i, b := range bs {
			var first, count int64
			if err := tx.QueryRowContext(ctx, `SELECT pk, first_id, count FROM batches WHERE pseudonym = ? AND batch_id = ?`,
				b.Pseudonym, b.BatchID).Scan(&res[i].PK, &first, &count); err != nil {
				return fmt.Errorf("batch %d: %w", i, err)
			}
			rows, err := tx.QueryContext(ctx, `SELECT id FROM records WHERE id >= ? AND id < ? ORDER BY id`, first, first+count)
			if err != nil {
				return err
			}
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return err
				}
				res[i].IDs = append(res[i].IDs, id)
			}
			if err := rows.Close(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading stored batches: %w", err)
	}
	return res, nil
}

// DeleteBatches deletes the batches with the given PKs, with their records
// and sealed halves, in one transaction, after folding what is pending
// (as DeleteRecords does).
func (s *Store) DeleteBatches(ctx context.Context, pks []int64) (_ int64, err error) {
	defer store.Classify(&err)
	// The records of the batches: their id ranges.
	n, err := s.deleteRecordsOf(ctx, pks, `SELECT r.id FROM json_each(?1) j CROSS JOIN batches b ON b.pk = j.value
		JOIN records r ON r.id >= b.first_id AND r.id < b.first_id + b.count`,
		`DELETE FROM batches WHERE pk IN (SELECT value FROM json_each(?1))`)
	if err != nil {
		return 0, fmt.Errorf("deleting batches: %w", err)
	}
	return n, nil
}

// boundKeyID is the key_id column of b: NULL when its sealed halves are
// bound to its own wrapped key, the usual case, and the bound key id when a
// relocation rewrapped the key.
func boundKeyID(b *store.Batch) any {
	if b.Sealed.KeyID == "" || b.Sealed.KeyID == seal.KeyID(b.Sealed.WrappedKey) {
		return nil
	}
	return b.Sealed.KeyID
}

// deleteHashRecords deletes the hash_records rows of the (sha256, id) pairs
// that query selects, in key order, a few hundred per statement, each found by its primary key: the rows of
// a batch's records lie all over the table, and in key order each page is
// visited once. The caller holds the writer, in a transaction.
func (s *Store) deleteHashRecords(ctx context.Context, query string, args ...any) error {
	rows, err := s.w.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	type pair struct {
		sha string
		id  int64
	}
	var pairs []pair
	for rows.Next() {
		var p pair
		if err := rows.Scan(&p.sha, &p.id); err != nil {
			rows.Close()
			return err
		}
		pairs = append(pairs, p)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if err := rows.Err(); err != nil {
		return err
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if c := strings.Compare(a.sha, b.sha); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	return s.execChunks(ctx, chunkRows(deleteHashRecords, len(pairs), nil, func(args []any, i int) []any {
		return append(args, pairs[i].sha, pairs[i].id)
	}))
}

// readBatchIDs reads the ids of the records still stored of the batch whose
// ids are first to first+count-1.
func readBatchIDs(ctx context.Context, tx *sql.Tx, sb *store.StoredBatch, first, count int64) error {
	rows, err := tx.QueryContext(ctx, `SELECT id FROM records WHERE id >= ? AND id < ? ORDER BY id`, first, first+count)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return err
		}
		sb.IDs = append(sb.IDs, id)
	}
	return rows.Err()
}
