package commitment

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/store"
)

// downLog is an access log that says, before anyone appends, that its
// storage is broken and when to try again, as a *logserver.Log does.
type downLog struct{ memLog }

type storageDown struct{}

func (storageDown) Error() string             { return "log unavailable: storage broken; it recovers by itself" }
func (storageDown) RetryAfter() time.Duration { return 12 * time.Second }

func (l *downLog) Ready() error { return storageDown{} }

// readCounter counts the dataset reads.
type readCounter struct {
	store.Store
	reads atomic.Int64
}

func (s *readCounter) RecordRefs(ctx context.Context, pageSize int, f func([]store.RecordRef) error) (int64, error) {
	s.reads.Add(1)
	return s.Store.RecordRefs(ctx, pageSize, f)
}

// A commitment to a log that says it cannot take one does not read the
// dataset, and the answer on demand asks to come back when the log says.
func TestCommitWaitsForBrokenLog(t *testing.T) {
	s := &readCounter{Store: openStore(t)}
	put(t, s, "ep-1", "b1", "a", "b")
	l := &downLog{}
	c := newCommitter(t, s, l)
	if _, _, err := c.Commit(t.Context()); !errors.Is(err, ErrLog) {
		t.Fatalf("Commit to a broken log: %v, want ErrLog", err)
	}
	req := httptest.NewRequest("POST", "/v1/commitments", nil)
	req.Header.Set("Authorization", "Bearer supervisor")
	rec := httptest.NewRecorder()
	c.Handler(func(*http.Request) bool { return true }).ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "12" {
		t.Errorf("commitment on demand: %d, Retry-After %q; want 503 and the log's 12", rec.Code, rec.Header().Get("Retry-After"))
	}
	if n := s.reads.Load(); n != 0 {
		t.Errorf("the dataset was read %d times for commitments the log could not take, want 0", n)
	}
	if l.calls != 0 {
		t.Errorf("%d appends tried on a log that said it was broken", l.calls)
	}
}
