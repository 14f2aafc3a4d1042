package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/internal/store/storetest"
)

// beginBatch starts a transaction that inserts a batch and one record of
// it as PutBatch does, and leaves it open: a PutBatch under way, whose pk
// is taken but whose records are not yet visible.
func beginBatch(t *testing.T, s *Store, batchID string) (pgx.Tx, int64) {
	t.Helper()
	ctx := t.Context()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(context.Background()) })
	var pk int64
	if err := tx.QueryRow(ctx, `INSERT INTO batches (pseudonym, batch_id, country, received, count, wrapped_key)
		VALUES ('p', $1, 'DE', now(), 1, '\x00') RETURNING pk`, batchID).Scan(&pk); err != nil {
		t.Fatal(err)
	}
	id := pk << recordIDBits
	if _, err := tx.Exec(ctx, `INSERT INTO records (id, batch_pk, time, kind, sha256, size, detection, product, ruledb)
		VALUES ($1, $2, $3, 'file', $4, 1, '', 'p', 1)`, id, pk, storetest.T0, storetest.Hash(batchID)); err != nil {
		t.Fatal(err)
	}
	return tx, id
}

// TestRecordRefsWaitsForBatchesUnderWay checks the bound of RecordRefs
// against the case that concurrent ingest makes likely but not certain: a
// batch that took its pk first and commits last. RecordRefs must not
// return a bound beyond a record that is still to appear.
func TestRecordRefsWaitsForBatchesUnderWay(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	slow, slowID := beginBatch(t, s, "slow")
	if _, err := s.PutBatch(ctx, storetest.Batch("ep-1", "fast", storetest.Record(storetest.Hash("fast"), 0, ""))); err != nil {
		t.Fatal(err)
	}

	type result struct {
		refs    []store.RecordRef
		through int64
		err     error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		r.through, r.err = s.RecordRefs(ctx, 0, func(page []store.RecordRef) error {
			r.refs = append(r.refs, page...)
			return nil
		})
		done <- r
	}()
	// The slow batch commits while RecordRefs waits for it, or before it
	// started; either way the refs must account for it.
	time.Sleep(200 * time.Millisecond)
	if err := slow.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	held := false
	for _, ref := range r.refs {
		held = held || ref.ID == slowID
	}
	if slowID <= r.through && !held {
		t.Fatalf("RecordRefs returned bound %d and %d refs without record %d, which committed after: it appeared below the bound", r.through, len(r.refs), slowID)
	}
	if len(r.refs) != 2 {
		t.Errorf("RecordRefs = %d refs, want both batches' records", len(r.refs))
	}
}

// TestRecordRefsFailsWhenBatchesHang checks that RecordRefs gives up, with
// an error, rather than wait for, and hold up ingest behind, a batch whose
// transaction does not end.
func TestRecordRefsFailsWhenBatchesHang(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	hung, _ := beginBatch(t, s, "hung")
	_, err := s.RecordRefs(ctx, 0, func([]store.RecordRef) error { return nil })
	if err == nil {
		t.Fatal("RecordRefs succeeded while a batch transaction hung")
	}
	t.Logf("RecordRefs: %v", err)
	if errors.Is(err, store.ErrClosed) {
		t.Errorf("RecordRefs error = %v, want the lock timeout", err)
	}
	hung.Rollback(ctx)
	if _, err := s.RecordRefs(ctx, 0, func([]store.RecordRef) error { return nil }); err != nil {
		t.Errorf("RecordRefs once the batch ended: %v", err)
	}
}
