package reputation

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Verdict is what Vitrine tells endpoints about a file hash.
type Verdict string

// Verdicts.
const (
	// Malicious: block the file.
	Malicious Verdict = "malicious"
	// Suspicious: some evidence against the file; handle it with care
	// (sandbox, ask the user, report again).
	Suspicious Verdict = "suspicious"
	// Clean: widely seen over time and never detected.
	Clean Verdict = "clean"
	// Unknown: not enough is known to say.
	Unknown Verdict = "unknown"
)

// The thresholds of the rules in the package documentation.
const (
	// MaliciousReports is the number of detection reports, and
	// MaliciousEndpoints the prevalence, that together make a hash
	// malicious.
	MaliciousReports   = 2
	MaliciousEndpoints = 2
	// NewFor is how long after it is first seen a hash counts as new, and
	// RareMax the largest prevalence at which a new hash is suspicious.
	NewFor  = 24 * time.Hour
	RareMax = 2
	// CleanMin is the smallest prevalence, and CleanSpan the shortest time
	// from first to last seen, at which a hash never detected is clean.
	CleanMin  = 10
	CleanSpan = 7 * 24 * time.Hour
)

// EICAR is the SHA-256 of the 68-byte EICAR anti-malware test file,
// X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*.
const EICAR = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"

// Decide returns the verdict on a hash and the reason for it, a sentence
// fragment for people, following the rules in the package documentation.
// agg is the global view of the hash (the [Merge] of every region's
// aggregate) and known says whether any region has an aggregate of it; now
// is the time the verdict is given. Decide is a pure function.
func Decide(agg Aggregate, known bool, now time.Time) (Verdict, string) {
	prevalence := max(agg.Prevalence, 0)
	reports := agg.reports()
	switch {
	case !known || prevalence == 0 && reports == 0:
		return Unknown, "never reported in any region"
	case agg.SHA256 == EICAR:
		return Malicious, "the EICAR anti-malware test file"
	case reports >= MaliciousReports && prevalence >= MaliciousEndpoints:
		return Malicious, fmt.Sprintf("%s (%s) among %s that reported it",
			count(reports, "detection report"), detections(agg.Detections), count(prevalence, "endpoint"))
	case reports == 1:
		return Suspicious, fmt.Sprintf("one detection report (%s), not yet confirmed by another", detections(agg.Detections))
	case reports > 1:
		return Suspicious, fmt.Sprintf("%s (%s), all possibly from one endpoint",
			count(reports, "detection report"), detections(agg.Detections))
	}
	age := now.Sub(agg.FirstSeen)
	span := agg.LastSeen.Sub(agg.FirstSeen)
	switch {
	case !agg.FirstSeen.IsZero() && age < NewFor && prevalence <= RareMax:
		return Suspicious, fmt.Sprintf("new and rare: first seen %s ago on %s, no detection yet",
			duration(age), count(prevalence, "endpoint"))
	case !agg.FirstSeen.IsZero() && !agg.LastSeen.IsZero() && prevalence >= CleanMin && span >= CleanSpan:
		return Clean, fmt.Sprintf("reported by %s over %s without a detection", count(prevalence, "endpoint"), duration(span))
	case agg.FirstSeen.IsZero() || agg.LastSeen.IsZero():
		return Unknown, fmt.Sprintf("reported by %s without a detection; not enough to judge", count(prevalence, "endpoint"))
	}
	return Unknown, fmt.Sprintf("reported by %s over %s without a detection; not enough to judge",
		count(prevalence, "endpoint"), duration(span))
}

// count returns "1 endpoint", "2 endpoints".
func count(n int64, noun string) string {
	s := strconv.FormatInt(n, 10) + " " + noun
	if n != 1 {
		s += "s"
	}
	return s
}

// detections lists up to three detection names, most reported first, with
// their counts: "Trojan.Win32.Agent: 3, EICAR-Test-File: 1 and 2 more".
func detections(d map[string]int64) string {
	type entry struct {
		name string
		n    int64
	}
	var es []entry
	for name, n := range d {
		if n > 0 {
			es = append(es, entry{name, n})
		}
	}
	slices.SortFunc(es, func(a, b entry) int {
		return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.name, b.name))
	})
	var b strings.Builder
	for i, e := range es {
		if i == 3 {
			fmt.Fprintf(&b, " and %d more", len(es)-3)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %d", e.name, e.n)
	}
	return b.String()
}

// duration returns d in whole minutes, hours or days, as a person would
// say it; a negative d (a clock ahead of the region's) is "0 minutes".
func duration(d time.Duration) string {
	switch {
	case d < time.Hour:
		return count(int64(max(d, 0)/time.Minute), "minute")
	case d < 48*time.Hour:
		return count(int64(d/time.Hour), "hour")
	}
	return count(int64(d/(24*time.Hour)), "day")
}
