package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/fault"
)

type waitErr struct{ d time.Duration }

func (e waitErr) Error() string             { return "storage recovering" }
func (e waitErr) RetryAfter() time.Duration { return e.d }

// TestFail: each kind of condition gets its status in one place; an
// unexpected error is a 500 whose answer names an incident, never the
// error's text, which goes to the log under that incident.
func TestFail(t *testing.T) {
	logDown := fault.New(fault.ErrUnavailable, "log unavailable")
	for _, tc := range []struct {
		name       string
		err        error
		status     int
		retryAfter string
		says       []string
		never      []string
	}{
		{"unavailable", fmt.Errorf("appending: %w: /var/lib/vitrine/logs/x: no space left", logDown), 503, "1", []string{"nothing was stored"}, []string{"/var/lib"}},
		{"unavailable, with a wait", fmt.Errorf("%w: %w", logDown, waitErr{8 * time.Second}), 503, "8", []string{"nothing was stored"}, []string{"recovering"}},
		{"busy", fault.New(fault.ErrBusy, "log busy"), 503, "1", []string{"nothing was stored"}, nil},
		{"invalid", fmt.Errorf("%w: the sha256 is not 64 hex digits", fault.ErrInvalid), 400, "", []string{"nothing was stored", "64 hex digits"}, nil},
		{"not found", fault.New(fault.ErrNotFound, "no job rel-1"), 404, "", []string{"no job rel-1"}, nil},
		{"conflict", fault.New(fault.ErrConflict, "another relocation is running"), 409, "", []string{"another relocation"}, nil},
		{"forbidden", fault.New(fault.ErrForbidden, "not your region"), 403, "", []string{"not your region"}, nil},
		{"canceled under way", fmt.Errorf("reading records: %w", context.Canceled), 503, "1", []string{"nothing was stored"}, []string{"canceled"}},
		{"unexpected", errors.New("pq: relation \"secret_table\" does not exist"), 500, "", []string{"nothing was stored", "internal error"}, []string{"secret_table"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			rec := httptest.NewRecorder()
			Fail(rec, slog.New(slog.NewTextHandler(&logs, nil)), tc.err, "nothing was stored")
			var ans struct{ Error string }
			if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
				t.Fatal(err, rec.Body.String())
			}
			if rec.Code != tc.status || rec.Header().Get("Retry-After") != tc.retryAfter {
				t.Errorf("%d, Retry-After %q; want %d, %q", rec.Code, rec.Header().Get("Retry-After"), tc.status, tc.retryAfter)
			}
			for _, s := range tc.says {
				if !strings.Contains(ans.Error, s) {
					t.Errorf("the answer %q does not say %q", ans.Error, s)
				}
			}
			for _, s := range tc.never {
				if strings.Contains(ans.Error, s) {
					t.Errorf("the answer %q leaks %q", ans.Error, s)
				}
			}
			if tc.status == 500 {
				id := ans.Error[strings.Index(ans.Error, "internal error ")+len("internal error "):][:12]
				if !strings.Contains(logs.String(), id) || !strings.Contains(logs.String(), "secret_table") {
					t.Errorf("the log does not hold the error under incident %s:\n%s", id, logs.String())
				}
			}
		})
	}
}
