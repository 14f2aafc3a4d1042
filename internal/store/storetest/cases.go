package storetest

// The suite's cases; Run lists them.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/telemetry"
)

func testIdempotent(t *testing.T, s store.Store) {
	b := Batch("ep-1", "b1", Record(Hash("a"), 0, "EICAR-Test-File"), Record(Hash("a"), time.Minute, "EICAR-Test-File"))
	mustPut(t, s, b, true)
	want := aggregates(t, s, Hash("a"))
	mustPut(t, s, b, false)
	wantCount(t, s, 2)
	checkAggregates(t, "after the retry", aggregates(t, s, Hash("a")), want)

	// A retry is recognised by endpoint and batch id alone.
	retry := Batch("ep-1", "b1", Record(Hash("other"), 0, ""))
	mustPut(t, s, retry, false)
	wantCount(t, s, 2)
	if got := aggregates(t, s, Hash("other")); len(got) != 0 {
		t.Errorf("a retry with other records changed aggregates: %v", got)
	}
}

func testBatchIDPerEndpoint(t *testing.T, s store.Store) {
	mustPut(t, s, Batch("ep-1", "b1", Record(Hash("a"), 0, "")), true)
	mustPut(t, s, Batch("ep-2", "b1", Record(Hash("a"), 0, "")), true)
	wantCount(t, s, 2)
	if got := aggregates(t, s, Hash("a"))[Hash("a")].Prevalence; got != 2 {
		t.Errorf("prevalence = %d, want 2", got)
	}
}

func testConcurrentRetries(t *testing.T, s store.Store) {
	b := Batch("ep-1", "b1", Record(Hash("a"), 0, "X"), Record(Hash("b"), 0, ""))
	var stored atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			ok, err := s.PutBatch(t.Context(), b)
			if err != nil {
				t.Errorf("PutBatch: %v", err)
			}
			if ok {
				stored.Add(1)
			}
		})
	}
	wg.Wait()
	if n := stored.Load(); n != 1 {
		t.Errorf("%d of 8 concurrent PutBatch calls of one batch reported stored, want 1", n)
	}
	wantCount(t, s, 2)
	if got := aggregates(t, s, Hash("a"))[Hash("a")]; got.Prevalence != 1 || got.Detections["X"] != 1 {
		t.Errorf("aggregate = %+v, want prevalence 1 and one X", got)
	}
}

func testCanceledBeforehand(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	b := Batch("ep-1", "b1", Record(Hash("a"), 0, "X"))
	if _, err := s.PutBatch(ctx, b); err == nil {
		t.Fatal("PutBatch with a canceled context succeeded")
	}
	wantNothing(t, s, Hash("a"))
	mustPut(t, s, b, true)
}

// testAtomicAtEveryStep cancels PutBatch at each point where it consults
// its context, in turn, until it succeeds: every failed attempt must leave
// no trace, so that the successful one stores exactly one batch.
func testAtomicAtEveryStep(t *testing.T, s store.Store) {
	var recs []telemetry.Record
	for i := range 300 { // more than one chunk of a multi-row statement
		recs = append(recs, Record(Hash(fmt.Sprint(i%150)), time.Duration(i)*time.Second, []string{"", "X", "Y"}[i%3]))
	}
	b := Batch("ep-1", "b1", recs...)
	hashes := []string{Hash("0"), Hash("149")}
	attempts := 0
	var lastErr error
	for ; ; attempts++ {
		if attempts > 10000 {
			t.Fatalf("PutBatch still fails after %d attempts: %v", attempts, lastErr)
		}
		stored, err := s.PutBatch(newFaultCtx(t.Context(), attempts), b)
		if err == nil {
			if !stored {
				t.Fatalf("attempt %d: stored=false for a batch that no attempt stored", attempts)
			}
			break
		}
		lastErr = err
		wantNothing(t, s, hashes...)
	}
	t.Logf("PutBatch failed %d times, then succeeded", attempts)
	wantCount(t, s, 300)
	mustPut(t, s, b, false)
	mustPut(t, s, Batch("ep-2", "b1", Record(Hash("0"), 0, "")), true)
	// Hash 0 is in records 0 and 150, with no detection (i%3 == 0), and in
	// ep-2's batch; hash 149 in records 149 and 299, both Y.
	want := map[string]store.Aggregate{
		Hash("0"): {SHA256: Hash("0"), Prevalence: 2, FirstSeen: T0, LastSeen: T0.Add(150 * time.Second)},
		Hash("149"): {SHA256: Hash("149"), Prevalence: 1, Detections: map[string]int64{"Y": 2},
			FirstSeen: T0.Add(149 * time.Second), LastSeen: T0.Add(299 * time.Second)},
	}
	checkAggregates(t, "after the failed attempts", aggregates(t, s, hashes...), want)
}

