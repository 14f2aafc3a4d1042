package platform

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestWhileFresh: a region's process answers ingest and verdicts only
// while the policy and revocations it holds are at most regionStale old.
func TestWhileFresh(t *testing.T) {
	s := &RegionService{}
	h := s.whileFresh(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	for _, tc := range []struct {
		age  time.Duration
		want int
	}{{time.Second, http.StatusTeapot}, {regionStale - time.Second, http.StatusTeapot}, {regionStale + time.Second, http.StatusServiceUnavailable}, {time.Hour, http.StatusServiceUnavailable}} {
		s.refreshed.Store(time.Now().Add(-tc.age).UnixNano())
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/verdicts", nil))
		if rec.Code != tc.want {
			t.Errorf("policy %s old: %d, want %d", tc.age, rec.Code, tc.want)
		}
		if tc.want == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") == "" {
			t.Errorf("policy %s old: 503 without Retry-After", tc.age)
		}
	}
}
