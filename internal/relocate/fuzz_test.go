package relocate

import (
	"strings"
	"testing"
)

// FuzzVerifyQueries: access records with any query text, as a log may hold
// (the logs are outside input to an auditor), never crash Verify, and a
// relocation whose entries were tampered with this way does not verify
// as it did.
func FuzzVerifyQueries(f *testing.F) {
	for _, s := range []string{
		"relocation job=rel-0123456789abcdef country=BR from=moscow to=zurich policy=2 batches=1-2",
		"relocation job=rel-0123456789abcdef batches=9-1", "relocation summary records=x", "relocation ", "relocation =",
		"relocation job=rel-0123456789abcdef country=BR from=moscow to=zurich policy=2 batches=-5--1",
	} {
		f.Add(s, 0)
	}
	f.Fuzz(func(t *testing.T, q string, which int) {
		ev, j := evidence(t)
		recs := ev.Access["moscow"]
		if which < 0 {
			which = -which
		}
		r := recs[which%len(recs)]
		orig := r.Resource.Query
		r.Resource.Query = q
		_ = parseQuery(q)
		a, err := Verify(ev, j.ID)
		if err == nil && q != orig && !strings.Contains(q, "job="+j.ID) {
			// The entry left the relocation: the rest must not verify
			// as complete with the same totals.
			if a.Records == 6 && a.Deleted == 6 && a.DestRecords == 6 {
				t.Fatalf("an entry's query replaced by %q, and the relocation still verifies: %+v", q, a)
			}
		}
	})
}