func testEmptyBatch(t *testing.T, s store.Store) {
	mustPut(t, s, Batch("ep-1", "empty"), true)
	mustPut(t, s, Batch("ep-1", "empty"), false)
	wantCount(t, s, 0)
	if changed, _, err := s.ChangedAggregates(t.Context(), 0, 10); err != nil || len(changed) != 0 {
		t.Errorf("ChangedAggregates = %v, %v; want none", changed, err)
	}
}

func testLargeBatch(t *testing.T, s store.Store) {
	var recs []telemetry.Record
	for i := range telemetry.MaxBatchRecords {
		det := ""
		if i%4 == 0 {
			det = "Trojan.Generic"
		}
		recs = append(recs, Record(Hash(fmt.Sprint(i%2500)), time.Duration(i)*time.Millisecond, det))
	}
	mustPut(t, s, Batch("ep-1", "big", recs...), true)
	wantCount(t, s, telemetry.MaxBatchRecords)
	got := aggregates(t, s, Hash("0"), Hash("1"), Hash("2499"))
	want := map[string]store.Aggregate{
		Hash("0"): {SHA256: Hash("0"), Prevalence: 1, Detections: map[string]int64{"Trojan.Generic": 4},
			FirstSeen: T0, LastSeen: T0.Add(7500 * time.Millisecond)},
		Hash("1"): {SHA256: Hash("1"), Prevalence: 1,
			FirstSeen: T0.Add(time.Millisecond), LastSeen: T0.Add(7501 * time.Millisecond)},
		Hash("2499"): {SHA256: Hash("2499"), Prevalence: 1,
			FirstSeen: T0.Add(2499 * time.Millisecond), LastSeen: T0.Add(9999 * time.Millisecond)},
	}
	checkAggregates(t, "Aggregates", got, want)
	changed, _, err := s.ChangedAggregates(t.Context(), 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 2500 {
		t.Errorf("ChangedAggregates returned %d aggregates, want 2500", len(changed))
	}
}

func testPrevalence(t *testing.T, s store.Store) {
	a := Hash("a")
	// Three records of a from ep-1 in two batches, one from ep-2: two
	// endpoints, so prevalence 2.
	mustPut(t, s, Batch("ep-1", "b1", Record(a, 0, ""), Record(a, time.Second, "")), true)
	mustPut(t, s, Batch("ep-1", "b2", Record(a, time.Minute, "")), true)
	if got := aggregates(t, s, a)[a].Prevalence; got != 1 {
		t.Errorf("prevalence after one endpoint = %d, want 1", got)
	}
	mustPut(t, s, Batch("ep-2", "b1", Record(a, time.Hour, "")), true)
	if got := aggregates(t, s, a)[a].Prevalence; got != 2 {
		t.Errorf("prevalence after two endpoints = %d, want 2", got)
	}
}

func testDetections(t *testing.T, s store.Store) {
	a, b := Hash("a"), Hash("b")
	mustPut(t, s, Batch("ep-1", "b1",
		Record(a, 0, "EICAR-Test-File"), Record(a, 0, "EICAR-Test-File"), Record(a, 0, "Trojan.X"),
		Record(a, 0, ""), Record(b, 0, "")), true)
	mustPut(t, s, Batch("ep-2", "b1", Record(a, 0, "EICAR-Test-File")), true)
	got := aggregates(t, s, a, b)
	if want := map[string]int64{"EICAR-Test-File": 3, "Trojan.X": 1}; !maps.Equal(got[a].Detections, want) {
		t.Errorf("detections of a = %v, want %v", got[a].Detections, want)
	}
	if len(got[b].Detections) != 0 {
		t.Errorf("detections of b = %v, want none", got[b].Detections)
	}
}

func testFirstLastSeen(t *testing.T, s store.Store) {
	a := Hash("a")
	check := func(first, last time.Duration) {
		t.Helper()
		got := aggregates(t, s, a)[a]
		if !got.FirstSeen.Equal(T0.Add(first)) || !got.LastSeen.Equal(T0.Add(last)) {
			t.Errorf("first, last seen = %v, %v; want %v, %v", got.FirstSeen, got.LastSeen, T0.Add(first), T0.Add(last))
		}
	}
	mustPut(t, s, Batch("ep-1", "b1", Record(a, time.Hour, ""), Record(a, 2*time.Hour, ""), Record(a, 90*time.Minute, "")), true)
	check(time.Hour, 2*time.Hour)
	// Reports arrive out of order: a later batch can hold earlier records.
	mustPut(t, s, Batch("ep-2", "b1", Record(a, 30*time.Minute, "")), true)
	check(30*time.Minute, 2*time.Hour)
	mustPut(t, s, Batch("ep-3", "b1", Record(a, 3*time.Hour+time.Microsecond, "")), true)
	check(30*time.Minute, 3*time.Hour+time.Microsecond)
	mustPut(t, s, Batch("ep-4", "b1", Record(a, 45*time.Minute, "")), true)
	check(30*time.Minute, 3*time.Hour+time.Microsecond)
}

func testUnknown(t *testing.T, s store.Store) {
	mustPut(t, s, Batch("ep-1", "b1", Record(Hash("a"), 0, "")), true)
	for _, hashes := range [][]string{nil, {}, {Hash("nobody")}, {Hash("nobody"), Hash("a"), Hash("a")}} {
		got := aggregates(t, s, hashes...)
		want := 0
		if slices.Contains(hashes, Hash("a")) {
			want = 1
		}
		if len(got) != want {
			t.Errorf("Aggregates(%d hashes) = %v, want %d entries", len(hashes), got, want)
		}
		if g := global(t, s, hashes...); len(g) != want {
			t.Errorf("Global(%d hashes) = %v, want %d entries", len(hashes), g, want)
		}
	}
	if got := aggregates(t, s, Hash("a"), Hash("a"))[Hash("a")]; got.Prevalence != 1 {
		t.Errorf("a hash asked for twice: prevalence = %d, want 1", got.Prevalence)
	}
}

func testChangedPaging(t *testing.T, s store.Store) {
	var hashes []string
	for i := range 10 {
		h := Hash(fmt.Sprint(i))
		hashes = append(hashes, h)
		mustPut(t, s, Batch("ep-1", fmt.Sprint(i), Record(h, time.Duration(i)*time.Second, "X")), true)
	}
	var got []string
	var cursor int64
	for page := 0; ; page++ {
		changed, next := changedPage(t, s, cursor, 3)
		if len(changed) == 0 {
			break
		}
		if len(changed) > 3 {
			t.Fatalf("page of %d aggregates, limit 3", len(changed))
		}
		for _, a := range changed {
			got = append(got, a.SHA256)
			checkAggregates(t, "changed aggregate", map[string]store.Aggregate{a.SHA256: a}, aggregates(t, s, a.SHA256))
		}
		cursor = next
	}
	// Changes that happened between two reads may come in any order.
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(hashes))) {
		t.Errorf("paging with limit 3 returned %d hashes:\n%v\nwant each of the %d written once:\n%v", len(got), got, len(hashes), hashes)
	}

	// A changed aggregate comes again, after the cursor, with its new state.
	mustPut(t, s, Batch("ep-2", "x", Record(hashes[2], time.Hour, "Y")), true)
	changed, next := changedPage(t, s, cursor, 10)
	if len(changed) != 1 || changed[0].SHA256 != hashes[2] {
		t.Fatalf("after updating one aggregate, ChangedAggregates(cursor) = %v, want it alone", changed)
	}
	want := store.Aggregate{SHA256: hashes[2], Prevalence: 2, Detections: map[string]int64{"X": 1, "Y": 1},
		FirstSeen: T0.Add(2 * time.Second), LastSeen: T0.Add(time.Hour)}
	checkAggregates(t, "updated aggregate", map[string]store.Aggregate{hashes[2]: changed[0]}, map[string]store.Aggregate{hashes[2]: want})
	if again, same := changedPage(t, s, next, 10); len(again) != 0 || same != next {
		t.Errorf("ChangedAggregates(%d) = %v, %d; want nothing and the same cursor", next, again, same)
	}

	// From the beginning, each aggregate once, the one updated after the
	// others were read last.
	all, _ := changedPage(t, s, 0, 100)
	var order []string
	for _, a := range all {
		order = append(order, a.SHA256)
	}
	if len(order) != len(hashes) || order[len(order)-1] != hashes[2] ||
		!slices.Equal(slices.Sorted(slices.Values(order)), slices.Sorted(slices.Values(hashes))) {
		t.Errorf("ChangedAggregates(0) = \n%v\nwant each of\n%v\nonce, with %s last", order, hashes, hashes[2])
	}
	if none, c := changedPage(t, s, 0, 0); len(none) != 0 || c != 0 {
		t.Errorf("ChangedAggregates(0, limit 0) = %v, %d; want nothing and cursor 0", none, c)
	}
}

