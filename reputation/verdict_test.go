package reputation

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

const h = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func TestEICAR(t *testing.T) {
	sum := sha256.Sum256([]byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`))
	if got := hex.EncodeToString(sum[:]); got != EICAR {
		t.Errorf("SHA-256 of the EICAR file is %s, EICAR is %s", got, EICAR)
	}
}

func TestDecide(t *testing.T) {
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	const day = 24 * time.Hour
	for _, tc := range []struct {
		name   string
		agg    Aggregate
		known  bool
		want   Verdict
		reason string
	}{
		// Rule 1: never seen.
		{"not known", Aggregate{SHA256: h}, false, Unknown, "never reported in any region"},
		{"not known, aggregate ignored", Aggregate{SHA256: h, Prevalence: 50, Detections: map[string]int64{"X": 9}}, false, Unknown, "never reported in any region"},
		{"known but empty", Aggregate{SHA256: h, FirstSeen: ago(day)}, true, Unknown, "never reported in any region"},
		{"EICAR not known", Aggregate{SHA256: EICAR}, false, Unknown, "never reported in any region"},

		// Rule 2: EICAR.
		{"EICAR reported once without detection", Aggregate{SHA256: EICAR, Prevalence: 1, FirstSeen: ago(time.Hour), LastSeen: ago(time.Hour)}, true, Malicious, "the EICAR anti-malware test file"},
		{"EICAR widely seen", Aggregate{SHA256: EICAR, Prevalence: 1000, FirstSeen: ago(100 * day), LastSeen: now}, true, Malicious, "the EICAR anti-malware test file"},

		// Rule 3: malicious.
		{"two reports on two endpoints", Aggregate{SHA256: h, Prevalence: 2, Detections: map[string]int64{"Trojan.A": 2}}, true,
			Malicious, "2 detection reports (Trojan.A: 2) among 2 endpoints that reported it"},
		{"two names, popular file", Aggregate{SHA256: h, Prevalence: 5000, Detections: map[string]int64{"B": 1, "A": 1}, FirstSeen: ago(300 * day), LastSeen: now}, true,
			Malicious, "2 detection reports (A: 1, B: 1) among 5000 endpoints that reported it"},
		{"many names", Aggregate{SHA256: h, Prevalence: 9, Detections: map[string]int64{"A": 1, "B": 5, "C": 2, "D": 2, "E": 0}}, true,
			Malicious, "10 detection reports (B: 5, C: 2, D: 2 and 1 more) among 9 endpoints that reported it"},
		{"saturated counts", Aggregate{SHA256: h, Prevalence: math.MaxInt64, Detections: map[string]int64{"A": math.MaxInt64, "B": math.MaxInt64}}, true,
			Malicious, "9223372036854775807 detection reports (A: 9223372036854775807, B: 9223372036854775807) among 9223372036854775807 endpoints that reported it"},

		// Rule 4: other detections.
		{"one report", Aggregate{SHA256: h, Prevalence: 1, Detections: map[string]int64{"EICAR-Test-File": 1}, FirstSeen: ago(time.Minute), LastSeen: ago(time.Minute)}, true,
			Suspicious, "one detection report (EICAR-Test-File: 1), not yet confirmed by another"},
		{"one report, clean otherwise", Aggregate{SHA256: h, Prevalence: 100, Detections: map[string]int64{"A": 1}, FirstSeen: ago(30 * day), LastSeen: now}, true,
			Suspicious, "one detection report (A: 1), not yet confirmed by another"},
		{"two reports on one endpoint", Aggregate{SHA256: h, Prevalence: 1, Detections: map[string]int64{"A": 2}}, true,
			Suspicious, "2 detection reports (A: 2), all possibly from one endpoint"},
		{"negative and zero counts ignored", Aggregate{SHA256: h, Prevalence: 3, Detections: map[string]int64{"A": 1, "B": -5, "C": 0}, FirstSeen: ago(30 * day), LastSeen: now}, true,
			Suspicious, "one detection report (A: 1), not yet confirmed by another"},

		// Rule 5: new and rare.
		{"new, prevalence 1", Aggregate{SHA256: h, Prevalence: 1, FirstSeen: ago(3 * time.Hour), LastSeen: ago(3 * time.Hour)}, true,
			Suspicious, "new and rare: first seen 3 hours ago on 1 endpoint, no detection yet"},
		{"new, prevalence 2", Aggregate{SHA256: h, Prevalence: 2, FirstSeen: ago(NewFor - time.Nanosecond), LastSeen: now}, true,
			Suspicious, "new and rare: first seen 23 hours ago on 2 endpoints, no detection yet"},
		{"new, first seen in the future", Aggregate{SHA256: h, Prevalence: 1, FirstSeen: now.Add(time.Hour), LastSeen: now.Add(time.Hour)}, true,
			Suspicious, "new and rare: first seen 0 minutes ago on 1 endpoint, no detection yet"},
		{"new, prevalence 3", Aggregate{SHA256: h, Prevalence: 3, FirstSeen: ago(time.Minute), LastSeen: now}, true,
			Unknown, "reported by 3 endpoints over 1 minute without a detection; not enough to judge"},
		{"exactly a day old", Aggregate{SHA256: h, Prevalence: 1, FirstSeen: ago(NewFor), LastSeen: ago(NewFor)}, true,
			Unknown, "reported by 1 endpoint over 0 minutes without a detection; not enough to judge"},
		{"no first seen", Aggregate{SHA256: h, Prevalence: 1}, true,
			Unknown, "reported by 1 endpoint without a detection; not enough to judge"},

		// Rule 6: clean.
		{"clean at the thresholds", Aggregate{SHA256: h, Prevalence: CleanMin, FirstSeen: ago(8 * day), LastSeen: ago(day)}, true,
			Clean, "reported by 10 endpoints over 7 days without a detection"},
		{"clean, popular", Aggregate{SHA256: h, Prevalence: 1e6, Detections: map[string]int64{}, FirstSeen: ago(400 * day), LastSeen: now}, true,
			Clean, "reported by 1000000 endpoints over 400 days without a detection"},
		{"prevalence 9", Aggregate{SHA256: h, Prevalence: CleanMin - 1, FirstSeen: ago(30 * day), LastSeen: now}, true,
			Unknown, "reported by 9 endpoints over 30 days without a detection; not enough to judge"},
		{"span a nanosecond short", Aggregate{SHA256: h, Prevalence: 50, FirstSeen: ago(CleanSpan), LastSeen: now.Add(-time.Nanosecond)}, true,
			Unknown, "reported by 50 endpoints over 6 days without a detection; not enough to judge"},
		{"old but not seen since", Aggregate{SHA256: h, Prevalence: 50, FirstSeen: ago(30 * day), LastSeen: ago(30 * day)}, true,
			Unknown, "reported by 50 endpoints over 0 minutes without a detection; not enough to judge"},
		{"no last seen", Aggregate{SHA256: h, Prevalence: 50, FirstSeen: ago(30 * day)}, true,
			Unknown, "reported by 50 endpoints without a detection; not enough to judge"},

		// Rule 7: the rest.
		{"a few endpoints, a few days", Aggregate{SHA256: h, Prevalence: 4, FirstSeen: ago(3 * day), LastSeen: now}, true,
			Unknown, "reported by 4 endpoints over 3 days without a detection; not enough to judge"},
		{"rare but old", Aggregate{SHA256: h, Prevalence: 1, FirstSeen: ago(90 * day), LastSeen: ago(2 * time.Hour)}, true,
			Unknown, "reported by 1 endpoint over 89 days without a detection; not enough to judge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, reason := Decide(tc.agg, tc.known, now)
			if v != tc.want || reason != tc.reason {
				t.Errorf("got  %s, %q\nwant %s, %q", v, reason, tc.want, tc.reason)
			}
		})
	}
}

// TestDecideMonotone checks that more detections never make a verdict
// milder: adding a detection report to any aggregate leads to a verdict at
// least as severe.
func TestDecideMonotone(t *testing.T) {
	severity := map[Verdict]int{Clean: 0, Unknown: 1, Suspicious: 2, Malicious: 3}
	for _, agg := range []Aggregate{
		{SHA256: h, Prevalence: 1, FirstSeen: now.Add(-time.Hour), LastSeen: now},
		{SHA256: h, Prevalence: 2, FirstSeen: now.Add(-time.Hour), LastSeen: now},
		{SHA256: h, Prevalence: 20, FirstSeen: now.Add(-30 * 24 * time.Hour), LastSeen: now},
		{SHA256: h, Prevalence: 5, FirstSeen: now.Add(-3 * 24 * time.Hour), LastSeen: now},
	} {
		prev, _ := Decide(agg, true, now)
		for range 3 {
			agg = Merge(agg, Aggregate{Detections: map[string]int64{"A": 1}})
			v, reason := Decide(agg, true, now)
			if severity[v] < severity[prev] {
				t.Errorf("%+v: %s after %s (%s)", agg, v, prev, reason)
			}
			prev = v
		}
	}
}
