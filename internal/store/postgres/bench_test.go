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
//	go test -run '^$' -bench 'PutBatch500|RawInsert500' -benchtime 2000x -count 3 ./internal/store/postgres

const benchBatch = 500

// benchBatches feeds b.N batches of a workload to put, generating them
// outside the timer a few at a time, and reports records/s.
func benchBatches(b *testing.B, w *storetest.Workload, put func(*store.Batch)) {
	const ahead = 50
	var next []*store.Batch
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if len(next) == 0 {
			b.StopTimer()
			for range ahead {
				next = append(next, w.Batch(benchBatch))
			}
			b.StartTimer()
		}
		put(next[0])
		next = next[1:]
	}
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "records/s")
}

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
	benchBatches(b, storetest.NewWorkload(1), func(batch *store.Batch) {
		if _, err := s.PutBatch(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkPutBatch500Unique is the worst case for aggregates: every
// record's hash is new.
func BenchmarkPutBatch500Unique(b *testing.B) {
	s := benchOpen(b)
	w := storetest.NewWorkload(1)
	w.Unique = true
	benchBatches(b, w, func(batch *store.Batch) {
		if _, err := s.PutBatch(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	})
}

func BenchmarkRawInsert500(b *testing.B) {
	s := benchOpen(b)
	ctx := b.Context()
	var id int64
	benchBatches(b, storetest.NewWorkload(1), func(batch *store.Batch) {
		recs := make([][]any, len(batch.Records))
		personal := make([][]any, len(batch.Records))
		for i, r := range batch.Records {
			id++
			recs[i] = []any{id, int64(1), r.Time, r.Kind, r.SHA256, r.Size, r.Detection, r.Product, int64(r.RuleDB)}
			personal[i] = []any{id, batch.EndpointID, r.URL, r.Path}
		}
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"records"},
				[]string{"id", "batch_pk", "time", "kind", "sha256", "size", "detection", "product", "ruledb"},
				pgx.CopyFromRows(recs)); err != nil {
				return err
			}
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"personal"}, []string{"record_id", "endpoint_id", "url", "path"},
				pgx.CopyFromRows(personal))
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	})
}