// testChangedFollow follows the changes while many writers write: a
// follower must see every aggregate's final state, which fails if a change
// can become visible after a later change the follower already passed.
func testChangedFollow(t *testing.T, s store.Store) {
	ctx := t.Context()
	const writers, batches, pool = 6, 15, 25
	var hashes []string
	for i := range pool {
		hashes = append(hashes, Hash(fmt.Sprint(i)))
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				var recs []telemetry.Record
				for r := range 7 {
					recs = append(recs, Record(hashes[(w*7+b*3+r*5)%pool], time.Duration(w*1000+b*10+r)*time.Second, "X"))
				}
				if _, err := s.PutBatch(ctx, Batch(fmt.Sprint("ep-", w), fmt.Sprint(b), recs...)); err != nil {
					t.Errorf("PutBatch: %v", err)
					return
				}
			}
		})
	}
	go func() { wg.Wait(); close(done) }()

	seen := make(map[string]store.Aggregate)
	var cursor int64
	follow := func() int {
		changed, next, err := s.ChangedAggregates(ctx, cursor, 4)
		if err != nil {
			t.Fatalf("ChangedAggregates: %v", err)
		}
		if len(changed) > 0 && next <= cursor || len(changed) == 0 && next != cursor {
			t.Fatalf("ChangedAggregates(%d) returned %d aggregates and cursor %d", cursor, len(changed), next)
		}
		for _, a := range changed {
			seen[a.SHA256] = a
		}
		cursor = next
		return len(changed)
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
			follow()
		}
	}
	for follow() > 0 {
	}
	checkAggregates(t, "the follower's view", seen, aggregates(t, s, hashes...))
}

