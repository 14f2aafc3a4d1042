package custody

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Reconciliation is what Reconcile found.
type Reconciliation struct {
	// Entries is how many access entries custody unwrapped keys for, and
	// Keys how many keys it released for them, in all.
	Entries int
	Keys    int64
	// Problems lists every count the logs do not account for.
	Problems []string
}

// Reconcile checks custody's counts against the access logs: every count
// must be at an index that holds a granted access entry of that region
// whose action releases data keys and which names at least one key. entry
// returns the entry at an index of a region's access log, read from a
// checkpoint that meets the witness policy, or an error (an index beyond
// the log's checkpoint is one).
//
// A count with no such entry means custody released keys that no logged
// access names: the supervisor's alarm. An entry that names keys and has
// no count is not a problem: the access failed before custody was asked,
// or was a delete.
func Reconcile(counts map[string]map[uint64]int64, entry func(region string, index uint64) ([]byte, error)) (*Reconciliation, error) {
	rec := &Reconciliation{}
	for _, region := range slices.Sorted(maps.Keys(counts)) {
		for _, index := range slices.Sorted(maps.Keys(counts[region])) {
			n := counts[region][index]
			rec.Entries++
			rec.Keys += n
			b, err := entry(region, index)
			if err != nil {
				rec.Problems = append(rec.Problems, fmt.Sprintf("%s index %d: %d keys released, but the entry cannot be read: %v", region, index, n, err))
				continue
			}
			a, err := parseAccess(b)
			if err != nil {
				rec.Problems = append(rec.Problems, fmt.Sprintf("%s index %d: %d keys released for an entry that is not an access record: %v", region, index, n, err))
				continue
			}
			switch {
			case a.kind != "access" || a.region != region || a.outcome != "granted" || !actions[a.action]:
				rec.Problems = append(rec.Problems, fmt.Sprintf("%s index %d: %d keys released for a %s %s entry of region %q", region, index, n, a.outcome, a.action, a.region))
			case len(a.keys) == 0:
				rec.Problems = append(rec.Problems, fmt.Sprintf("%s index %d: %d keys released for an entry that names none", region, index, n))
			case n <= 0:
				rec.Problems = append(rec.Problems, fmt.Sprintf("%s index %d: a count of %d", region, index, n))
			case n > int64(len(a.keys)):
				// An access unwraps the keys its entry names, once: more is
				// its proof presented again, keys released that no logged
				// access needed.
				rec.Problems = append(rec.Problems, fmt.Sprintf("%s index %d: %d keys released for an entry that names %d: unwrapped more than once", region, index, n, len(a.keys)))
			}
		}
	}
	return rec, nil
}

// String summarizes r.
func (r *Reconciliation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d access entries, %d data keys released", r.Entries, r.Keys)
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "\n  PROBLEM %s", p)
	}
	return b.String()
}
