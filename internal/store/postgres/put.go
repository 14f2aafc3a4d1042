package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/telemetry"
)

// PutBatch stores b and updates the aggregates of its hashes in one
// transaction, and returns after the commit is on disk. A batch already
// stored for the same (EndpointID, BatchID) is left as it is and PutBatch
// returns stored=false. On any error nothing of b is written.
//
// Records are taken as the telemetry parser validated them; PutBatch checks
// only what store.CheckBatch checks.
func (s *Store) PutBatch(ctx context.Context, b *store.Batch) (stored bool, err error) {
	defer store.Classify(&err)
	if err := store.CheckBatch(b); err != nil {
		return false, fmt.Errorf("storing batch: %w", err)
	}
	if s.closed.Load() {
		return false, fmt.Errorf("storing batch: %w", store.ErrClosed)
	}
	sum := summarize(b.Records)
	err = s.inTx(ctx, func(tx pgx.Tx) error { return s.putBatch(ctx, tx, b, sum) })
	switch {
	case errors.Is(err, errDuplicate):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("storing batch: %w", s.closedErr(err))
	}
	return true, nil
}

// inTx runs f in a transaction, which it commits only if f succeeds and
// ctx is still live. Once it starts to commit it waits for the outcome,
// whatever ctx does: a commit abandoned half-way could have succeeded
// after all.
func (s *Store) inTx(ctx context.Context, f func(pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // after Commit, a no-op
	if err := f(tx); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return tx.Commit(context.WithoutCancel(ctx))
}

// errDuplicate rolls back the transaction of a batch already stored.
var errDuplicate = errors.New("batch already stored")

// recordIDBits is how many low bits of a record's id hold its index in its
// batch: a record's id is its batch's pk << recordIDBits | index, so that a
// batch needs no id sequence and its records' ids are consecutive.
const recordIDBits = 14

// Every index in a batch fits in recordIDBits.
var _ [1<<recordIDBits - telemetry.MaxBatchRecords]struct{}

func (s *Store) putBatch(ctx context.Context, tx pgx.Tx, b *store.Batch, sum *summary) error {
	var batchPK int64
	err := tx.QueryRow(ctx, `INSERT INTO batches (pseudonym, batch_id, country, received, count, wrapped_key, key_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING pk`,
		b.Pseudonym, b.BatchID, b.Country, b.Received, len(b.Records), b.Sealed.WrappedKey, boundKeyID(b)).Scan(&batchPK)
	if errors.Is(err, pgx.ErrNoRows) {
		return errDuplicate
	}
	if err != nil {
		return err
	}
	firstID := batchPK << recordIDBits
	row := make([]any, 9)
	i := 0
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"records"},
		[]string{"id", "batch_pk", "time", "kind", "sha256", "size", "detection", "product", "ruledb"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == len(b.Records) {
				return nil, nil
			}
			r := &b.Records[i]
			row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8] =
				firstID+int64(i), batchPK, r.Time, r.Kind, r.SHA256, r.Size, r.Detection, r.Product, int64(r.RuleDB)
			i++
			return row, nil
		}))
	if err != nil {
		return fmt.Errorf("copying records: %w", err)
	}
	if err := putPersonal(ctx, tx, firstID, b.Sealed.Records); err != nil {
		return fmt.Errorf("copying personal fields: %w", err)
	}
	if len(sum.hashes) == 0 {
		return nil
	}

	// The aggregates last, under the lock that makes change sequence
	// numbers follow commit order; it is released when the transaction
	// ends. One round trip.
	q := &pgx.Batch{}
	q.Queue(`SELECT pg_advisory_xact_lock($1)`, s.aggLock)
	q.Queue(`WITH h AS (
			SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS h (sha256, first_seen, last_seen)
		), s AS (
			INSERT INTO sightings (pseudonym, sha256) SELECT $4, sha256 FROM h
			ON CONFLICT DO NOTHING RETURNING sha256
		)
		INSERT INTO aggregates (sha256, prevalence, first_seen, last_seen, seq)
		SELECT h.sha256, (s.sha256 IS NOT NULL)::int, h.first_seen, h.last_seen, nextval('aggregates_seq_seq')
		FROM h LEFT JOIN s USING (sha256) ORDER BY h.sha256
		ON CONFLICT (sha256) DO UPDATE SET
			prevalence = aggregates.prevalence + excluded.prevalence,
			first_seen = least(aggregates.first_seen, excluded.first_seen),
			last_seen = greatest(aggregates.last_seen, excluded.last_seen),
			seq = excluded.seq`,
		sum.hashes, sum.first, sum.last, b.Pseudonym)
	if len(sum.detHashes) > 0 {
		q.Queue(`INSERT INTO detections (sha256, name, count)
			SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
			ON CONFLICT (sha256, name) DO UPDATE SET count = detections.count + excluded.count`,
			sum.detHashes, sum.detNames, sum.detCounts)
	}
	if err := tx.SendBatch(ctx, q).Close(); err != nil {
		return fmt.Errorf("updating aggregates: %w", err)
	}
	return nil
}

// putPersonal is the only code that writes personal data: each record's
// sealed personal half, under the record's id.
func putPersonal(ctx context.Context, tx pgx.Tx, firstID int64, sealed [][]byte) error {
	row := make([]any, 2)
	i := 0
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"personal"}, []string{"record_id", "sealed"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == len(sealed) {
				return nil, nil
			}
			row[0], row[1] = firstID+int64(i), sealed[i]
			i++
			return row, nil
		}))
	return err
}

// summary is a batch's contribution to the aggregates, one entry per
// distinct hash, sorted by hash so that concurrent transactions lock rows
// in the same order, as arrays for unnest.
type summary struct {
	hashes      []string
	first, last []time.Time
	// Detection counts per (hash, name).
	detHashes, detNames []string
	detCounts           []int64
}

func summarize(recs []telemetry.Record) *summary {
	type acc struct{ first, last time.Time }
	byHash := make(map[string]*acc, len(recs))
	type key struct{ sha256, name string }
	dets := make(map[key]int64)
	for i := range recs {
		r := &recs[i]
		if a := byHash[r.SHA256]; a != nil {
			if r.Time.Before(a.first) {
				a.first = r.Time
			}
			if r.Time.After(a.last) {
				a.last = r.Time
			}
		} else {
			byHash[r.SHA256] = &acc{r.Time, r.Time}
		}
		if r.Detection != "" {
			dets[key{r.SHA256, r.Detection}]++
		}
	}
	s := &summary{}
	for h := range byHash {
		s.hashes = append(s.hashes, h)
	}
	slices.Sort(s.hashes)
	for _, h := range s.hashes {
		s.first = append(s.first, byHash[h].first)
		s.last = append(s.last, byHash[h].last)
	}
	keys := make([]key, 0, len(dets))
	for k := range dets {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		if c := strings.Compare(a.sha256, b.sha256); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	for _, k := range keys {
		s.detHashes = append(s.detHashes, k.sha256)
		s.detNames = append(s.detNames, k.name)
		s.detCounts = append(s.detCounts, dets[k])
	}
	return s
}
