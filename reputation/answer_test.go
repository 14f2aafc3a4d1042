package reputation

import (
	"encoding/json"
	"testing"
	"time"
)

func TestAnswerJSON(t *testing.T) {
	first := time.Date(2026, 11, 22, 11, 0, 0, 0, time.FixedZone("", 3600))
	last := time.Date(2026, 11, 22, 10, 5, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		agg   Aggregate
		known bool
		want  string
	}{
		{"unknown", Aggregate{SHA256: EICAR, Prevalence: 5}, false,
			`{"sha256":"` + EICAR + `","verdict":"unknown","reason":"never reported in any region","prevalence":0}`},
		{"EICAR", Aggregate{SHA256: EICAR, Prevalence: 3, Detections: map[string]int64{"EICAR-Test-File": 3, "zero": 0}, FirstSeen: first, LastSeen: last}, true,
			`{"sha256":"` + EICAR + `","verdict":"malicious","reason":"the EICAR anti-malware test file","prevalence":3,` +
				`"detections":{"EICAR-Test-File":3},"first_seen":"2026-11-22T10:00:00Z","last_seen":"2026-11-22T10:05:00Z"}`},
		{"no times", Aggregate{SHA256: EICAR, Prevalence: 1, Detections: map[string]int64{}}, true,
			`{"sha256":"` + EICAR + `","verdict":"malicious","reason":"the EICAR anti-malware test file","prevalence":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(NewAnswer(tc.agg, tc.known, now))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("got  %s\nwant %s", b, tc.want)
			}
		})
	}
}
