package platform

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/access"
)

// TestInternalAppend: a region's process appends through the platform what
// the platform's own regions append to their logs. The record of its
// aggregates crossing to a peer region, granted to the peer's processing
// principal, which the registry of principals does not know, is taken, as
// it is from the platform's own regions (it was once refused, and no
// external region's aggregates ever reached a peer); a granted record of
// any other principal the registry does not know is refused, as is a
// "crossing" to a region the policy does not have or from another region.
func TestInternalAppend(t *testing.T) {
	p := start(t, t.TempDir())
	defer stop(t, p)
	record := func(region, id, role, action, dataset string) []byte {
		t.Helper()
		rec := &access.Record{
			Time: time.Now(), Region: region,
			Principal:     access.Principal{ID: id, Role: role, Location: "CH"},
			Action:        action,
			Resource:      access.Resource{Dataset: dataset, Query: "changes=1-2 to=moscow", Count: 2, Digest: access.Digest(nil)},
			Justification: access.Justification{Code: "AUTOMATED_PROCESSING", Detail: "aggregates for the verdicts of region moscow"},
			Subjects:      []string{}, Request: "aggregates-moscow-0-2", Outcome: "granted",
		}
		b, err := rec.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name  string
		entry []byte
		want  int
	}{
		{"crossing to moscow", record("zurich", "processor:region-moscow", "processor", "process", "aggregates"), http.StatusOK},
		{"crossing to a region the policy lacks", record("zurich", "processor:region-atlantis", "processor", "process", "aggregates"), http.StatusForbidden},
		{"crossing of another region", record("moscow", "processor:region-moscow", "processor", "process", "aggregates"), http.StatusForbidden},
		{"processing of another dataset", record("zurich", "processor:region-moscow", "processor", "process", "telemetry"), http.StatusForbidden},
		{"read by an unknown analyst", record("zurich", "analyst:nobody", "analyst", "read", "telemetry"), http.StatusForbidden},
	} {
		code, body := httpDo(t, "POST", p.URL()+internalPrefix+"logs/access-zurich/append", p.regions.peerToken, tc.entry)
		if code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.want)
			continue
		}
		var ans struct{ Index *uint64 }
		if code == http.StatusOK && (json.Unmarshal(body, &ans) != nil || ans.Index == nil) {
			t.Errorf("%s: answer %s, want the entry's index", tc.name, body)
		}
	}
}
