package reputation

import "time"

// Answer is the verdict API's answer about one hash, as JSON:
//
//	{"sha256":"275a…","verdict":"malicious","reason":"the EICAR anti-malware test file",
//	 "prevalence":3,"detections":{"EICAR-Test-File":3},
//	 "first_seen":"2026-11-22T10:00:00Z","last_seen":"2026-11-22T10:05:00Z"}
//
// Detections, FirstSeen and LastSeen are left out when there are none.
type Answer struct {
	SHA256     string           `json:"sha256"`
	Verdict    Verdict          `json:"verdict"`
	Reason     string           `json:"reason"`
	Prevalence int64            `json:"prevalence"`
	Detections map[string]int64 `json:"detections,omitempty"`
	FirstSeen  *time.Time       `json:"first_seen,omitempty"`
	LastSeen   *time.Time       `json:"last_seen,omitempty"`
}

// NewAnswer returns the answer about agg.SHA256 given its global aggregate
// (the caller sets SHA256 even when the hash is not known), as [Decide]
// judges it. The answer shares no map with agg; its times are in UTC.
func NewAnswer(agg Aggregate, known bool, now time.Time) Answer {
	v, reason := Decide(agg, known, now)
	a := Answer{SHA256: agg.SHA256, Verdict: v, Reason: reason}
	if !known {
		return a
	}
	a.Prevalence = max(agg.Prevalence, 0)
	for name, n := range agg.Detections {
		if n > 0 {
			if a.Detections == nil {
				a.Detections = make(map[string]int64, len(agg.Detections))
			}
			a.Detections[name] = n
		}
	}
	if !agg.FirstSeen.IsZero() {
		t := agg.FirstSeen.UTC()
		a.FirstSeen = &t
	}
	if !agg.LastSeen.IsZero() {
		t := agg.LastSeen.UTC()
		a.LastSeen = &t
	}
	return a
}
