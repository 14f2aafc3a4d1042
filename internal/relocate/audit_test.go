package relocate

import (
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/residency"
)

// evidence builds the logs of a relocation of BR from moscow to zurich in
// two chunks, as the relocator writes them.
func evidence(t *testing.T) (*Evidence, *Job) {
	t.Helper()
	p1 := residency.Default()
	p2, err := p1.Move("BR", "zurich")
	if err != nil {
		t.Fatal(err)
	}
	r := &Relocator{cfg: Config{Now: time.Now, Principal: access.Principal{ID: "operator:platform", Role: "operator", Location: "CH"}}}
	j := &Job{ID: "rel-0123456789abcdef", Country: "BR", From: "moscow", To: "zurich", Policy: p2.Version}
	ev := &Evidence{Policies: []*residency.Policy{p1, p2}, Access: map[string][]*access.Record{}}
	batch := func(pk int64, ep string, ids ...int64) store.StoredBatch {
		return store.StoredBatch{PK: pk, IDs: ids, Batch: store.Batch{Pseudonym: "hmac-sha256:" + strings.Repeat(ep, 64), Sealed: store.Sealed{WrappedKey: []byte(ep)}}}
	}
	chunks := [][]store.StoredBatch{
		{batch(1, "a", 10, 11), batch(2, "b", 12)},
		{batch(5, "a", 20, 21, 22)},
	}
	var total int64
	for _, bs := range chunks {
		src := r.entry(j, "moscow", "relocate", chunkRange(bs))
		describe(src, bs, func(i int) []int64 { return bs[i].IDs }, true)
		dst := r.entry(j, "zurich", "relocate", chunkRange(bs)+" source_entry=1")
		describe(dst, bs, func(i int) []int64 { return []int64{bs[i].IDs[0] + 1000} }, false)
		dst.Resource.Count = src.Resource.Count
		del := r.entry(j, "moscow", "delete", chunkRange(bs))
		describe(del, bs, func(i int) []int64 { return bs[i].IDs }, false)
		ev.Access["moscow"] = append(ev.Access["moscow"], src)
		ev.Access["zurich"] = append(ev.Access["zurich"], dst)
		ev.Access["moscow"] = append(ev.Access["moscow"], del)
		total += src.Resource.Count
	}
	for _, region := range []string{"moscow", "zurich"} {
		ev.Access[region] = append(ev.Access[region], r.entry(j, region, "relocate", "summary records=6 batches=3 digest=sha256:x deleted=6"))
	}
	if total != 6 {
		t.Fatalf("built %d records", total)
	}
	return ev, j
}

func TestVerify(t *testing.T) {
	ev, j := evidence(t)
	a, err := Verify(ev, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if a.Records != 6 || a.DestRecords != 6 || a.Deleted != 6 || a.Chunks != 2 || !a.Complete || a.Country != "BR" || a.Policy != 2 {
		t.Errorf("audit = %+v", a)
	}
	// A chunk repeated after a crash counts once.
	ev.Access["moscow"] = append([]*access.Record{ev.Access["moscow"][0]}, ev.Access["moscow"]...)
	if a, err := Verify(ev, j.ID); err != nil || a.Records != 6 {
		t.Errorf("with a repeated chunk: %+v, %v", a, err)
	}
	if _, err := Verify(ev, "rel-ffffffffffffffff"); err == nil {
		t.Error("an unknown job verifies")
	}
}

func TestVerifyFinds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(ev *Evidence)
		says   string
	}{
		{"no delete", func(ev *Evidence) { ev.Access["moscow"] = removeAction(ev.Access["moscow"], "delete", 1) }, "never deleted"},
		{"other records deleted", func(ev *Evidence) { deleteOf(ev, 0).Resource.Digest = access.Digest([]int64{99}) }, "deleted 3 records"},
		{"records lost on the way", func(ev *Evidence) { ev.Access["zurich"][0].Resource.Count-- }, "received"},
		{"never received", func(ev *Evidence) { ev.Access["zurich"] = ev.Access["zurich"][1:] }, "never received"},
		{"no policy", func(ev *Evidence) { ev.Policies = ev.Policies[:1] }, "no version 2"},
		{"wrong policy", func(ev *Evidence) {
			p, _ := residency.Default().Move("AR", "zurich")
			ev.Policies[1] = p
		}, "serves BR from moscow"},
		{"no summary", func(ev *Evidence) { ev.Access["zurich"] = ev.Access["zurich"][:2] }, "not complete"},
		{"no keys", func(ev *Evidence) { ev.Access["moscow"][0].Keys = nil }, "names no data keys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, j := evidence(t)
			tc.change(ev)
			if _, err := Verify(ev, j.ID); err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("Verify = %v, want an error saying %q", err, tc.says)
			}
		})
	}
}

func deleteOf(ev *Evidence, n int) *access.Record {
	for _, r := range ev.Access["moscow"] {
		if r.Action == "delete" {
			if n == 0 {
				return r
			}
			n--
		}
	}
	return nil
}

func removeAction(recs []*access.Record, action string, n int) []*access.Record {
	var out []*access.Record
	for _, r := range recs {
		if r.Action == action {
			if n == 0 {
				n--
				continue
			}
			n--
		}
		out = append(out, r)
	}
	return out
}
