package sqlite

import (
	"math"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/store"
)

// TestPendingStateSaturates: the aggregate a read sees of a pending hash
// is the stored one merged with what is pending, as reputation.Merge
// publishes it: counts saturate at the largest int64 instead of wrapping
// to a negative prevalence.
func TestPendingStateSaturates(t *testing.T) {
	seen := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	d := &delta{sha256: "aa", prevalence: 5, first: seen.UnixMicro(), last: seen.Add(time.Hour).UnixMicro(), detections: map[string]int64{"X": 2},
		base: store.Aggregate{SHA256: "aa", Prevalence: math.MaxInt64 - 1, Detections: map[string]int64{"X": math.MaxInt64}, FirstSeen: seen.Add(-time.Hour), LastSeen: seen}}
	got := d.state()
	if got.Prevalence != math.MaxInt64 || got.Detections["X"] != math.MaxInt64 {
		t.Errorf("prevalence %d, X %d; want both saturated at %d", got.Prevalence, got.Detections["X"], int64(math.MaxInt64))
	}
	if !got.FirstSeen.Equal(seen.Add(-time.Hour)) || !got.LastSeen.Equal(seen.Add(time.Hour)) {
		t.Errorf("seen %v to %v, want the earliest and the latest", got.FirstSeen, got.LastSeen)
	}
	// A hash with nothing stored yet.
	d.base = store.Aggregate{}
	if got := d.state(); got.SHA256 != "aa" || got.Prevalence != 5 || got.Detections["X"] != 2 || !got.FirstSeen.Equal(seen) {
		t.Errorf("no base: %+v", got)
	}
}
