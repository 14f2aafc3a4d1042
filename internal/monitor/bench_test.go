package monitor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/gotest"
	"github.com/vitrine-dev/vitrine/residency"
)

// The catch-up benchmarks follow gotest.AccessBenchLog: BenchmarkFollowAccess1M
// with the bare verified follower, BenchmarkCatchUp1M with the monitor's whole work on
// each entry (parse, the default rules, alerts with their proofs, a commit
// of alerts and state every chunk).

func BenchmarkFollowAccess1M(b *testing.B) { gotest.BenchFollowBare(b) }

func BenchmarkCatchUp1M(b *testing.B) { benchCatchUp(b, nil) }

// BenchmarkCatchUpIndexed1M is BenchmarkCatchUp1M with the platform's
// pseudonymisation key, so that the subjects of every access are indexed
// for endpoints that ask who accessed their data.
func BenchmarkCatchUpIndexed1M(b *testing.B) {
	benchCatchUp(b, map[string][]byte{"https://bench.example": []byte("0123456789abcdef0123456789abcdef")})
}

func benchCatchUp(b *testing.B, keys map[string][]byte) {
	l := gotest.AccessBenchLog(b)
	log := l.Open(b)
	const base = "https://bench.example"
	cpu := gotest.CPUSeconds(b)
	var alerts int
	for b.Loop() {
		b.StopTimer()
		m, err := New(b.Context(), Config{Dir: b.TempDir(), Platforms: []string{base}, PseudonymKeys: keys, Chunk: benchChunk()})
		if err != nil {
			b.Fatal(err)
		}
		m.homes[base] = HomeMap(residency.Default())
		b.StartTimer()
		raised, err := m.follow(b.Context(), base, "access-zurich", log, nil)
		if err != nil {
			b.Fatal(err)
		}
		alerts = len(raised)
		byRule := map[string]int{}
		for _, a := range raised {
			byRule[a.Rule]++
		}
		b.Logf("alerts by rule: %v", byRule)
		b.StopTimer()
		m.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(alerts), "alerts")
	gotest.ReportRate(b, l.Size, gotest.CPUSeconds(b)-cpu)
}

// BenchmarkAccessToWebhook measures, for reads that meet a rule
// (THIRD_PARTY_DATA_REQUEST), the time from the read's answer to its
// alert's arrival at a webhook, with the monitor as vitrine up runs it (a
// pass every second). Each op is one read; reads are spaced 50 ms apart,
// so that several are in flight as the monitor passes.
func BenchmarkAccessToWebhook(b *testing.B) {
	tp := startPlatform(b)
	dir := b.TempDir()
	secret, err := LoadWebhookSecret(dir)
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	arrived := map[string]time.Time{}
	rc, srv := newReceiver(b, secret, 0)
	_ = rc
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		rc.ServeHTTP(w, r)
		rc.mu.Lock()
		a := rc.got[len(rc.got)-1]
		rc.mu.Unlock()
		if i := strings.Index(a.Entry, "order "); i >= 0 {
			mu.Lock()
			arrived[strings.SplitN(a.Entry[i:], `"`, 2)[0]] = at
			mu.Unlock()
		}
	})
	m, err := New(context.Background(), Config{Dir: dir, Platforms: []string{tp.URL()}, Interval: time.Second, Webhooks: []string{srv.URL}, Heartbeat: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	defer func() { cancel(); <-done; m.Close() }()

	read := map[string]time.Time{}
	n := 0
	for b.Loop() {
		key := fmt.Sprintf("order %d", n)
		n++
		tp.read(b, "THIRD_PARTY_DATA_REQUEST; "+key)
		read[key] = time.Now()
		time.Sleep(50 * time.Millisecond)
	}
	b.StopTimer()
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		got := len(arrived)
		mu.Unlock()
		if got >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	var lat []time.Duration
	for k, t := range read {
		at, ok := arrived[k]
		if !ok {
			b.Fatalf("%s never reached the webhook", k)
		}
		lat = append(lat, at.Sub(t))
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))].Seconds() * 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(lat[len(lat)-1].Seconds()*1000, "max-ms")
}

// benchChunk is the catch-up's chunk size from VITRINE_BENCH_CHUNK, for
// seeing what the chunk's commit costs (0, the default: Config's).
func benchChunk() int {
	n, _ := strconv.Atoi(os.Getenv("VITRINE_BENCH_CHUNK"))
	return n
}
