package sqlite

import (
	"database/sql"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/internal/store/storetest"
)

// The benchmarks below run side by side: PutBatch, and the plainest fast
// bulk insert of the same rows into the same tables of the same kind of
// store, with no idempotency and no aggregates. Compare their records/s:
//
//	go test -run '^$' -bench 'PutBatch500|RawInsert500' -benchtime 2000x -count 3 ./internal/store/sqlite
//
// PutBatch500Unique is the worst case, every hash new; PutBatch500Parallel
// puts from many goroutines, as an HTTP server does.

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
	s, err := Open(b.Context(), filepath.Join(b.TempDir(), "bench.db"))
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

// BenchmarkPutBatch500Parallel puts from 16 goroutines at once, as the
// handlers of concurrent HTTP clients do, so that batches share commits.
func BenchmarkPutBatch500Parallel(b *testing.B) {
	s := benchOpen(b)
	w := storetest.NewWorkload(1)
	batches := make([]*store.Batch, b.N)
	for i := range batches {
		batches[i] = w.Batch(benchBatch)
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.PutBatch(b.Context(), batches[next.Add(1)-1]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkRawInsert500(b *testing.B) {
	s := benchOpen(b)
	ctx := b.Context()
	insert := func(table string, cols, rows int) *sql.Stmt {
		row := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
		st, err := s.w.PrepareContext(ctx, "INSERT INTO "+table+" VALUES "+strings.TrimSuffix(strings.Repeat(row+",", rows), ","))
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	records, personal := insert("records", 9, benchBatch), insert("personal", 4, benchBatch)
	var id int64
	rargs, pargs := make([]any, 0, 9*benchBatch), make([]any, 0, 4*benchBatch)
	benchBatches(b, storetest.NewWorkload(1), func(batch *store.Batch) {
		rargs, pargs = rargs[:0], pargs[:0]
		for _, r := range batch.Records {
			id++
			rargs = append(rargs, id, 1, r.Time.UnixMicro(), r.Kind, r.SHA256, r.Size, r.Detection, r.Product, int64(r.RuleDB))
			pargs = append(pargs, id, batch.EndpointID, r.URL, r.Path)
		}
		err := s.inTx(ctx, func() error {
			if _, err := records.ExecContext(ctx, rargs...); err != nil {
				return err
			}
			_, err := personal.ExecContext(ctx, pargs...)
			return err
		}, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
	})
}
