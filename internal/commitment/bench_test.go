package commitment

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/internal/store/sqlite"
	"github.com/vitrine-dev/vitrine/internal/store/storetest"
	"github.com/vitrine-dev/vitrine/telemetry"
)

var benchRecords = flag.Int("records", 1_000_000, "records in the store of BenchmarkCommit")

// benchStore is the store of BenchmarkCommit, filled once per process:
// the benchmark function runs several times, and filling takes longer
// than committing.
var benchStore struct {
	once sync.Once
	dir  string
	s    *sqlite.Store
	err  error
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if benchStore.s != nil {
		benchStore.s.Close()
		os.RemoveAll(benchStore.dir)
	}
	os.Exit(code)
}

// filledStore returns an SQLite store holding n records, stored in
// batches of the largest size, their aggregates folded.
func filledStore(n int) (*sqlite.Store, error) {
	benchStore.once.Do(func() {
		ctx := context.Background()
		if benchStore.dir, benchStore.err = os.MkdirTemp("", "commitment-bench-"); benchStore.err != nil {
			return
		}
		s, err := sqlite.Open(ctx, filepath.Join(benchStore.dir, "zurich.db"))
		if err != nil {
			benchStore.err = err
			return
		}
		benchStore.s = s
		for b := 0; b*telemetry.MaxBatchRecords < n; b++ {
			recs := make([]telemetry.Record, min(telemetry.MaxBatchRecords, n-b*telemetry.MaxBatchRecords))
			for i := range recs {
				k := b*telemetry.MaxBatchRecords + i
				recs[i] = storetest.Record(storetest.Hash(fmt.Sprint(k%(n/3+1))), time.Duration(k)*time.Millisecond, "")
				recs[i].URL, recs[i].Path = "", ""
			}
			batch := storetest.Batch(fmt.Sprint("ep-", b%1000), fmt.Sprint(b), recs...)
			if _, err := s.PutBatch(ctx, batch); err != nil {
				benchStore.err = err
				return
			}
		}
		// Reopened, with everything folded, the store holds nothing
		// pending in memory that a fold would free during a commitment.
		if benchStore.err = s.Close(); benchStore.err != nil {
			return
		}
		benchStore.s, benchStore.err = sqlite.Open(ctx, filepath.Join(benchStore.dir, "zurich.db"))
	})
	return benchStore.s, benchStore.err
}

// BenchmarkCommit commits to the records of an SQLite store (-records,
// default 1M), and, alternately, reads the same records with RecordRefs
// alone, the baseline: what a commitment costs beyond reading its
// snapshot. It reports both rates, the ratio of their times, and how much
// the live heap grew at most during the commitments, which must not grow
// with the number of records.
//
//	go test -run '^$' -bench Commit -benchtime 3x ./internal/commitment
func BenchmarkCommit(b *testing.B) {
	s, err := filledStore(*benchRecords)
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	c, err := New(Config{Region: "zurich", Store: s, Log: &memLog{}, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	var commitTime, scanTime time.Duration
	var count int64
	var peakLive uint64
	runtime.GC()
	before := liveHeap()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		var n int64
		if _, err := s.RecordRefs(ctx, pageSize, func(page []store.RecordRef) error {
			n += int64(len(page))
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		scanTime += time.Since(start)

		stop := sampleLive(&peakLive)
		start = time.Now()
		_, cm, err := c.Commit(ctx)
		commitTime += time.Since(start)
		stop()
		if err != nil {
			b.Fatal(err)
		}
		if cm.Count != n {
			b.Fatalf("commitment to %d records, RecordRefs read %d", cm.Count, n)
		}
		count = n
	}
	records := float64(count) * float64(b.N)
	b.ReportMetric(records/commitTime.Seconds(), "records/s")
	b.ReportMetric(records/scanTime.Seconds(), "scan-records/s")
	b.ReportMetric(commitTime.Seconds()/scanTime.Seconds(), "commit/scan")
	b.ReportMetric((float64(peakLive)-float64(before))/(1<<20), "live-heap-MiB")
}

// liveHeap returns the heap that the last garbage collection found live.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// sampleLive records in *peak the largest live heap (as of the last
// collection) it sees, every 10ms, until stop is called.
func sampleLive(peak *uint64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			*peak = max(*peak, liveHeap())
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
