package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/access"
)

// attempt sends one read to the gateway's handler, from remote, with the
// principal's token (none if ""), and returns the answer.
func (e *env) attempt(remote, principalID string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", "/v1/records?sha256="+hash("a"), nil)
	req.RemoteAddr = remote
	req.Header.Set(access.Header, justified)
	if principalID != "" {
		req.Header.Set("Authorization", "Bearer "+e.tokens[principalID])
	}
	w := httptest.NewRecorder()
	e.gw.Handler().ServeHTTP(w, req)
	return w
}

// tally is what the gateway's entries say about denied attempts.
type tally struct {
	individual map[string]int   // denied records, by reason
	counted    map[string]int64 // counts of summaries, by network and reason
	summaries  []uint64         // the summaries' indexes
	entries    int
}

// tallyEntries reads every entry the gateway appended.
func (e *env) tallyEntries() tally {
	e.t.Helper()
	tl := tally{individual: map[string]int{}, counted: map[string]int64{}}
	entries, indexes := e.glog.appended()
	tl.entries = len(entries)
	for i, b := range entries {
		switch k := access.EntryKind(b); k {
		case access.KindAccess:
			r, err := access.Parse(b)
			if err != nil {
				e.t.Fatalf("entry %d: %v", indexes[i], err)
			}
			if r.Action == "denied" {
				tl.individual[r.Reason]++
			}
		case access.KindDeniedSummary:
			s, err := access.ParseDeniedSummary(b)
			if err != nil {
				e.t.Fatalf("entry %d: %v", indexes[i], err)
			}
			for _, c := range s.Counts {
				tl.counted[c.Network+" "+c.Action+": "+c.Reason] += c.Count
			}
			tl.summaries = append(tl.summaries, indexes[i])
		default:
			e.t.Fatalf("entry %d of kind %q: %s", indexes[i], k, b)
		}
	}
	return tl
}

// The attack of issue "anyone can grow the permanent access log": 20,000
// requests without a credential from one client. They add a few entries
// to the log, not 20,000, and the log still accounts for every one.
func TestUnauthenticatedFloodIsCounted(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC) // a clock that stands still: no bucket refills
	e := newEnvWith(t, "", func(c *Config) { c.Now = func() time.Time { return now } })
	e.ingest("CH", rec(hash("a"), 0, "secret-path"))

	const flood = 20000
	const attacker, neighbour = "203.0.113.7:5555", "198.51.100.9:40000"
	receipts, counted := 0, 0
	for i := range flood {
		w := e.attempt(attacker, "")
		if w.Code != http.StatusUnauthorized || strings.Contains(w.Body.String(), "secret-path") {
			t.Fatalf("attempt %d: %d %s", i, w.Code, w.Body)
		}
		switch {
		case w.Header().Get(access.ReceiptHeader) != "":
			receipts++
		case w.Header().Get(CountedHeader) == origin:
			counted++
		default:
			t.Fatalf("attempt %d has neither a receipt nor %s: %v", i, CountedHeader, w.Header())
		}
		if n := e.glog.count(); n > 30 {
			t.Fatalf("after %d attempts without a credential the access log grew by %d entries", i+1, n)
		}
	}
	if receipts+counted != flood || receipts > 5 {
		t.Errorf("%d attempts logged individually and %d counted, want at most 5 and the rest", receipts, counted)
	}
	if got := e.gw.Pending(); got != int64(counted) {
		t.Errorf("Pending = %d before the flush, want %d", got, counted)
	}

	// Another network has its own allowance.
	for i := range 20 {
		w := e.attempt(neighbour, "")
		if has := w.Header().Get(access.ReceiptHeader) != ""; w.Code != http.StatusUnauthorized || has != (i < 5) {
			t.Errorf("attempt %d from another network: %d, receipt %v", i, w.Code, has)
		}
	}
	// Attempts with a valid credential are logged one by one, however
	// many come from the flooding network.
	for i := range 20 {
		w := e.attempt(attacker, "auditor:ann")
		if w.Code != http.StatusForbidden || w.Header().Get(access.ReceiptHeader) == "" {
			t.Fatalf("wrong-role attempt %d: %d, receipt %q", i, w.Code, w.Header().Get(access.ReceiptHeader))
		}
	}

	if err := e.gw.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := e.gw.Pending(); got != 0 {
		t.Errorf("Pending = %d after the flush, want 0", got)
	}
	tl := e.tallyEntries()
	if tl.entries > 40 {
		t.Errorf("the log grew by %d entries for %d attempts", tl.entries, flood+40)
	}
	if len(tl.summaries) != 1 {
		t.Errorf("%d summaries, want 1", len(tl.summaries))
	}
	nocred := "read: no credential"
	if got := int64(tl.individual[nocred]) + tl.counted["203.0.113.0/24 "+nocred] + tl.counted["198.51.100.0/24 "+nocred]; got != flood+20 {
		t.Errorf("denied records (%d) and summaries (%v) account for %d attempts without a credential, want %d", tl.individual[nocred], tl.counted, got, flood+20)
	}
	if tl.counted["203.0.113.0/24 "+nocred] != int64(counted) || tl.counted["198.51.100.0/24 "+nocred] != 15 || len(tl.counted) != 2 {
		t.Errorf("summary counts %v, want %d from 203.0.113.0/24 and 15 from 198.51.100.0/24", tl.counted, counted)
	}
	if got := tl.individual["read: role auditor may not read records"]; got != 20 {
		t.Errorf("%d wrong-role attempts logged individually, want 20", got)
	}
	// The summary is in the witnessed log, as written.
	raw := e.rawEntry(tl.summaries[0])
	s, err := access.ParseDeniedSummary(raw)
	if err != nil || s.Region != testRegion || !s.From.Equal(now) || !s.To.Equal(now) || s.Total() != int64(counted)+15 {
		t.Errorf("logged summary %s: %+v, %v", raw, s, err)
	}
}

