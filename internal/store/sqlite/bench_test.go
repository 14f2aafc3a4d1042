package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/internal/store/storetest"
)

// The benchmarks below run side by side: PutBatch, and the plainest fast
// bulk insert of the same rows into the same tables of the same kind of
// store, with no idempotency and no aggregates. Compare their records/s:
//
//	go test -run '^$' -bench 'PutBatch500|RawInsert500|VsRaw' -benchtime 2000x -count 3 ./internal/store/sqlite
//
// PutBatchVsRaw500 alternates the two batch by batch, which keeps the
// ratio meaningful on a machine that other work shares.
//
// The PutBatch benchmarks end with a fold of what is pending, inside the
// timer, so that they count all the aggregate work their batches cause.
// PutBatch500Unique is the worst case, every hash new; PutBatch500Parallel
// puts from many goroutines, as an HTTP server does.

const benchBatch = 500

// foldAll folds what is pending, so that a benchmark of PutBatch counts
// all the work its batches cause.
func (s *Store) foldAll() error {
	s.lock()
	defer s.unlock()
	return s.foldLocked(context.Background(), false)
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
	storetest.Bench(b, storetest.NewWorkload(1), benchBatch, func(batch *store.Batch) error {
		_, err := s.PutBatch(b.Context(), batch)
		return err
	}, s.foldAll)
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
	}, s.foldAll)
}

// BenchmarkPutBatch500Parallel puts from 16 goroutines at once, as the
// handlers of concurrent HTTP clients do.
func BenchmarkPutBatch500Parallel(b *testing.B) {
	s := benchOpen(b)
	storetest.BenchParallel(b, storetest.NewWorkload(1), benchBatch, func(batch *store.Batch) error {
		_, err := s.PutBatch(b.Context(), batch)
		return err
	}, s.foldAll)
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
	}, s.foldAll, rawInserter(b, benchOpen(b)))
}

// rawInserter returns the plainest fast bulk insert of a batch's rows into
// s's records and personal tables: one prepared multi-row INSERT each, in
// one transaction, on the store's writer connection.
func rawInserter(b *testing.B, s *Store) func(*store.Batch) error {
	ctx := b.Context()
	insert := func(table string, cols, rows int) *sql.Stmt {
		row := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
		st, err := s.w.PrepareContext(ctx, "INSERT INTO "+table+" VALUES "+strings.TrimSuffix(strings.Repeat(row+",", rows), ","))
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	records, personal := insert("records", 9, benchBatch), insert("personal", 2, benchBatch)
	var id int64
	rargs, pargs := make([]any, 0, 9*benchBatch), make([]any, 0, 2*benchBatch)
	return func(batch *store.Batch) error {
		rargs, pargs = rargs[:0], pargs[:0]
		for i, r := range batch.Records {
			id++
			rargs = append(rargs, id, 1, r.Time.UnixMicro(), r.Kind, r.SHA256, r.Size, r.Detection, r.Product, int64(r.RuleDB))
			pargs = append(pargs, id, batch.Sealed.Records[i])
		}
		return s.inTx(ctx, func() error {
			if _, err := records.ExecContext(ctx, rargs...); err != nil {
				return err
			}
			_, err := personal.ExecContext(ctx, pargs...)
			return err
		}, nil, nil)
	}
}
