package monitor

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/transparency-dev/tessera"
	tclient "github.com/transparency-dev/tessera/client"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/residency"
	"github.com/vitrine-dev/vitrine/tlog"
)

// The catch-up benchmarks follow a 1,048,576-entry access log of realistic
// entries (VITRINE_BENCH_SIZE sets another size), built once into the
// temporary directory and reused: BenchmarkFollowAccess1M with the bare
// verified follower, BenchmarkCatchUp1M with the monitor's whole work on
// each entry (parse, the default rules, alerts with their proofs, a commit
// of alerts and state every chunk).

const accessBenchVersion = "v2"

// accessBenchEntry is entry i of the benchmark access log: a zurich log's
// mix of reads by 1,000 analysts over 30 days, exports, deletes, one in a
// thousand reads for a third party, and a commitment every 10,000 entries.
func accessBenchEntry(i int) []byte {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	at := t0.Add(time.Duration(i) * (30 * 24 * time.Hour / (1 << 20)))
	if i%10_000 == 9_999 {
		b, err := (&access.Commitment{Time: at, Region: "zurich", Dataset: "telemetry", Count: int64(1_000_000 + i), Through: int64(2_000_000 + i),
			Root: fmt.Sprintf("sha256:%064x", i)}).Marshal()
		if err != nil {
			panic(err)
		}
		return b
	}
	r := &access.Record{
		Time:          at,
		Region:        "zurich",
		Principal:     access.Principal{ID: fmt.Sprintf("analyst:a%03d", i%1000), Role: "analyst", Location: []string{"CH", "DE", "US", "FR"}[i%4]},
		Action:        "read",
		Resource:      access.Resource{Dataset: "telemetry", Query: fmt.Sprintf("sha256=%064x&limit=100", i), Count: int64(1 + i%7), Digest: access.Digest([]int64{int64(i)})},
		Justification: access.Justification{Code: "CUSTOMER_INITIATED_SUPPORT", Detail: fmt.Sprintf("case %d", i/3)},
		Subjects:      []string{fmt.Sprintf("hmac-sha256:%064x", i%50_000)},
		Request:       fmt.Sprintf("%032x", i),
		Outcome:       "granted",
		Keys:          []string{fmt.Sprintf("sha256:%064x", i/10)},
	}
	switch {
	case i%1000 == 500:
		r.Justification = access.Justification{Code: "THIRD_PARTY_DATA_REQUEST", Detail: fmt.Sprintf("court order %d", i)}
	case i%100 == 7:
		r.Action = "export"
	case i%5000 == 11:
		r.Principal.Role, r.Action = "operator", "delete"
		r.Keys = nil
	}
	b, err := r.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

type accessBenchLog struct {
	dir, vkey string
	size      uint64
}

var (
	accessBenchOnce sync.Once
	accessBench     *accessBenchLog
	accessBenchErr  error
)

func openAccessBenchLog(b *testing.B) *accessBenchLog {
	b.Helper()
	if testing.Short() {
		b.Skip("skipping the benchmark log in short mode")
	}
	size := 1 << 20
	if s := os.Getenv("VITRINE_BENCH_SIZE"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("VITRINE_BENCH_SIZE=%q: want a positive entry count", s)
		}
		size = n
	}
	accessBenchOnce.Do(func() { accessBench, accessBenchErr = loadAccessBenchLog(b, size) })
	if accessBenchErr != nil {
		b.Fatal(accessBenchErr)
	}
	return accessBench
}

func loadAccessBenchLog(b *testing.B, size int) (*accessBenchLog, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("vitrine-access-bench-%d-%s", size, accessBenchVersion))
	vkeyPath := filepath.Join(dir, ".vitrine-verifier")
	vkey, err := os.ReadFile(vkeyPath)
	if errors.Is(err, fs.ErrNotExist) {
		b.Logf("building a %d-entry access log in %s; later runs reuse it", size, dir)
		scratch, err := os.MkdirTemp(os.TempDir(), filepath.Base(dir)+".build-*")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(scratch)
		v, err := buildAccessLog(scratch, size)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(scratch, filepath.Base(vkeyPath)), []byte(v), 0o644); err != nil {
			return nil, err
		}
		if err := os.Rename(scratch, dir); err != nil {
			return nil, err
		}
		vkey = []byte(v)
	} else if err != nil {
		return nil, err
	}
	return &accessBenchLog{dir: dir, vkey: string(vkey), size: uint64(size)}, nil
}

// buildAccessLog writes the benchmark log with Tessera's POSIX driver and
// returns its verifier key.
func buildAccessLog(dir string, size int) (string, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	skey, vkey, err := note.GenerateKey(rand.Reader, "bench.example/logs/access-zurich")
	if err != nil {
		return "", err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return "", err
	}
	driver, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		return "", err
	}
	appender, shutdown, reader, err := tessera.NewAppender(ctx, driver, tessera.NewAppendOptions().
		WithCheckpointSigner(signer).WithBatching(1<<14, 100*time.Millisecond).
		WithCheckpointInterval(100*time.Millisecond).WithPushback(uint(size)+1))
	if err != nil {
		return "", err
	}
	awaiter := tessera.NewPublicationAwaiter(ctx, reader.ReadCheckpoint, 20*time.Millisecond)
	var last tessera.IndexFuture
	for i := range size {
		last = appender.Add(ctx, tessera.NewEntry(accessBenchEntry(i)))
	}
	if _, _, err := awaiter.Await(ctx, last); err != nil {
		return "", err
	}
	return vkey, shutdown(ctx)
}

func (l *accessBenchLog) open(b *testing.B) *client.Log {
	none, err := tlog.ParsePolicy([]byte("quorum none\n"))
	if err != nil {
		b.Fatal(err)
	}
	log, err := client.NewLogFetcher(tclient.FileFetcher{Root: l.dir}, l.vkey, none)
	if err != nil {
		b.Fatal(err)
	}
	return log
}

func BenchmarkFollowAccess1M(b *testing.B) {
	l := openAccessBenchLog(b)
	log := l.open(b)
	cpu := benchCPU(b)
	for b.Loop() {
		f, err := client.NewFollower(log, nil)
		if err != nil {
			b.Fatal(err)
		}
		var n uint64
		if _, err := f.Update(b.Context(), func(uint64, []byte) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n != l.size {
			b.Fatalf("followed %d entries, want %d", n, l.size)
		}
	}
	reportRate(b, l.size, benchCPU(b)-cpu)
}

func BenchmarkCatchUp1M(b *testing.B) { benchCatchUp(b, nil) }

// BenchmarkCatchUpIndexed1M is BenchmarkCatchUp1M with the platform's
// pseudonymisation key, so that the subjects of every access are indexed
// for endpoints that ask who accessed their data.
func BenchmarkCatchUpIndexed1M(b *testing.B) {
	benchCatchUp(b, map[string][]byte{"https://bench.example": []byte("0123456789abcdef0123456789abcdef")})
}

func benchCatchUp(b *testing.B, keys map[string][]byte) {
	l := openAccessBenchLog(b)
	log := l.open(b)
	const base = "https://bench.example"
	cpu := benchCPU(b)
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
	reportRate(b, l.size, benchCPU(b)-cpu)
}

func reportRate(b *testing.B, size uint64, cpu float64) {
	b.ReportMetric(float64(size)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(cpu/float64(b.N), "cpu-s/op")
}

func benchCPU(b *testing.B) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
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