// A flush the log refuses keeps its counts, and counted attempts are
// answered 503 until one succeeds. A summary split across entries loses
// nothing when the log refuses part of it.
func TestDeniedSummaryFlushFailureKeepsCounts(t *testing.T) {
	e := newEnvWith(t, "", func(c *Config) {
		c.Unauthenticated = Limits{Burst: 1, AllBurst: 1 << 20, Counts: 1 << 20}
	})
	// 1,000 networks, 3 attempts each: 1 logged, 2 counted. Their counts
	// do not fit one entry.
	const networks = 1000
	for n := range networks {
		for range 3 {
			e.attempt(fmt.Sprintf("10.%d.%d.1:1", n/256, n%256), "")
		}
	}
	if got := e.gw.Pending(); got != 2*networks {
		t.Fatalf("Pending = %d, want %d", got, 2*networks)
	}
	before := e.glog.count()
	e.glog.refuseAfter(1) // the first summary goes in, the others do not
	if err := e.gw.Flush(t.Context()); err == nil || !strings.Contains(err.Error(), "appending denied summary") {
		t.Fatalf("Flush with the log refusing = %v, want an error", err)
	}
	if e.glog.count() != before+1 {
		t.Fatalf("%d entries appended, want the first summary", e.glog.count()-before)
	}
	first := e.tallyEntries()
	var written int64
	for _, n := range first.counted {
		written += n
	}
	if written == 0 || e.gw.Pending() != 2*networks-written {
		t.Errorf("the first summary counts %d, Pending = %d: want them to add up to %d", written, e.gw.Pending(), 2*networks)
	}

	// Meanwhile, counted attempts are answered 503, and counted.
	w := e.attempt("10.0.0.1:1", "")
	if w.Code != http.StatusServiceUnavailable || w.Header().Get(CountedHeader) != "" {
		t.Errorf("counted attempt while summaries wait: %d %v", w.Code, w.Header())
	}
	e.glog.refuseAfter(-1)
	if err := e.gw.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	tl := e.tallyEntries()
	var total int64
	for _, n := range tl.counted {
		total += n
	}
	if e.gw.Pending() != 0 || total != 2*networks+1 || len(tl.summaries) < 2 || len(tl.individual) != 1 || tl.individual["read: no credential"] != networks {
		t.Errorf("after the log took entries again: Pending %d, %d summaries counting %d, individual %v; want %d counted, %d individual",
			e.gw.Pending(), len(tl.summaries), total, tl.individual, 2*networks+1, networks)
	}
	for _, i := range tl.summaries {
		if raw := e.rawEntry(i); len(raw) > access.MaxSize {
			t.Errorf("summary %d is %d bytes", i, len(raw))
		}
	}
	if w := e.attempt("10.0.0.1:1", ""); w.Code != http.StatusUnauthorized || w.Header().Get(CountedHeader) != origin {
		t.Errorf("counted attempt once the summaries are in: %d %v", w.Code, w.Header())
	}
}

// Run flushes every FlushInterval and once more when it stops; after
// that, every attempt is logged individually.
func TestRunFlushesPeriodicallyAndOnStop(t *testing.T) {
	e := newEnvWith(t, "", func(c *Config) { c.Unauthenticated = Limits{Burst: 2, FlushInterval: 20 * time.Millisecond} })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		e.gw.Run(ctx)
		close(done)
	}()
	for range 10 {
		e.attempt("192.0.2.1:1", "")
	}
	deadline := time.Now().Add(20 * time.Second)
	for e.gw.Pending() != 0 || len(e.tallyEntries().summaries) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no periodic summary: Pending %d", e.gw.Pending())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 5 {
		e.attempt("192.0.2.1:1", "")
	}
	cancel()
	<-done
	tl := e.tallyEntries()
	if e.gw.Pending() != 0 || tl.counted["192.0.2.0/24 read: no credential"] != 13 || tl.individual["read: no credential"] != 2 {
		t.Errorf("after Run stopped: Pending %d, counted %v, individual %v; want 13 counted, 2 individual", e.gw.Pending(), tl.counted, tl.individual)
	}
	if w := e.attempt("192.0.2.1:1", ""); w.Code != http.StatusUnauthorized || w.Header().Get(access.ReceiptHeader) == "" {
		t.Errorf("an attempt after Run stopped: %d %v, want it logged individually", w.Code, w.Header())
	}
}

