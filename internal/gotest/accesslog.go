package gotest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
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
	"github.com/vitrine-dev/vitrine/tlog"
)

// The benchmarks that follow a large access log (the monitor's catch-up,
// the Center's index) share one: a 1,048,576-entry log of realistic
// entries (VITRINE_BENCH_SIZE sets another size), built once into the
// temporary directory and reused by every later run.

const accessBenchVersion = "v2"

// AccessBenchEntry is entry i of the benchmark access log: a zurich log's
// mix of reads by 1,000 analysts over 30 days, exports, deletes, one in a
// thousand reads for a third party, and a commitment every 10,000 entries.
func AccessBenchEntry(i int) []byte {
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

// BenchLog is the benchmark access log, in Tessera's POSIX layout.
type BenchLog struct {
	dir, vkey string
	Size      uint64 // entries
}

var (
	accessBenchOnce sync.Once
	accessBench     *BenchLog
	accessBenchErr  error
)

// AccessBenchLog returns the benchmark access log, building it on first use.
func AccessBenchLog(b testing.TB) *BenchLog {
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

func loadAccessBenchLog(b testing.TB, size int) (*BenchLog, error) {
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
	return &BenchLog{dir: dir, vkey: string(vkey), Size: uint64(size)}, nil
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
		last = appender.Add(ctx, tessera.NewEntry(AccessBenchEntry(i)))
	}
	if _, _, err := awaiter.Await(ctx, last); err != nil {
		return "", err
	}
	return vkey, shutdown(ctx)
}

// Open returns the log, read from its files, with no witness policy.
func (l *BenchLog) Open(b testing.TB) *client.Log {
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

// BenchFollowBare follows the benchmark access log with the bare verified
// follower, each op from its first entry: the baseline that the
// benchmarks of what follows the log (the monitor, the Center's index)
// are compared with.
func BenchFollowBare(b *testing.B) {
	l := AccessBenchLog(b)
	log := l.Open(b)
	cpu := CPUSeconds(b)
	for b.Loop() {
		f, err := client.NewFollower(log, nil)
		if err != nil {
			b.Fatal(err)
		}
		var n uint64
		if _, err := f.Update(b.Context(), func(uint64, []byte) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n != l.Size {
			b.Fatalf("followed %d entries, want %d", n, l.Size)
		}
	}
	ReportRate(b, l.Size, CPUSeconds(b)-cpu)
}

// ReportRate reports a benchmark's entries a second and its CPU seconds
// an op, given the CPU seconds (CPUSeconds) its ops took.
func ReportRate(b *testing.B, size uint64, cpu float64) {
	b.ReportMetric(float64(size)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(cpu/float64(b.N), "cpu-s/op")
}

// CPUSeconds is the CPU time (user and system) this process has used.
func CPUSeconds(b testing.TB) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
