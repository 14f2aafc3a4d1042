package monitor

import (
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/access"
)

// TestLedger: a commitment may count fewer records than the one before it
// by the deletes logged between them, and no more; datasets and regions
// are apart; the ledger survives being saved and loaded.
func TestLedger(t *testing.T) {
	commit := func(region string, count int64) []byte {
		b, err := (&access.Commitment{Time: t0, Region: region, Dataset: "telemetry", Count: count, Through: count + 100,
			Root: "sha256:" + strings.Repeat("0", 64)}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	del := func(n int64, outcome string) []byte {
		r := &access.Record{Time: t0, Region: "zurich", Principal: access.Principal{ID: "operator:o", Role: "operator", Location: "CH"},
			Action: "delete", Resource: access.Resource{Dataset: "telemetry", Query: "sha256=ab", Count: n, Digest: access.Digest(nil)},
			Justification: access.Justification{Code: "CUSTOMER_INITIATED_SUPPORT", Detail: "case 1"}, Subjects: []string{}, Request: "r", Outcome: "granted"}
		if outcome == "denied" {
			r.Action, r.Outcome, r.Reason, r.Resource.Count = "denied", "denied", "role", 0
		}
		b, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	l := ledger{}
	idx := uint64(0)
	note := func(log string, entry []byte) string {
		idx++
		pe, err := parseEntry(log, entry, nil)
		if err != nil {
			t.Fatal(err)
		}
		return l.note("https://v.example", log, idx, pe)
	}
	steps := []struct {
		log    string
		entry  []byte
		shrank bool
	}{
		{"access-zurich", commit("zurich", 10), false},
		{"access-zurich", del(3, "granted"), false},
		{"access-zurich", commit("zurich", 7), false},  // the deletes explain it
		{"access-zurich", commit("zurich", 12), false}, // ingest added
		{"access-moscow", commit("moscow", 1), false},  // another region
		{"access-zurich", del(5, "denied"), false},
		{"access-zurich", commit("zurich", 11), true}, // a denied delete deletes nothing
		{"access-zurich", del(2, "granted"), false},
		{"access-zurich", del(2, "granted"), false},
	}
	for i, s := range steps {
		if got := note(s.log, s.entry); (got != "") != s.shrank {
			t.Fatalf("step %d: %q, want shrank %v", i+1, got, s.shrank)
		}
	}
	saved, err := l.save()
	if err != nil {
		t.Fatal(err)
	}
	if l, err = loadLedger(saved); err != nil {
		t.Fatal(err)
	}
	if got := note("access-zurich", commit("zurich", 7)); got != "" {
		t.Errorf("after a reload, four logged deletes explain 11 to 7: %q", got)
	}
	if got := note("access-zurich", commit("zurich", 6)); !strings.Contains(got, "1 records vanished") {
		t.Errorf("7 to 6 with nothing deleted: %q", got)
	}
	if _, err := loadLedger([]byte("[")); err == nil {
		t.Error("a garbled ledger loaded")
	}
}
