package storetest

// The cases of RecordRefs, on which dataset commitments rest.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/telemetry"
)

// refs reads every ref of s with pages of pageSize (see readRefs).
func refs(t *testing.T, s store.Store, pageSize int) ([]store.RecordRef, int64) {
	t.Helper()
	all, through, err := readRefs(t.Context(), s, pageSize)
	if err != nil {
		t.Fatal(err)
	}
	return all, through
}

// readRefs reads every ref of s with pages of pageSize, checks that the
// pages are full but for the last, that ids are positive and ascend and
// that none is beyond the bound, and returns the refs and the bound.
func readRefs(ctx context.Context, s store.Store, pageSize int) ([]store.RecordRef, int64, error) {
	var all []store.RecordRef
	var sizes []int
	through, err := s.RecordRefs(ctx, pageSize, func(page []store.RecordRef) error {
		sizes = append(sizes, len(page))
		all = append(all, page...)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("RecordRefs(page size %d): %w", pageSize, err)
	}
	if pageSize == 0 {
		pageSize = store.MaxRecords
	}
	for i, n := range sizes {
		if n == 0 || n > pageSize || n < pageSize && i < len(sizes)-1 {
			return nil, 0, fmt.Errorf("RecordRefs(page size %d) handed pages of %v refs: want full pages, then one with the rest", pageSize, sizes)
		}
	}
	for i, r := range all {
		if r.ID <= 0 || i > 0 && r.ID <= all[i-1].ID {
			return nil, 0, fmt.Errorf("RecordRefs: ref %d has id %d after %d; want positive ids in ascending order", i, r.ID, all[max(i-1, 0)].ID)
		}
		if r.ID > through {
			return nil, 0, fmt.Errorf("RecordRefs: ref %d has id %d, beyond the bound %d", i, r.ID, through)
		}
	}
	return all, through, nil
}

// storedRefs returns the refs of the records that Records gives for the
// endpoints, in id order.
func storedRefs(t *testing.T, s store.Store, endpoints ...string) []store.RecordRef {
	t.Helper()
	var out []store.RecordRef
	for _, ep := range endpoints {
		for _, sr := range mustRecords(t, s, store.RecordQuery{Pseudonym: Pseudonym(ep)}, false) {
			out = append(out, store.RecordRef{ID: sr.ID, SHA256: sr.Record.SHA256, Time: sr.Record.Time})
		}
	}
	slices.SortFunc(out, func(a, b store.RecordRef) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func checkRefs(t *testing.T, what string, got, want []store.RecordRef) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d refs, want %d:\ngot  %v\nwant %v", what, len(got), len(want), got, want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.SHA256 != w.SHA256 || !g.Time.Equal(w.Time) || g.Time.Location() != time.UTC {
			t.Errorf("%s: ref %d = {%d %s %v}, want {%d %s %v} in UTC", what, i, g.ID, g.SHA256[:8], g.Time, w.ID, w.SHA256[:8], w.Time)
		}
	}
}

func testRecordRefs(t *testing.T, s store.Store) {
	if got, through := refs(t, s, 0); len(got) != 0 || through < 0 {
		t.Fatalf("RecordRefs of an empty store = %v, bound %d; want none and a bound of at least 0", got, through)
	}
	a, b, c := Hash("a"), Hash("b"), Hash("c")
	mustPut(t, s, Batch("ep-1", "b1", Record(a, 0, "X"), Record(b, time.Minute+time.Microsecond, "")), true)
	mustPut(t, s, Batch("ep-2", "b1", Record(a, time.Hour, "")), true)
	mustPut(t, s, Batch("ep-1", "b2", Record(c, 2*time.Hour, ""), Record(a, -3*time.Hour, "")), true)
	mustPut(t, s, Batch("ep-1", "b2", Record(c, 2*time.Hour, "")), false)
	want := storedRefs(t, s, "ep-1", "ep-2")
	if len(want) != 5 {
		t.Fatalf("Records found %d records, want 5", len(want))
	}
	// Batches stored one after the other get ascending ids, their
	// records in batch order.
	for i, w := range []struct {
		sha string
		at  time.Duration
	}{{a, 0}, {b, time.Minute + time.Microsecond}, {a, time.Hour}, {c, 2 * time.Hour}, {a, -3 * time.Hour}} {
		if want[i].SHA256 != w.sha || !want[i].Time.Equal(T0.Add(w.at)) {
			t.Fatalf("record %d in id order is %s at %v, want %s at %v", i, want[i].SHA256[:8], want[i].Time, w.sha[:8], T0.Add(w.at))
		}
	}
	for _, size := range []int{0, 1, 2, 4, 5, store.MaxRecords} {
		got, through := refs(t, s, size)
		checkRefs(t, fmt.Sprint("RecordRefs(page size ", size, ")"), got, want)
		if through < want[len(want)-1].ID {
			t.Errorf("bound %d is below the last id %d", through, want[len(want)-1].ID)
		}
	}

	for _, size := range []int{-1, store.MaxRecords + 1} {
		if _, err := s.RecordRefs(t.Context(), size, func([]store.RecordRef) error { return nil }); fault.Kind(err) != fault.ErrInvalid {
			t.Errorf("RecordRefs(page size %d) = %v, want an error of kind invalid", size, err)
		}
	}

	// An error from f stops the read and comes back, with no kind added:
	// it is the caller's, not the store failing.
	errStop := errors.New("stop")
	calls := 0
	if _, err := s.RecordRefs(t.Context(), 2, func([]store.RecordRef) error { calls++; return errStop }); !errors.Is(err, errStop) || fault.Kind(err) != nil || calls != 1 {
		t.Errorf("RecordRefs with a failing f = %v (kind %v) after %d calls; want %v, of no kind, after 1", err, fault.Kind(err), calls, errStop)
	}
}

