package store

import (
	"strings"
	"testing"
)

// TestCheckRemoteBounds: a peer region's counts are taken only within
// 0..MaxRemoteCount (they were taken as they came).
func TestCheckRemoteBounds(t *testing.T) {
	ok := Aggregate{SHA256: "aa", Prevalence: 3, Detections: map[string]int64{"X": 1}}
	for _, tc := range []struct {
		name string
		agg  Aggregate
		want string
	}{
		{"ok", ok, ""},
		{"at the bound", Aggregate{SHA256: "aa", Prevalence: MaxRemoteCount}, ""},
		{"negative prevalence", Aggregate{SHA256: "aa", Prevalence: -1}, "prevalence -1"},
		{"huge prevalence", Aggregate{SHA256: "aa", Prevalence: MaxRemoteCount + 1}, "outside"},
		{"negative detection", Aggregate{SHA256: "aa", Detections: map[string]int64{"X": -5}}, `"X" counted -5`},
		{"huge detection", Aggregate{SHA256: "aa", Detections: map[string]int64{"X": 1 << 62}}, "outside"},
		{"no hash", Aggregate{Prevalence: 1}, "no sha256"},
	} {
		err := CheckRemote("zurich", []Aggregate{ok, tc.agg})
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