func TestSourceNetwork(t *testing.T) {
	for _, tc := range []struct{ remote, want string }{
		{"203.0.113.7:5555", "203.0.113.0/24"},
		{"203.0.113.7", "203.0.113.0/24"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[::ffff:203.0.113.7]:1", "203.0.113.0/24"},
		{"[fe80::1%eth0]:1", "fe80::/64"},
		{"[::1]:1", "::/64"},
		{"", access.UnknownNetwork},
		{"@", access.UnknownNetwork},
		{"example.com:80", access.UnknownNetwork},
	} {
		if got := sourceNetwork(tc.remote); got != tc.want || !access.ValidNetwork(got) {
			t.Errorf("sourceNetwork(%q) = %q, want %q", tc.remote, got, tc.want)
		}
	}
}

// The limits hold across networks, the number of networks tracked and
// the number of counts held are bounded, and no attempt goes uncounted.
func TestDenialsBounds(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	key := func(n int) countKey { return countKey{"read", "no credential", fmt.Sprintf("10.0.%d.0/24", n)} }

	t.Run("all networks together", func(t *testing.T) {
		d := newDenials(Limits{Burst: 5, AllBurst: 3})
		individual := 0
		for n := range 10 {
			if ok, _ := d.decide(now, key(n)); ok {
				individual++
			}
		}
		if individual != 3 || d.total != 7 {
			t.Errorf("%d individual, %d counted; want 3 and 7", individual, d.total)
		}
	})
	t.Run("networks tracked", func(t *testing.T) {
		d := newDenials(Limits{Burst: 1, AllBurst: 1 << 20, Networks: 4})
		for n := range 100 {
			d.decide(now, key(n))
		}
		if d.lru.Len() != 4 || len(d.nets) != 4 {
			t.Errorf("%d networks tracked, want 4", len(d.nets))
		}
	})
	t.Run("counts held", func(t *testing.T) {
		d := newDenials(Limits{Burst: 1, AllBurst: 1, Counts: 4})
		d.decide(now, key(0)) // the one individual record
		for n := range 100 {
			d.decide(now, key(n))
			d.decide(now, countKey{"read", "no credential", fmt.Sprintf("2001:db8:%x::/64", n)})
		}
		if len(d.pending) != 6 || d.total != 200 {
			t.Errorf("%d counts held for %d attempts: %v", len(d.pending), d.total, d.pending)
		}
		if d.pending[countKey{"read", "no credential", "0.0.0.0/0"}] != 98 || d.pending[countKey{"read", "no credential", "::/0"}] != 98 {
			t.Errorf("counts beyond the bound: %v, want them under 0.0.0.0/0 and ::/0", d.pending)
		}
	})
	t.Run("refill", func(t *testing.T) {
		d := newDenials(Limits{Burst: 2, Every: 10 * time.Second})
		var got []bool
		for _, dt := range []time.Duration{0, 0, 0, 5 * time.Second, 10 * time.Second, 10 * time.Second, 40 * time.Second, 40 * time.Second, 40 * time.Second} {
			ok, _ := d.decide(now.Add(dt), key(0))
			got = append(got, ok)
		}
		if want := "[true true false false true false true true false]"; fmt.Sprint(got) != want {
			t.Errorf("individual = %v, want %v", got, want)
		}
	})
}

// Concurrent attempts, flushes and a Run are race-free and lose nothing.
func TestDeniedConcurrent(t *testing.T) {
	e := newEnvWith(t, "", func(c *Config) {
		c.Unauthenticated = Limits{Burst: 1, AllBurst: 1, FlushInterval: 5 * time.Millisecond}
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		e.gw.Run(ctx)
		close(done)
	}()
	var sent atomic.Int64
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Go(func() {
			for i := range 200 {
				e.attempt(fmt.Sprintf("192.0.%d.%d:1", c, i%7), "")
				sent.Add(1)
			}
		})
	}
	wg.Wait()
	cancel()
	<-done
	tl := e.tallyEntries()
	var total int64
	for _, n := range tl.counted {
		total += n
	}
	if got := total + int64(tl.individual["read: no credential"]); got != sent.Load() || e.gw.Pending() != 0 {
		t.Errorf("the log accounts for %d of %d attempts; Pending %d", got, sent.Load(), e.gw.Pending())
	}
}

// BenchmarkDeniedWithoutCredential sends attempts without a credential
// from one client straight to the handler, and reports the access-log
// entries they add per attempt.
func BenchmarkDeniedWithoutCredential(b *testing.B) {
	e := newEnv(b, "")
	for b.Loop() {
		if w := e.attempt("203.0.113.7:5555", ""); w.Code != http.StatusUnauthorized {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
	b.ReportMetric(float64(e.glog.count())/float64(b.N), "entries/op")
}