// testRecordRefsPaging reads more refs than fit in a page of MaxRecords:
// two full pages and one more record.
func testRecordRefsPaging(t *testing.T, s store.Store) {
	const n = 2*store.MaxRecords + 1
	hash := func(i int) string { return Hash(fmt.Sprint(i % 97)) } // few hashes, little aggregate work
	for first := 0; first < n; first += telemetry.MaxBatchRecords {
		recs := make([]telemetry.Record, min(telemetry.MaxBatchRecords, n-first))
		for i := range recs {
			recs[i] = Record(hash(first+i), time.Duration(first+i)*time.Millisecond, "")
		}
		mustPut(t, s, Batch("ep-1", fmt.Sprint(first), recs...), true)
	}
	got, _ := refs(t, s, 0)
	if len(got) != n {
		t.Fatalf("RecordRefs = %d refs, want %d", len(got), n)
	}
	for i, r := range got {
		if r.SHA256 != hash(i) || !r.Time.Equal(T0.Add(time.Duration(i)*time.Millisecond)) {
			t.Fatalf("ref %d = %s at %v, want record %d", i, r.SHA256[:8], r.Time, i)
		}
	}
	odd, _ := refs(t, s, 7777)
	checkRefs(t, "RecordRefs(page size 7777)", odd, got)
}

// testRecordRefsAfterDelete checks that deleted records vanish from the
// refs, and that their ids, the largest included, are not given again.
func testRecordRefsAfterDelete(t *testing.T, s store.Store) {
	a, b := Hash("a"), Hash("b")
	mustPut(t, s, Batch("ep-1", "b1", Record(a, 0, ""), Record(b, time.Minute, ""), Record(a, 2*time.Minute, "")), true)
	mustPut(t, s, Batch("ep-2", "b1", Record(b, time.Hour, ""), Record(a, 2*time.Hour, "")), true)
	all, through := refs(t, s, 2)
	if len(all) != 5 {
		t.Fatalf("RecordRefs = %d refs, want 5", len(all))
	}
	// The second record, and the last two: the largest ids.
	gone := []int64{all[1].ID, all[3].ID, all[4].ID}
	if n, err := s.DeleteRecords(t.Context(), gone); err != nil || n != 3 {
		t.Fatalf("DeleteRecords = %d, %v; want 3", n, err)
	}
	left, throughLeft := refs(t, s, 2)
	checkRefs(t, "RecordRefs after deleting three", left, []store.RecordRef{all[0], all[2]})
	if throughLeft < through {
		t.Errorf("bound went back from %d to %d when the newest records were deleted", through, throughLeft)
	}

	// New records get ids beyond every id given before, deleted or not.
	mustPut(t, s, Batch("ep-3", "b1", Record(b, 3*time.Hour, "")), true)
	mustPut(t, s, Batch("ep-3", "b2"), true)
	mustPut(t, s, Batch("ep-3", "b3", Record(a, 4*time.Hour, "")), true)
	after, through2 := refs(t, s, 0)
	if len(after) != 4 {
		t.Fatalf("RecordRefs after storing two more = %d refs, want 4", len(after))
	}
	for _, r := range after[2:] {
		if r.ID <= through || r.ID <= all[4].ID {
			t.Errorf("a record stored after the deletes has id %d; want one beyond the earlier bound %d and the deleted %d", r.ID, through, all[4].ID)
		}
	}
	if through2 < after[3].ID {
		t.Errorf("bound %d is below the last id %d", through2, after[3].ID)
	}
	checkRefs(t, "RecordRefs after storing two more", after, storedRefs(t, s, "ep-1", "ep-2", "ep-3"))

	// Everything deleted: no refs; what comes next still gets new ids.
	ids := make([]int64, len(after))
	for i, r := range after {
		ids[i] = r.ID
	}
	if _, err := s.DeleteRecords(t.Context(), ids); err != nil {
		t.Fatal(err)
	}
	if none, throughNone := refs(t, s, 0); len(none) != 0 || throughNone < through2 {
		t.Errorf("RecordRefs after deleting everything = %v, bound %d; want none and a bound of at least %d", none, throughNone, through2)
	}
	mustPut(t, s, Batch("ep-4", "b1", Record(a, 0, "")), true)
	if last, _ := refs(t, s, 0); len(last) != 1 || last[0].ID <= after[3].ID {
		t.Errorf("RecordRefs after deleting everything and storing one = %v; want one record with an id beyond %d", last, after[3].ID)
	}
}

