package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/seal"
	"github.com/vitrine-dev/vitrine/internal/store"
)

func relocator(t *testing.T, s store.Store) store.Relocator {
	t.Helper()
	r, ok := s.(store.Relocator)
	if !ok {
		t.Fatalf("%T does not implement store.Relocator", s)
	}
	return r
}

func inCountry(b *store.Batch, country string) *store.Batch {
	b.Country = country
	return b
}

func batches(t *testing.T, r store.Relocator, q store.BatchQuery) []store.StoredBatch {
	t.Helper()
	bs, err := r.Batches(t.Context(), q)
	if err != nil {
		t.Fatalf("Batches(%+v): %v", q, err)
	}
	return bs
}

// testBatches: a country's batches come whole, in PK order, paged, each
// record with its id, threat half and sealed half as Records gives them.
func testBatches(t *testing.T, s store.Store) {
	r := relocator(t, s)
	a, b := Hash("a"), Hash("b")
	mustPut(t, s, Batch("ep-1", "b1", Record(a, 0, "X"), Record(b, time.Minute, "")), true)
	mustPut(t, s, inCountry(Batch("ep-3", "b1", Record(a, time.Hour, "")), "FR"), true)
	mustPut(t, s, Batch("ep-2", "b1", Record(b, 2*time.Hour, "")), true)
	mustPut(t, s, Batch("ep-1", "b2", Record(a, 3*time.Hour, "")), true)

	page := batches(t, r, store.BatchQuery{Country: "DE", Limit: 2})
	rest := batches(t, r, store.BatchQuery{Country: "DE", After: page[len(page)-1].PK, Limit: store.MaxBatches})
	all := append(page, rest...)
	var keys []string
	for _, sb := range all {
		keys = append(keys, sb.Batch.Pseudonym[len(sb.Batch.Pseudonym)-4:]+"/"+sb.Batch.BatchID)
	}
	want := []string{Pseudonym("ep-1"), Pseudonym("ep-2"), Pseudonym("ep-1")}
	if len(page) != 2 || len(all) != 3 || fmt.Sprint(keys) != fmt.Sprintf("[%s/b1 %s/b1 %s/b2]", want[0][len(want[0])-4:], want[1][len(want[1])-4:], want[2][len(want[2])-4:]) {
		t.Fatalf("Batches(DE) in pages = %v", keys)
	}
	for i := 1; i < len(all); i++ {
		if all[i].PK <= all[i-1].PK {
			t.Errorf("batches not in PK order: %d, %d", all[i-1].PK, all[i].PK)
		}
	}
	light := batches(t, r, store.BatchQuery{Country: "DE", Limit: 10, IDsOnly: true})
	for i := range light {
		if light[i].PK != all[i].PK || !slices.Equal(light[i].IDs, all[i].IDs) || light[i].Batch.Pseudonym != all[i].Batch.Pseudonym || len(light[i].Batch.Records) != 0 {
			t.Errorf("IDsOnly batch %d = %+v, want the ids of %+v", i, light[i], all[i])
		}
	}
	if fr := batches(t, r, store.BatchQuery{Country: "FR", Limit: 10}); len(fr) != 1 || fr[0].Batch.Country != "FR" {
		t.Errorf("Batches(FR) = %d batches", len(fr))
	}
	first := all[0]
	orig := Batch("ep-1", "b1", Record(a, 0, "X"), Record(b, time.Minute, ""))
	if !first.Batch.Received.Equal(orig.Received) || len(first.Batch.Records) != 2 || len(first.IDs) != 2 || len(first.Batch.Sealed.Records) != 2 ||
		first.Batch.Sealed.KeyID != seal.KeyID(first.Batch.Sealed.WrappedKey) {
		t.Fatalf("batch = %+v", first)
	}
	recs := mustRecords(t, s, store.RecordQuery{Pseudonym: Pseudonym("ep-1"), Limit: 2}, true)
	for i, sr := range recs {
		if first.IDs[i] != sr.ID || first.Batch.Records[i].SHA256 != sr.Record.SHA256 || !first.Batch.Records[i].Time.Equal(sr.Record.Time) ||
			first.Batch.Records[i].Detection != sr.Record.Detection || string(first.Batch.Sealed.Records[i]) != string(sr.Sealed) {
			t.Errorf("batch record %d = %d %+v, Records gives %d %+v", i, first.IDs[i], first.Batch.Records[i], sr.ID, sr.Record)
		}
	}
	for _, q := range []store.BatchQuery{{Country: "DE"}, {Country: "DE", Limit: store.MaxBatches + 1}, {Country: "de", Limit: 1}, {Country: "DE", After: -1, Limit: 1}} {
		if _, err := r.Batches(t.Context(), q); err == nil {
			t.Errorf("Batches(%+v) succeeded", q)
		}
	}
}

