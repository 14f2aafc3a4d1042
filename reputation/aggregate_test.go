package reputation

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestMerge(t *testing.T) {
	t1 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	t2 := t1.Add(time.Hour)
	t3 := t2.Add(time.Hour)
	for _, tc := range []struct {
		name    string
		a, b    Aggregate
		want    Aggregate
		wantNil bool // want.Detections must be nil, not empty
	}{
		{"zero", Aggregate{}, Aggregate{}, Aggregate{}, true},
		{"sums", Aggregate{SHA256: h, Prevalence: 2, Detections: map[string]int64{"A": 1, "B": 2}, FirstSeen: t2, LastSeen: t2},
			Aggregate{SHA256: h, Prevalence: 3, Detections: map[string]int64{"B": 3, "C": 4}, FirstSeen: t1, LastSeen: t3},
			Aggregate{SHA256: h, Prevalence: 5, Detections: map[string]int64{"A": 1, "B": 5, "C": 4}, FirstSeen: t1, LastSeen: t3}, false},
		{"zero times ignored", Aggregate{SHA256: h, Prevalence: 1, FirstSeen: t2},
			Aggregate{Prevalence: 1, LastSeen: t1},
			Aggregate{SHA256: h, Prevalence: 2, FirstSeen: t2, LastSeen: t1}, true},
		{"hash from b", Aggregate{}, Aggregate{SHA256: h}, Aggregate{SHA256: h}, true},
		{"saturates", Aggregate{Prevalence: math.MaxInt64 - 1, Detections: map[string]int64{"A": math.MaxInt64}},
			Aggregate{Prevalence: 2, Detections: map[string]int64{"A": 1}},
			Aggregate{Prevalence: math.MaxInt64, Detections: map[string]int64{"A": math.MaxInt64}}, false},
		{"negatives count as zero", Aggregate{Prevalence: -5, Detections: map[string]int64{"A": -1}},
			Aggregate{Prevalence: 2, Detections: map[string]int64{"A": 1}},
			Aggregate{Prevalence: 2, Detections: map[string]int64{"A": 1}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Merge(tc.a, tc.b)
			if !equal(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if tc.wantNil && got.Detections != nil {
				t.Errorf("Detections = %#v, want nil", got.Detections)
			}
		})
	}
}

func TestMergeDoesNotAlias(t *testing.T) {
	a := Aggregate{Detections: map[string]int64{"A": 1}}
	b := Aggregate{Detections: map[string]int64{"A": 2}}
	m := Merge(a, b)
	m.Detections["A"] = 100
	if a.Detections["A"] != 1 || b.Detections["A"] != 2 {
		t.Errorf("Merge's result shares a map with its arguments: %v %v", a.Detections, b.Detections)
	}
}

// TestMergeProperties checks on random aggregates that Merge is
// commutative and associative, and that the zero Aggregate is its identity.
func TestMergeProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		a, b, c := randomAggregate(rng), randomAggregate(rng), randomAggregate(rng)
		if ab, ba := Merge(a, b), Merge(b, a); !equal(ab, ba) {
			t.Fatalf("not commutative:\na   %+v\nb   %+v\nab  %+v\nba  %+v", a, b, ab, ba)
		}
		if l, r := Merge(Merge(a, b), c), Merge(a, Merge(b, c)); !equal(l, r) {
			t.Fatalf("not associative:\na %+v\nb %+v\nc %+v\n(ab)c %+v\na(bc) %+v", a, b, c, l, r)
		}
		zero := Aggregate{}
		if got := Merge(a, zero); !equal(got, a) {
			t.Fatalf("Merge(a, zero) = %+v, want a = %+v", got, a)
		}
		if got := Merge(zero, a); !equal(got, a) {
			t.Fatalf("Merge(zero, a) = %+v, want a = %+v", got, a)
		}
	}
}

// randomAggregate returns an aggregate of h with small counts, or, now and
// then, counts near the saturation point, zero times, times in other
// zones, and equal instants.
func randomAggregate(rng *rand.Rand) Aggregate {
	count := func() int64 {
		if rng.IntN(10) == 0 {
			return math.MaxInt64 - rng.Int64N(3)
		}
		return rng.Int64N(5)
	}
	when := func() time.Time {
		if rng.IntN(4) == 0 {
			return time.Time{}
		}
		t := now.Add(time.Duration(rng.IntN(4)) * time.Hour)
		if rng.IntN(2) == 0 {
			t = t.In(time.FixedZone("", 3600*rng.IntN(5)))
		}
		return t
	}
	agg := Aggregate{SHA256: h, Prevalence: count(), FirstSeen: when(), LastSeen: when()}
	if n := rng.IntN(4); n > 0 {
		agg.Detections = map[string]int64{}
		for range n {
			agg.Detections[string(rune('A'+rng.IntN(4)))] = count()
		}
	}
	return agg
}

// equal reports whether a and b hold the same values: times are compared
// as instants, and a nil Detections equals an empty one.
func equal(a, b Aggregate) bool {
	if a.SHA256 != b.SHA256 || a.Prevalence != b.Prevalence ||
		!a.FirstSeen.Equal(b.FirstSeen) || !a.LastSeen.Equal(b.LastSeen) ||
		len(a.Detections) != len(b.Detections) {
		return false
	}
	for name, n := range a.Detections {
		if m, ok := b.Detections[name]; !ok || m != n {
			return false
		}
	}
	return true
}