// testRecordRefsDuringIngest reads the refs again and again while batches
// are stored concurrently. Each read must hold every record whose PutBatch
// returned before it started, and no record may appear with an id at or
// below the bound of an earlier read: that is what lets a later commitment
// be checked against an earlier one.
func testRecordRefsDuringIngest(t *testing.T, s store.Store) {
	ctx := t.Context()
	const writers, batches, size = 8, 100, 3
	var acked atomic.Int64 // records whose PutBatch returned
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				recs := make([]telemetry.Record, size)
				for r := range recs {
					recs[r] = Record(Hash(fmt.Sprint(w, "/", b, "/", r)), time.Duration(w*10000+b*100+r)*time.Second, "")
				}
				if _, err := s.PutBatch(ctx, Batch(fmt.Sprint("ep-", w), fmt.Sprint(b), recs...)); err != nil {
					t.Errorf("PutBatch: %v", err)
					return
				}
				acked.Add(size)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	// check reads the refs once and compares them with the read before.
	var prev []store.RecordRef
	var prevThrough int64
	check := func() error {
		before := acked.Load()
		got, through, err := readRefs(ctx, s, 16)
		if err != nil {
			return err
		}
		if int64(len(got)) < before {
			return fmt.Errorf("RecordRefs holds %d records; %d were stored before it started", len(got), before)
		}
		if through < prevThrough {
			return fmt.Errorf("bound went back from %d to %d", prevThrough, through)
		}
		// Up to the earlier bound, exactly the earlier refs.
		var upTo []store.RecordRef
		for _, r := range got {
			if r.ID <= prevThrough {
				upTo = append(upTo, r)
			}
		}
		if !slices.EqualFunc(upTo, prev, func(a, b store.RecordRef) bool {
			return a.ID == b.ID && a.SHA256 == b.SHA256 && a.Time.Equal(b.Time)
		}) {
			return fmt.Errorf("a read holds %d records up to the bound %d of the read before, which held %d, not the same: records appeared below a bound", len(upTo), prevThrough, len(prev))
		}
		prev, prevThrough = got, through
		return nil
	}
	reads := 0
	for running := true; running; reads++ {
		select {
		case <-done:
			running = false
		default:
		}
		if err := check(); err != nil {
			t.Error(err)
			<-done // the writers use s, which the suite closes when the test ends
			return
		}
	}
	t.Logf("%d reads during ingest", reads)
	if n := len(prev); n != writers*batches*size {
		t.Errorf("after ingest, RecordRefs = %d refs, want %d", n, writers*batches*size)
	}
}

// testRecordRefsAfterDeleteBatches checks the bound when a relocation
// deletes whole batches, the newest among them, rows and all: their
// records vanish from the refs, the bound does not go back, and records
// stored later, by PutBatch or PutBatches, get ids beyond every one given
// before.
func testRecordRefsAfterDeleteBatches(t *testing.T, s store.Store) {
	r := relocator(t, s)
	a, b := Hash("a"), Hash("b")
	mustPut(t, s, Batch("ep-1", "b1", Record(a, 0, ""), Record(b, time.Minute, "")), true)
	mustPut(t, s, Batch("ep-2", "b1", Record(b, time.Hour, "")), true)
	mustPut(t, s, Batch("ep-1", "b2", Record(a, 2*time.Hour, ""), Record(a, 3*time.Hour, "")), true)
	all, through := refs(t, s, 0)
	bs := batches(t, r, store.BatchQuery{Country: "DE", Limit: 10})
	if len(all) != 5 || len(bs) != 3 {
		t.Fatalf("%d refs and %d batches, want 5 and 3", len(all), len(bs))
	}
	if _, err := r.DeleteBatches(t.Context(), []int64{bs[1].PK, bs[2].PK}); err != nil {
		t.Fatal(err)
	}
	left, throughLeft := refs(t, s, 0)
	checkRefs(t, "RecordRefs after deleting the two newest batches", left, all[:2])
	if throughLeft < through {
		t.Errorf("bound went back from %d to %d when the newest batches were deleted", through, throughLeft)
	}
	mustPut(t, s, Batch("ep-3", "b1", Record(b, 4*time.Hour, "")), true)
	if _, err := r.PutBatches(t.Context(), []*store.Batch{Batch("ep-4", "b1", Record(a, 5*time.Hour, ""))}); err != nil {
		t.Fatal(err)
	}
	after, _ := refs(t, s, 0)
	if len(after) != 4 {
		t.Fatalf("RecordRefs after storing two more = %d refs, want 4", len(after))
	}
	for _, ref := range after[2:] {
		if ref.ID <= through {
			t.Errorf("a record stored after the deletion has id %d, not beyond the earlier bound %d: ids given twice", ref.ID, through)
		}
	}
}
