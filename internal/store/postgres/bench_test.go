package postgres

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/internal/store/storetest"
)

// The benchmarks below run side by side: PutBatch, and the plainest fast
// bulk insert of the same rows into the same tables of the same kind of
// store (COPY, in one transaction per batch), with no idempotency and no
// aggregates. Compare their records/s:
//
//	go test -run '^$' -bench 'PutBatch500|RawInsert500|VsRaw' -benchtime 2000x -count 3 ./internal/store/postgres
//
// PutBatchVsRaw500 alternates the two batch by batch, which keeps the
// ratio meaningful on a machine that other work shares.

const benchBatch = 500

func benchOpen(b *testing.B) *Store {
	s, err := Open(b.Context(), testDSN(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func BenchmarkPutBatch500(b *testing.B) {
	s := benchOpen(b)
	storetest.Bench(b, storetest.NewWorkload(1), benchBatch, func(batch *store.Batch) error {
		_, err := s.PutBatch(b.Context(), batch)
		return err
	}, nil)
}

// BenchmarkPutBatch500Unique is the worst case for aggregates: every
// record's hash is new.
func BenchmarkPutBatch500Unique(b *testing.B) {
	s := benchOpen(b)
	w := storetest.NewWorkload(1)
	w.Unique = true
	storetest.Bench(b, w, benchBatch, func(batch *store.Batch) error {
		_, err := s.PutBatch(b.Context(), batch)
		return err
	}, nil)
}

// BenchmarkPutBatch500Parallel puts from 16 goroutines at once, as the
// handlers of concurrent HTTP clients do.
func BenchmarkPutBatch500Parallel(b *testing.B) {
	s := benchOpen(b)
	storetest.BenchParallel(b, storetest.NewWorkload(1), benchBatch, func(batch *store.Batch) error {
		_, err := s.PutBatch(b.Context(), batch)
		return err
	}, nil)
}

func BenchmarkRawInsert500(b *testing.B) {
	storetest.Bench(b, storetest.NewWorkload(1), benchBatch, rawInserter(b, benchOpen(b)), nil)
}

// BenchmarkPutBatchVsRaw500 alternates PutBatch into one store and the raw
// insert into another, batch by batch, and reports both rates and their
// ratio: the comparison least disturbed by other load on the machine.
func BenchmarkPutBatchVsRaw500(b *testing.B) {
	s := benchOpen(b)
	storetest.BenchVersus(b, storetest.NewWorkload(1), benchBatch, func(batch *store.Batch) error {
		_, err := s.PutBatch(b.Context(), batch)
		return err
	}, nil, rawInserter(b, benchOpen(b)))
}

// rawInserter returns the plainest fast bulk insert of a batch's rows into
// s's records and personal tables: COPY into each, in one transaction.
func rawInserter(b *testing.B, s *Store) func(*store.Batch) error {
	ctx := b.Context()
	var id int64
	return func(batch *store.Batch) error {
		recs := make([][]any, len(batch.Records))
		personal := make([][]any, len(batch.Records))
		for i, r := range batch.Records {
			id++
			recs[i] = []any{id, int64(1), r.Time, r.Kind, r.SHA256, r.Size, r.Detection, r.Product, int64(r.RuleDB)}
			personal[i] = []any{id, batch.Sealed.Records[i]}
		}
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"records"},
				[]string{"id", "batch_pk", "time", "kind", "sha256", "size", "detection", "product", "ruledb"},
				pgx.CopyFromRows(recs)); err != nil {
				return err
			}
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"personal"}, []string{"record_id", "sealed"},
				pgx.CopyFromRows(personal))
			return err
		})
	}
}