// testPutBatches: batches copied from another store, their key rewrapped
// and their seals bound to the original key id, are stored once, counted
// in the aggregates, and open with the original binding.
func testPutBatches(t *testing.T, s store.Store) {
	r := relocator(t, s)
	a, b := Hash("a"), Hash("b")
	mustPut(t, s, Batch("ep-9", "local", Record(a, 0, "")), true)
	in := []*store.Batch{
		inCountry(Batch("ep-1", "b1", Record(a, 0, "X"), Record(b, time.Minute, "")), "BR"),
		inCountry(Batch("ep-2", "b1", Record(a, time.Hour, "")), "BR"),
	}
	for _, bt := range in {
		// A relocation rewraps the data key; the seals stay bound to the
		// id of the key they were sealed under.
		bt.Sealed.KeyID = seal.KeyID(bt.Sealed.WrappedKey)
		bt.Sealed.WrappedKey = append(bt.Sealed.WrappedKey, []byte("~rewrapped")...)
	}
	res, err := r.PutBatches(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || !res[0].Stored || !res[1].Stored || len(res[0].IDs) != 2 || len(res[1].IDs) != 1 {
		t.Fatalf("PutBatches = %+v", res)
	}
	again, err := r.PutBatches(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	if again[0].Stored || again[1].Stored || !slices.Equal(again[0].IDs, res[0].IDs) || !slices.Equal(again[1].IDs, res[1].IDs) {
		t.Fatalf("PutBatches again = %+v, first %+v", again, res)
	}
	wantCount(t, s, 4)
	if got := aggregates(t, s, a)[a]; got.Prevalence != 3 {
		t.Errorf("prevalence of a = %d, want 3", got.Prevalence)
	}
	for i, bt := range batches(t, r, store.BatchQuery{Country: "BR", Limit: 10}) {
		if bt.PK != res[i].PK || bt.PK != again[i].PK {
			t.Errorf("batch %d has PK %d; PutBatches said %d, then %d", i, bt.PK, res[i].PK, again[i].PK)
		}
		if bt.Batch.Sealed.KeyID != in[i].Sealed.KeyID || string(bt.Batch.Sealed.WrappedKey) != string(in[i].Sealed.WrappedKey) {
			t.Errorf("batch %d bound to %s, wrapped %q", i, bt.Batch.Sealed.KeyID, bt.Batch.Sealed.WrappedKey)
		}
	}
	for _, sr := range mustRecords(t, s, store.RecordQuery{Pseudonym: Pseudonym("ep-1")}, false) {
		if sr.KeyID != in[0].Sealed.KeyID {
			t.Errorf("record %d bound to %q, want %q", sr.ID, sr.KeyID, in[0].Sealed.KeyID)
		}
		if p, err := Unseal(sr); err != nil || p.EndpointID != "ep-1" {
			t.Errorf("record %d does not open after the rewrap: %+v %v", sr.ID, p, err)
		}
	}
	bad := inCountry(Batch("ep-3", "b1", Record(a, 0, "")), "BR")
	bad.Records[0].Path = "C:/clear"
	if _, err := r.PutBatches(t.Context(), []*store.Batch{in[0], bad}); err == nil {
		t.Error("PutBatches took a record with a path in clear")
	}
}

// testDeleteBatches: deleting batches removes them, their records and
// their sealed halves, and nothing else.
func testDeleteBatches(t *testing.T, s store.Store) {
	r := relocator(t, s)
	a := Hash("a")
	mustPut(t, s, Batch("ep-1", "b1", Record(a, 0, "X"), Record(a, time.Minute, "")), true)
	mustPut(t, s, Batch("ep-2", "b1", Record(a, time.Hour, "")), true)
	mustPut(t, s, Batch("ep-1", "b2", Record(a, 2*time.Hour, "")), true)
	all := batches(t, r, store.BatchQuery{Country: "DE", Limit: 10})
	n, err := r.DeleteBatches(t.Context(), []int64{all[0].PK, all[2].PK, 1 << 40})
	if err != nil || n != 3 {
		t.Fatalf("DeleteBatches = %d, %v; want 3 records", n, err)
	}
	left := batches(t, r, store.BatchQuery{Country: "DE", Limit: 10})
	if len(left) != 1 || left[0].PK != all[1].PK {
		t.Fatalf("after DeleteBatches, batches %+v", left)
	}
	wantCount(t, s, 1)
	if recs := mustRecords(t, s, store.RecordQuery{Pseudonym: Pseudonym("ep-1")}, false); len(recs) != 0 {
		t.Errorf("records of deleted batches remain: %v", recs)
	}
	if recs := mustRecords(t, s, store.RecordQuery{SHA256: a}, false); len(recs) != 1 {
		t.Errorf("Records(a) after DeleteBatches = %d records, want 1", len(recs))
	}
	// A deleted batch can be stored again: nothing of it is left.
	mustPut(t, s, Batch("ep-1", "b1", Record(a, 0, "X")), true)
}
