package custody

import (
	"errors"
	"strings"
	"testing"
)

func TestReconcile(t *testing.T) {
	wrapped := [][]byte{[]byte("wrapped key 1"), []byte("wrapped key 2")}
	log := map[string]map[uint64][]byte{
		"zurich": {
			0: record("zurich", "read", "granted", wrapped),
			1: record("zurich", "denied", "denied", nil),
			2: []byte(`{"v":1,"kind":"commitment"}`),
			3: record("moscow", "read", "granted", wrapped),
			// A summary of denied attempts names no keys, whatever its
			// counts hold.
			4: []byte(`{"v":1,"kind":"denied-summary","time":"2026-11-22T10:00:10.000Z","region":"zurich","from":"2026-11-22T10:00:00.123Z","to":"2026-11-22T10:00:09.877Z","counts":[{"action":"read","reason":"no credential","network":"203.0.113.0/24","count":9431}]}`),
		},
	}
	entry := func(region string, index uint64) ([]byte, error) {
		b, ok := log[region][index]
		if !ok {
			return nil, errors.New("beyond the checkpoint")
		}
		return b, nil
	}
	r, err := Reconcile(map[string]map[uint64]int64{"zurich": {0: 2}}, entry)
	if err != nil || len(r.Problems) != 0 || r.Entries != 1 || r.Keys != 2 {
		t.Fatalf("counts the log accounts for: %+v, %v", r, err)
	}
	// The entry's keys released twice: its proof presented again.
	r, err = Reconcile(map[string]map[uint64]int64{"zurich": {0: 4}}, entry)
	if err != nil || len(r.Problems) != 1 || !strings.Contains(r.Problems[0], "4 keys released for an entry that names 2: unwrapped more than once") {
		t.Errorf("an entry unwrapped twice: %+v, %v", r, err)
	}
	for _, tc := range []struct {
		index uint64
		says  string
	}{{1, "denied"}, {2, "not an access record"}, {3, `region "moscow"`}, {4, "not an access record"}, {9, "cannot be read"}} {
		r, err := Reconcile(map[string]map[uint64]int64{"zurich": {0: 2, tc.index: 1}}, entry)
		if err != nil || len(r.Problems) != 1 || !strings.Contains(r.Problems[0], tc.says) {
			t.Errorf("a count at index %d: %+v, %v; want one problem saying %q", tc.index, r, err, tc.says)
		}
	}
}