func testPutRemoteReplaces(t *testing.T, s store.Store) {
	a, b := Hash("a"), Hash("b")
	mustPutRemote(t, s, "moscow",
		store.Aggregate{SHA256: a, Prevalence: 5, Detections: map[string]int64{"X": 2}, FirstSeen: T0, LastSeen: T0.Add(time.Hour)},
		store.Aggregate{SHA256: b, Prevalence: 1, FirstSeen: T0, LastSeen: T0})
	mustPutRemote(t, s, "moscow",
		store.Aggregate{SHA256: a, Prevalence: 3, Detections: map[string]int64{"Y": 1}, FirstSeen: T0.Add(time.Minute), LastSeen: T0.Add(2 * time.Hour)})
	want := map[string]store.Aggregate{
		a: {SHA256: a, Prevalence: 3, Detections: map[string]int64{"Y": 1}, FirstSeen: T0.Add(time.Minute), LastSeen: T0.Add(2 * time.Hour)},
		b: {SHA256: b, Prevalence: 1, FirstSeen: T0, LastSeen: T0},
	}
	checkAggregates(t, "Global after a replacing PutRemote", global(t, s, a, b), want)

	// Of two aggregates of one hash in one call, the last counts.
	mustPutRemote(t, s, "moscow",
		store.Aggregate{SHA256: b, Prevalence: 7, FirstSeen: T0, LastSeen: T0},
		store.Aggregate{SHA256: b, Prevalence: 2, FirstSeen: T0, LastSeen: T0})
	if got := global(t, s, b)[b].Prevalence; got != 2 {
		t.Errorf("prevalence after two aggregates of one hash = %d, want 2 (the last)", got)
	}
	if err := s.PutRemote(t.Context(), "moscow", nil, remoteCursor.Add(1)); err != nil {
		t.Errorf("PutRemote of nothing: %v", err)
	}
}

