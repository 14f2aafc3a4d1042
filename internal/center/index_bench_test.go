package center

import (
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/gotest"
)

// BenchmarkFollowBare1M is the verified follower alone over the
// benchmark access log (gotest.AccessBenchLog): the baseline of
// BenchmarkIndexFollow1M.
func BenchmarkFollowBare1M(b *testing.B) { gotest.BenchFollowBare(b) }

// BenchmarkIndexFollow1M indexes the whole benchmark access log into an
// empty index, as a Center's first follow of a platform does.
func BenchmarkIndexFollow1M(b *testing.B) {
	l := gotest.AccessBenchLog(b)
	log := l.Open(b)
	cpu := gotest.CPUSeconds(b)
	for b.Loop() {
		b.StopTimer()
		x, err := OpenIndex(filepath.Join(b.TempDir(), "index.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		cp, err := x.Follow(b.Context(), "access-zurich", log, nil)
		if err != nil {
			b.Fatal(err)
		}
		if got := x.Status()["access-zurich"].Indexed; got != l.Size || cp.Size != l.Size {
			b.Fatalf("indexed %d entries, want %d", got, l.Size)
		}
		b.StopTimer()
		x.Close()
		b.StartTimer()
	}
	gotest.ReportRate(b, l.Size, gotest.CPUSeconds(b)-cpu)
}

// BenchmarkAccessesPage1M measures the server-side time of the index's
// pages (/center/accesses, rendered as HTML) over the whole benchmark
// access log indexed: each op is one round of the queries below, and the
// p50 and p99 of each kind are reported. "page" kinds are pages of
// entries; "search" kinds answer what /center/search leads to (a
// principal's or a pseudonym's entries).
func BenchmarkAccessesPage1M(b *testing.B) {
	l := gotest.AccessBenchLog(b)
	c, err := New(Config{Platform: "http://127.0.0.1:1", Dir: b.TempDir(), IndexEvery: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	if _, err := c.index.Follow(b.Context(), "access-zurich", l.Open(b), nil); err != nil {
		b.Fatal(err)
	}
	// A position half-way down, for a deep page.
	// (The log's entries span 30 days at 2^20 entries.)
	half := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(l.Size/2) * (30 * 24 * time.Hour / (1 << 20)))
	mid, _, err := c.index.Query(b.Context(), Filter{To: half}, 1)
	if err != nil || len(mid) == 0 {
		b.Fatal("no entry half-way", err)
	}
	queries := []struct{ kind, q string }{
		{"page", ""},
		{"page", "before=" + mid[0].at.String()},
		{"page", "log=access-zurich&action=read&outcome=granted"},
		{"page", "justification=THIRD_PARTY_DATA_REQUEST"},
		{"page", "action=delete"},
		{"page", "action=export&from=2026-11-10&to=2026-11-12"},
		{"page", "principal=analyst:a500&justification=THIRD_PARTY_DATA_REQUEST"},
		{"page", "outcome=denied"},
		{"search", "principal=analyst:a042"},
		{"search", "subject=hmac-sha256:" + fmt.Sprintf("%064x", 4242)},
	}
	h := c.Handler()
	times := map[string][]time.Duration{}
	for b.Loop() {
		for _, q := range queries {
			start := time.Now()
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", "/center/accesses?"+q.q, nil))
			times[q.kind] = append(times[q.kind], time.Since(start))
			if w.Code != 200 {
				b.Fatalf("accesses?%s: %d %s", q.q, w.Code, w.Body)
			}
		}
	}
	for kind, ts := range times {
		slices.Sort(ts)
		b.ReportMetric(float64(ts[len(ts)/2].Microseconds())/1000, kind+"-p50-ms")
		b.ReportMetric(float64(ts[len(ts)*99/100].Microseconds())/1000, kind+"-p99-ms")
	}
}
