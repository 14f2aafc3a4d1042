package reputation

import (
	"math"
	"time"
)

// Aggregate is what is known of one file hash, with no personal data: the
// non-personal summary regions exchange. It mirrors the store's aggregate.
type Aggregate struct {
	// SHA256 is the file's SHA-256 in 64 lowercase hex digits.
	SHA256 string
	// Prevalence is the number of distinct endpoints that reported the
	// hash.
	Prevalence int64
	// Detections counts detection reports per detection name.
	Detections map[string]int64
	// FirstSeen and LastSeen are the earliest and latest report times;
	// zero when unknown.
	FirstSeen time.Time
	LastSeen  time.Time
}

// Merge returns the aggregate of a hash from the aggregates a and b of
// disjoint sets of endpoints (two regions, say): prevalences and detection
// counts add up, first seen is the earlier and last seen the later of the
// times that are not zero. The hash is a's, or b's if a's is empty; merging
// aggregates of different hashes is a programming error.
//
// Merge is commutative and associative, and the zero Aggregate is its
// identity, so regions' aggregates can be merged in any order. Counts
// saturate at math.MaxInt64 instead of wrapping, and negative counts, which
// no region sends, count as zero. The result shares no map with a or b; its
// Detections is nil when neither has any.
func Merge(a, b Aggregate) Aggregate {
	out := Aggregate{
		SHA256:     a.SHA256,
		Prevalence: add(a.Prevalence, b.Prevalence),
		FirstSeen:  earlier(a.FirstSeen, b.FirstSeen),
		LastSeen:   later(a.LastSeen, b.LastSeen),
	}
	if out.SHA256 == "" {
		out.SHA256 = b.SHA256
	}
	if len(a.Detections)+len(b.Detections) > 0 {
		out.Detections = make(map[string]int64, max(len(a.Detections), len(b.Detections)))
		for name, n := range a.Detections {
			out.Detections[name] = add(out.Detections[name], n)
		}
		for name, n := range b.Detections {
			out.Detections[name] = add(out.Detections[name], n)
		}
	}
	return out
}

// add returns x+y with negative terms taken as zero, saturating at
// math.MaxInt64.
func add(x, y int64) int64 {
	x, y = max(x, 0), max(y, 0)
	if x > math.MaxInt64-y {
		return math.MaxInt64
	}
	return x + y
}

func earlier(x, y time.Time) time.Time {
	if x.IsZero() || !y.IsZero() && y.Before(x) {
		return y
	}
	return x
}

func later(x, y time.Time) time.Time {
	if x.IsZero() || !y.IsZero() && y.After(x) {
		return y
	}
	return x
}

// reports returns the number of detection reports in agg.
func (agg *Aggregate) reports() int64 {
	var n int64
	for _, c := range agg.Detections {
		n = add(n, c)
	}
	return n
}
