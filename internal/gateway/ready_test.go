package gateway

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/store"
)

// brokenLog is an access log whose storage is broken and recovering: it
// says so before anyone appends, with when to try again, as a
// *logserver.Log does.
type brokenLog struct {
	Log
	broken  atomic.Bool
	appends atomic.Int64
}

type storageDown struct{}

func (storageDown) Error() string             { return "log unavailable: storage broken; it recovers by itself" }
func (storageDown) RetryAfter() time.Duration { return 7 * time.Second }

func (l *brokenLog) Ready() error {
	if l.broken.Load() {
		return storageDown{}
	}
	return nil
}

func (l *brokenLog) Append(ctx context.Context, entry []byte) (uint64, error) {
	l.appends.Add(1)
	if l.broken.Load() {
		return 0, storageDown{}
	}
	return l.Log.Append(ctx, entry)
}

// readCounter counts the store's record reads.
type readCounter struct {
	store.Store
	reads atomic.Int64
}

func (s *readCounter) Records(ctx context.Context, q store.RecordQuery) ([]store.StoredRecord, bool, error) {
	s.reads.Add(1)
	return s.Store.Records(ctx, q)
}

// While the access log says it cannot take records, a read is answered
// 503 with the log's Retry-After before the store is read; once the log
// works again, reads are granted.
func TestReadWaitsForBrokenAccessLog(t *testing.T) {
	var blog *brokenLog
	var reads *readCounter
	e := newEnvWith(t, "", func(cfg *Config) {
		blog = &brokenLog{Log: cfg.Log}
		reads = &readCounter{Store: cfg.Store}
		cfg.Log, cfg.Store = blog, reads
	})
	a := hash("a")
	e.ingest("CH", rec(a, 0, "C:/Users/anna/eicar.com"))

	blog.broken.Store(true)
	for range 20 {
		r := e.do("GET", "/v1/records?sha256="+a, "analyst:jdoe", justified)
		if r.status != http.StatusServiceUnavailable || r.hasRcpt {
			t.Fatalf("read while the log is broken: %d %s (receipt %v), want 503 and no receipt", r.status, r.body, r.hasRcpt)
		}
		if got, _ := strconv.Atoi(r.header.Get("Retry-After")); got != 7 {
			t.Fatalf("Retry-After %q, want the log's 7", r.header.Get("Retry-After"))
		}
	}
	if n := reads.reads.Load(); n != 0 {
		t.Errorf("the store was read %d times for accesses that could not be logged, want 0", n)
	}
	if n := blog.appends.Load(); n != 0 {
		t.Errorf("%d appends tried on a log that said it was broken, want 0", n)
	}

	blog.broken.Store(false)
	if r := e.do("GET", "/v1/records?sha256="+a, "analyst:jdoe", justified); r.status != http.StatusOK || !r.hasRcpt || r.answer.Count != 1 {
		t.Fatalf("read once the log works again: %d %s", r.status, r.body)
	}
}