func testGlobal(t *testing.T, s store.Store) {
	a, b, c := Hash("a"), Hash("b"), Hash("c")
	mustPut(t, s, Batch("ep-1", "b1", Record(a, time.Hour, "X"), Record(c, 0, "")), true)
	mustPut(t, s, Batch("ep-2", "b1", Record(a, 2*time.Hour, "")), true)
	mustPutRemote(t, s, "moscow",
		store.Aggregate{SHA256: a, Prevalence: 3, Detections: map[string]int64{"X": 2, "Y": 1}, FirstSeen: T0.Add(30 * time.Minute), LastSeen: T0.Add(90 * time.Minute)},
		store.Aggregate{SHA256: b, Prevalence: 4, Detections: map[string]int64{"Z": 4}, FirstSeen: T0, LastSeen: T0.Add(time.Minute)})
	mustPutRemote(t, s, "singapore",
		store.Aggregate{SHA256: a, Prevalence: 1, Detections: map[string]int64{"Y": 5}, FirstSeen: T0.Add(45 * time.Minute), LastSeen: T0.Add(5 * time.Hour)})
	want := map[string]store.Aggregate{
		a: {SHA256: a, Prevalence: 6, Detections: map[string]int64{"X": 3, "Y": 6}, FirstSeen: T0.Add(30 * time.Minute), LastSeen: T0.Add(5 * time.Hour)},
		b: {SHA256: b, Prevalence: 4, Detections: map[string]int64{"Z": 4}, FirstSeen: T0, LastSeen: T0.Add(time.Minute)},
		c: {SHA256: c, Prevalence: 1, FirstSeen: T0, LastSeen: T0},
	}
	checkAggregates(t, "Global", global(t, s, a, b, c, Hash("nobody")), want)
}

func testRemoteIsNotLocal(t *testing.T, s store.Store) {
	a, b := Hash("a"), Hash("b")
	mustPut(t, s, Batch("ep-1", "b1", Record(a, 0, "X")), true)
	local := aggregates(t, s, a)
	_, cursor := changedPage(t, s, 0, 100)
	mustPutRemote(t, s, "moscow",
		store.Aggregate{SHA256: a, Prevalence: 9, Detections: map[string]int64{"X": 9}, FirstSeen: T0, LastSeen: T0},
		store.Aggregate{SHA256: b, Prevalence: 9, FirstSeen: T0, LastSeen: T0})
	checkAggregates(t, "Aggregates after PutRemote", aggregates(t, s, a, b), local)
	if changed, _ := changedPage(t, s, cursor, 100); len(changed) != 0 {
		t.Errorf("PutRemote showed in ChangedAggregates: %v", changed)
	}
	wantCount(t, s, 1)
}

