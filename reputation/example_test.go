package reputation_test

import (
	"fmt"
	"time"

	"github.com/vitrine-dev/vitrine/reputation"
)

func ExampleDecide() {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	zurich := reputation.Aggregate{
		SHA256:     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		Prevalence: 1,
		Detections: map[string]int64{"Trojan.Win32.Agent": 1},
		FirstSeen:  now.Add(-time.Hour),
		LastSeen:   now.Add(-time.Hour),
	}
	fmt.Println(reputation.Decide(zurich, true, now))

	moscow := reputation.Aggregate{
		SHA256:     zurich.SHA256,
		Prevalence: 1,
		Detections: map[string]int64{"Trojan.Win32.Agent": 1},
		FirstSeen:  now.Add(-10 * time.Minute),
		LastSeen:   now.Add(-10 * time.Minute),
	}
	fmt.Println(reputation.Decide(reputation.Merge(zurich, moscow), true, now))
	// Output:
	// suspicious one detection report (Trojan.Win32.Agent: 1), not yet confirmed by another
	// malicious 2 detection reports (Trojan.Win32.Agent: 2) among 2 endpoints that reported it
}
