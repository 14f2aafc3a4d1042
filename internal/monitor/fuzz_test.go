package monitor

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/fault"
)

// FuzzParseAlertQuery: whatever the query string, the parse refuses it or
// gives a query within bounds, which the store answers or refuses as
// invalid, never as failing.
func FuzzParseAlertQuery(f *testing.F) {
	f.Add("rule=burst&after=12&limit=5&severity=warning&platform=https://vendor.example")
	f.Add("limit=1000&after=0")
	f.Add("severity=%00&rule=-")
	s, err := openStore(f.Context(), f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	f.Fuzz(func(t *testing.T, raw string) {
		r := &http.Request{URL: &url.URL{RawQuery: raw}}
		q, err := parseAlertQuery(r)
		if err != nil {
			return
		}
		if q.Limit < 1 || q.Limit > MaxAlerts || q.After < 0 {
			t.Fatalf("%q gave %+v", raw, q)
		}
		if _, err := s.alerts(t.Context(), q); err != nil && fault.Kind(err) != fault.ErrInvalid {
			t.Fatalf("%q: the store failed on %+v: %v", raw, q, err)
		}
	})
}
