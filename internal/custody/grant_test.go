package custody

import (
	"os"
	"strings"
	"testing"
)

// TestGrantEntriesReleaseNothing: the grant and revocation entries that
// the platform appends to access logs are not access records. Custody
// unwraps nothing for them, and a count at one is a problem.
func TestGrantEntriesReleaseNothing(t *testing.T) {
	b, err := os.ReadFile("../../access/testdata/grants.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if a, err := parseAccess([]byte(g)); err == nil && a.allows(&UnwrapRequest{Region: a.region}, nil) == nil {
			t.Errorf("custody reads the grant entry %s as an access that releases keys", g)
		}
		r, err := Reconcile(map[string]map[uint64]int64{"zurich": {7: 1}}, func(string, uint64) ([]byte, error) { return []byte(g), nil })
		if err != nil || len(r.Problems) != 1 || !strings.Contains(r.Problems[0], "not an access record") {
			t.Errorf("a count at the grant entry %s: %+v, %v; want one problem", g, r, err)
		}
	}
}
