package sqlite

import (
	"testing"

	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/internal/store/storetest"
)

// TestIDsNotReusedWithoutBatchRows checks that record ids are not given
// twice even when the rows of the batches that held the largest ones are
// gone too, as a deletion of whole batches leaves them: the last folded
// record still bounds them.
func TestIDsNotReusedWithoutBatchRows(t *testing.T) {
	s := openTemp(t)
	ctx := t.Context()
	for _, b := range []string{"b1", "b2"} {
		if _, err := s.PutBatch(ctx, storetest.Batch("ep-1", b, storetest.Record(storetest.Hash(b), 0, ""), storetest.Record(storetest.Hash(b), 1, ""))); err != nil {
			t.Fatal(err)
		}
	}
	var ids []int64
	if _, err := s.RecordRefs(ctx, 0, func(page []store.RecordRef) error {
		for _, r := range page {
			ids = append(ids, r.ID)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteRecords(ctx, ids[2:]); err != nil { // folds first
		t.Fatal(err)
	}
	s.lock()
	_, err := s.w.ExecContext(ctx, `DELETE FROM batches WHERE batch_id = 'b2'`)
	s.unlock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutBatch(ctx, storetest.Batch("ep-2", "b1", storetest.Record(storetest.Hash("new"), 0, ""))); err != nil {
		t.Fatal(err)
	}
	var got []store.RecordRef
	if _, err := s.RecordRefs(ctx, 0, func(page []store.RecordRef) error { got = append(got, page...); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[2].ID <= ids[3] {
		t.Errorf("refs %v: want 3, the new record's id beyond the deleted %d", got, ids[3])
	}
}