func testCountRecords(t *testing.T, s store.Store) {
	wantCount(t, s, 0)
	mustPut(t, s, Batch("ep-1", "b1", Record(Hash("a"), 0, ""), Record(Hash("a"), 0, ""), Record(Hash("b"), 0, "")), true)
	wantCount(t, s, 3)
	mustPut(t, s, Batch("ep-2", "b1", Record(Hash("a"), 0, "")), true)
	wantCount(t, s, 4)
}

func testConcurrentPutBatch(t *testing.T, s store.Store) {
	const endpoints, batches, size, pool = 12, 6, 40, 30
	var hashes []string
	for i := range pool {
		hashes = append(hashes, Hash(fmt.Sprint(i)))
	}
	want := make(map[string]store.Aggregate)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for e := range endpoints {
		wg.Go(func() {
			ep := fmt.Sprint("ep-", e)
			sighted := make(map[string]bool)
			for b := range batches {
				var recs []telemetry.Record
				for r := range size {
					h := hashes[(e+b*7+r*11)%pool]
					det := ""
					if r%5 == 0 {
						det = fmt.Sprint("D", e%3)
					}
					recs = append(recs, Record(h, time.Duration(e*10000+b*100+r)*time.Second, det))
				}
				if _, err := s.PutBatch(t.Context(), Batch(ep, fmt.Sprint(b), recs...)); err != nil {
					t.Errorf("PutBatch: %v", err)
					return
				}
				mu.Lock()
				for _, r := range recs {
					a := want[r.SHA256]
					if a.SHA256 == "" {
						a = store.Aggregate{SHA256: r.SHA256, FirstSeen: r.Time, LastSeen: r.Time}
					}
					if !sighted[r.SHA256] {
						sighted[r.SHA256] = true
						a.Prevalence++
					}
					if r.Detection != "" {
						if a.Detections == nil {
							a.Detections = make(map[string]int64)
						}
						a.Detections[r.Detection]++
					}
					if r.Time.Before(a.FirstSeen) {
						a.FirstSeen = r.Time
					}
					if r.Time.After(a.LastSeen) {
						a.LastSeen = r.Time
					}
					want[r.SHA256] = a
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	wantCount(t, s, endpoints*batches*size)
	checkAggregates(t, "after concurrent writers", aggregates(t, s, hashes...), want)
}

func testClosed(t *testing.T, s store.Store) {
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ctx := t.Context()
	calls := map[string]error{}
	_, calls["PutBatch"] = s.PutBatch(ctx, Batch("ep-1", "b1", Record(Hash("a"), 0, "")))
	_, calls["Aggregates"] = s.Aggregates(ctx, []string{Hash("a")})
	_, _, calls["ChangedAggregates"] = s.ChangedAggregates(ctx, 0, 10)
	calls["PutRemote"] = s.PutRemote(ctx, "moscow", []store.Aggregate{{SHA256: Hash("a")}}, 1)
	_, calls["RemoteCursor"] = s.RemoteCursor(ctx, "moscow")
	_, calls["Global"] = s.Global(ctx, []string{Hash("a")})
	_, calls["CountRecords"] = s.CountRecords(ctx)
	_, calls["RecordRefs"] = s.RecordRefs(ctx, 0, func([]store.RecordRef) error { return nil })
	if r, ok := s.(store.Relocator); ok {
		_, calls["Batches"] = r.Batches(ctx, store.BatchQuery{Country: "DE", Limit: 1})
		_, calls["PutBatches"] = r.PutBatches(ctx, []*store.Batch{Batch("ep-1", "b2", Record(Hash("a"), 0, ""))})
		_, calls["DeleteBatches"] = r.DeleteBatches(ctx, []int64{1})
	}
	for name, err := range calls {
		if !errors.Is(err, store.ErrClosed) || fault.Kind(err) != fault.ErrUnavailable {
			t.Errorf("%s on a closed store: %v, want ErrClosed, of kind unavailable", name, err)
		}
	}
}

func testRecordsByHash(t *testing.T, s store.Store) {
	a, b := Hash("a"), Hash("b")
	mustPut(t, s, Batch("ep-1", "b1", Record(a, 0, "X"), Record(b, time.Minute, "")), true)
	mustPut(t, s, Batch("ep-2", "b1", Record(a, time.Hour, "")), true)
	recs := mustRecords(t, s, store.RecordQuery{SHA256: a}, false)
	if len(recs) != 2 {
		t.Fatalf("Records(sha256 a) = %d records, want 2", len(recs))
	}
	if recs[0].ID >= recs[1].ID {
		t.Errorf("records not in id order: %d, %d", recs[0].ID, recs[1].ID)
	}
	for i, ep := range []string{"ep-1", "ep-2"} {
		sr := recs[i]
		want := Record(a, []time.Duration{0, time.Hour}[i], []string{"X", ""}[i])
		if sr.Pseudonym != Pseudonym(ep) || sr.Country != "DE" || sr.BatchID != "b1" || !sr.Received.Equal(T0.Add(24*time.Hour)) {
			t.Errorf("record %d: pseudonym %s country %s batch %s received %v", i, sr.Pseudonym, sr.Country, sr.BatchID, sr.Received)
		}
		r := sr.Record
		if r.SHA256 != a || !r.Time.Equal(want.Time) || r.Kind != want.Kind || r.Size != want.Size || r.Detection != want.Detection ||
			r.Product != want.Product || r.RuleDB != want.RuleDB || r.URL != "" || r.Path != "" {
			t.Errorf("record %d threat half = %+v, want %+v without URL and path", i, r, want)
		}
		p, err := Unseal(sr)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if p.EndpointID != ep || p.URL != want.URL || p.Path != want.Path {
			t.Errorf("record %d personal half = %+v", i, p)
		}
	}
	one := mustRecords(t, s, store.RecordQuery{SHA256: a, Limit: 1}, true)
	if len(one) != 1 || one[0].ID != recs[0].ID {
		t.Errorf("Records(sha256 a, limit 1) = %v, want the first", one)
	}
	if got := mustRecords(t, s, store.RecordQuery{SHA256: Hash("nobody")}, false); len(got) != 0 {
		t.Errorf("Records of an unknown hash = %v", got)
	}
}

func testRecordsByEndpoint(t *testing.T, s store.Store) {
	a, b, c := Hash("a"), Hash("b"), Hash("c")
	mustPut(t, s, Batch("ep-1", "b1", Record(a, 0, ""), Record(b, time.Minute, "")), true)
	mustPut(t, s, Batch("ep-2", "b1", Record(a, time.Hour, "")), true)
	mustPut(t, s, Batch("ep-1", "b2", Record(c, 2*time.Hour, ""), Record(a, 3*time.Hour, "")), true)
	hashes := func(recs []store.StoredRecord) []string {
		var hs []string
		for _, r := range recs {
			hs = append(hs, r.Record.SHA256[:4])
		}
		return hs
	}
	want := func(name string, got []store.StoredRecord, shas ...string) {
		t.Helper()
		var w []string
		for _, h := range shas {
			w = append(w, h[:4])
		}
		if fmt.Sprint(hashes(got)) != fmt.Sprint(w) {
			t.Errorf("%s = %v, want %v", name, hashes(got), w)
		}
	}
	want("Records(ep-1)", mustRecords(t, s, store.RecordQuery{Pseudonym: Pseudonym("ep-1")}, false), a, b, c, a)
	want("Records(ep-1, a)", mustRecords(t, s, store.RecordQuery{Pseudonym: Pseudonym("ep-1"), SHA256: a}, false), a, a)
	want("Records(ep-1, from 1m to 3h)", mustRecords(t, s, store.RecordQuery{Pseudonym: Pseudonym("ep-1"), From: T0.Add(time.Minute), To: T0.Add(3 * time.Hour)}, false), b, c)
	want("Records(a, from 1h)", mustRecords(t, s, store.RecordQuery{SHA256: a, From: T0.Add(time.Hour)}, false), a, a)
	want("Records(ep-1, limit 3)", mustRecords(t, s, store.RecordQuery{Pseudonym: Pseudonym("ep-1"), Limit: 3}, true), a, b, c)
	page := mustRecords(t, s, store.RecordQuery{Pseudonym: Pseudonym("ep-1"), Limit: 2}, true)
	want("Records(ep-1, after the first page)", mustRecords(t, s, store.RecordQuery{Pseudonym: Pseudonym("ep-1"), After: page[1].ID}, false), c, a)
	want("Records(a, after the first)", mustRecords(t, s, store.RecordQuery{SHA256: a, After: page[0].ID}, false), a, a)
	want("Records(ep-3)", mustRecords(t, s, store.RecordQuery{Pseudonym: Pseudonym("ep-3")}, false))

	for _, q := range []store.RecordQuery{
		{},
		{SHA256: a, Limit: -1},
		{SHA256: a, Limit: store.MaxRecords + 1},
		{SHA256: a, From: T0, To: T0},
		{SHA256: a, After: -1},
	} {
		if _, _, err := s.Records(t.Context(), q); fault.Kind(err) != fault.ErrInvalid {
			t.Errorf("Records(%+v) = %v, want an error of kind invalid", q, err)
		}
	}
}

func testDeleteRecords(t *testing.T, s store.Store) {
	a, b := Hash("a"), Hash("b")
	mustPut(t, s, Batch("ep-1", "b1", Record(a, 0, "X"), Record(b, time.Minute, "")), true)
	mustPut(t, s, Batch("ep-2", "b1", Record(a, time.Hour, "")), true)
	before := aggregates(t, s, a, b)
	recs := mustRecords(t, s, store.RecordQuery{Pseudonym: Pseudonym("ep-1")}, false)
	n, err := s.DeleteRecords(t.Context(), []int64{recs[0].ID, recs[1].ID, 1 << 40})
	if err != nil || n != 2 {
		t.Fatalf("DeleteRecords = %d, %v; want 2", n, err)
	}
	if got := mustRecords(t, s, store.RecordQuery{Pseudonym: Pseudonym("ep-1")}, false); len(got) != 0 {
		t.Errorf("ep-1's records after deleting them: %v", got)
	}
	if got := mustRecords(t, s, store.RecordQuery{SHA256: a}, false); len(got) != 1 || got[0].Pseudonym != Pseudonym("ep-2") {
		t.Errorf("Records(a) after deleting ep-1's: %v, want ep-2's only", got)
	}
	wantCount(t, s, 1)
	checkAggregates(t, "Aggregates after deleting records", aggregates(t, s, a, b), before)
	if n, err := s.DeleteRecords(t.Context(), []int64{recs[0].ID}); err != nil || n != 0 {
		t.Errorf("deleting again = %d, %v; want 0", n, err)
	}
}

func testRefusesPersonalInClear(t *testing.T, s store.Store) {
	a := Hash("a")
	bad := []*store.Batch{}
	clearURL := Batch("ep-1", "b1", Record(a, 0, ""))
	clearURL.Records[0].URL = "https://example.com/"
	bad = append(bad, clearURL)
	noSealed := Batch("ep-1", "b2", Record(a, 0, ""))
	noSealed.Sealed.Records = noSealed.Sealed.Records[:0]
	bad = append(bad, noSealed)
	noKey := Batch("ep-1", "b3", Record(a, 0, ""))
	noKey.Sealed.WrappedKey = nil
	bad = append(bad, noKey)
	for i, b := range bad {
		if stored, err := s.PutBatch(t.Context(), b); fault.Kind(err) != fault.ErrInvalid || stored {
			t.Errorf("bad batch %d: stored = %v, err = %v; want an error of kind invalid", i, stored, err)
		}
	}
	wantCount(t, s, 0)
}

func mustRecords(t *testing.T, s store.Store, q store.RecordQuery, wantMore bool) []store.StoredRecord {
	t.Helper()
	recs, more, err := s.Records(t.Context(), q)
	if err != nil {
		t.Fatalf("Records(%+v): %v", q, err)
	}
	if more != wantMore {
		t.Errorf("Records(%+v): more = %v, want %v", q, more, wantMore)
	}
	return recs
}
