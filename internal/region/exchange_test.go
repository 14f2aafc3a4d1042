package region

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/custody"
	"github.com/vitrine-dev/vitrine/internal/store"
)

// exchangeStore is the part of a store the aggregate exchange uses, with
// counts: it holds aggregates changes of its own and takes the peers'.
type exchangeStore struct {
	store.Store // the rest is not used: nil, a call would panic
	changes     int
	reads       atomic.Int64 // ChangedAggregates calls
	puts        atomic.Int64 // PutRemote calls
}

func (s *exchangeStore) ChangedAggregates(_ context.Context, cursor int64, limit int) ([]store.Aggregate, int64, error) {
	s.reads.Add(1)
	n := max(0, min(int64(limit), int64(s.changes)-cursor))
	aggs := make([]store.Aggregate, n)
	for i := range aggs {
		aggs[i] = store.Aggregate{SHA256: fmt.Sprintf("%064x", cursor+int64(i)), Prevalence: 1}
	}
	return aggs, cursor + n, nil
}

func (s *exchangeStore) PutRemote(context.Context, string, []store.Aggregate, int64) error {
	s.puts.Add(1)
	return nil
}

func (s *exchangeStore) RemoteCursor(context.Context, string) (int64, error) { return 0, nil }

// accessLog is an access log whose storage can be broken: it then refuses
// appends and says so, with a Retry-After, as a *logserver.Log does.
type accessLog struct {
	broken  atomic.Bool
	appends atomic.Int64 // Append calls
	ready   atomic.Int64 // Ready calls
}

type logDown struct{ retry time.Duration }

func (e logDown) Error() string             { return "log unavailable: storage broken; it recovers by itself" }
func (e logDown) RetryAfter() time.Duration { return e.retry }

func (l *accessLog) Append(context.Context, []byte) (uint64, error) {
	n := l.appends.Add(1)
	if l.broken.Load() {
		return 0, fmt.Errorf("appending: %w", logDown{2 * time.Second})
	}
	return uint64(n - 1), nil
}

func (l *accessLog) Ready() error {
	l.ready.Add(1)
	if l.broken.Load() {
		return logDown{2 * time.Second}
	}
	return nil
}

// levels counts log records at Warn and above.
type levels struct{ n atomic.Int64 }

func (h *levels) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *levels) Handle(context.Context, slog.Record) error    { h.n.Add(1); return nil }
func (h *levels) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *levels) WithGroup(string) slog.Handler                { return h }

// clock is a test clock that moves only when told to.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// exchangeRegion returns region name with st and log, whose peer (if any)
// is zurich at url.
func exchangeRegion(t *testing.T, name string, st store.Store, log *accessLog, peerURL string, lines slog.Handler, now func() time.Time) *Region {
	t.Helper()
	wrapper, err := custody.WrapOnlyKey(name)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Name:             name,
		Store:            st,
		Wrapper:          wrapper,
		PeerToken:        "peer-token",
		ExchangeInterval: 2 * time.Millisecond,
		Logger:           slog.New(lines),
		Now:              now,
	}
	if log != nil {
		cfg.AccessLog = log
	}
	if peerURL != "" {
		cfg.Peers = map[string]string{"zurich": peerURL}
	}
	return New(cfg)
}

// run runs r's exchange until the test ends.
func run(t *testing.T, r *Region) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// eventually waits (at most 10s) until cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %s", what)
		}
	}
}

// A peer that answers 503 with Retry-After: 5 is not asked again before
// five seconds have passed (on the puller's clock), however short the
// exchange interval; then it is.
func TestPullHonoursRetryAfter(t *testing.T) {
	var asked atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		w.Header().Set("Retry-After", "5")
		http.Error(w, `{"error":"the access log cannot take the crossing now"}`, http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c := &clock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	moscow := exchangeRegion(t, "moscow", &exchangeStore{}, nil, srv.URL, &levels{}, c.Now)
	run(t, moscow)

	eventually(t, "the first pull", func() bool { return asked.Load() == 1 })
	time.Sleep(200 * time.Millisecond) // a hundred exchange intervals
	if got := asked.Load(); got != 1 {
		t.Fatalf("peer asked %d times within its Retry-After, want 1", got)
	}
	c.advance(4 * time.Second)
	time.Sleep(50 * time.Millisecond)
	if got := asked.Load(); got != 1 {
		t.Fatalf("peer asked %d times 4s into its Retry-After of 5s, want 1", got)
	}
	c.advance(2 * time.Second)
	eventually(t, "a pull once the Retry-After passed", func() bool { return asked.Load() == 2 })
	time.Sleep(50 * time.Millisecond)
	if got := asked.Load(); got != 2 {
		t.Fatalf("peer asked %d times, want 2 (one per Retry-After)", got)
	}
}

// Moscow pulls zurich's aggregates while zurich's access log is broken:
// zurich answers 503 at once, without reading aggregates it could not
// release, and moscow waits as asked. An idle pair of regions does
// (almost) nothing meanwhile: few pulls, no reads, few log lines. Once the
// log works again, the exchange resumes and the crossing is logged.
func TestExchangeWaitsForBrokenAccessLog(t *testing.T) {
	zst := &exchangeStore{changes: maxPage + 10}
	zlog := &accessLog{}
	zlog.broken.Store(true)
	lines := &levels{}
	zurich := exchangeRegion(t, "zurich", zst, zlog, "", lines, nil)
	var pulls atomic.Int64
	h := zurich.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pulls.Add(1)
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	c := &clock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	mst := &exchangeStore{}
	moscow := exchangeRegion(t, "moscow", mst, nil, srv.URL, lines, c.Now)
	run(t, moscow)

	eventually(t, "the first pull", func() bool { return pulls.Load() >= 1 })
	time.Sleep(300 * time.Millisecond) // 150 exchange intervals
	if got := pulls.Load(); got > 2 {
		t.Errorf("%d pulls in 300ms while the access log is broken and asks for 2s, want at most 2", got)
	}
	if got := zst.reads.Load(); got != 0 {
		t.Errorf("zurich read aggregates %d times for pulls it could not log, want 0", got)
	}
	if got := zlog.appends.Load(); got != 0 {
		t.Errorf("zurich tried to log %d crossings on a log that said it was broken, want 0", got)
	}
	if got := lines.n.Load(); got > 2 {
		t.Errorf("%d warning and error lines in 300ms, want at most 2", got)
	}

	zlog.broken.Store(false)
	c.advance(3 * time.Second)
	eventually(t, "the exchange to resume", func() bool { return mst.puts.Load() >= 2 })
	if got := zlog.appends.Load(); got != 2 {
		t.Errorf("%d crossings logged for two pages, want 2", got)
	}
	if got := zst.reads.Load(); got < 2 {
		t.Errorf("zurich read %d pages, want 2", got)
	}
}
