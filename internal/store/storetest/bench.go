package storetest

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/store"
)

// Bench feeds b.N batches of size records from w to put, one after the
// other, generating them outside the timer, then calls finish (if not nil)
// to complete work that put left to the background, and reports
// records/s. Raw baselines use it too, so that both sides of a comparison
// are driven alike.
func Bench(b *testing.B, w *Workload, size int, put func(*store.Batch) error, finish func() error) {
	const ahead = 50
	var next []*store.Batch
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if len(next) == 0 {
			b.StopTimer()
			for range ahead {
				next = append(next, w.Batch(size))
			}
			b.StartTimer()
		}
		if err := put(next[0]); err != nil {
			b.Fatal(err)
		}
		next = next[1:]
	}
	if finish != nil {
		if err := finish(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "records/s")
}

// BenchParallel is Bench with put called from 8 goroutines per CPU at
// once, as the handlers of concurrent HTTP clients call PutBatch. It
// generates all b.N batches before it starts the timer.
func BenchParallel(b *testing.B, w *Workload, size int, put func(*store.Batch) error, finish func() error) {
	batches := make([]*store.Batch, b.N)
	for i := range batches {
		batches[i] = w.Batch(size)
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := put(batches[next.Add(1)-1]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if finish != nil {
		if err := finish(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "records/s")
}

// BenchVersus runs put and raw on the same batches, alternately, timing
// each, so that both meet the same load on a shared machine; finish (if not
// nil) completes put's background work and counts as put's time. It
// reports each one's records/s and their ratio.
func BenchVersus(b *testing.B, w *Workload, size int, put func(*store.Batch) error, finish func() error, raw func(*store.Batch) error) {
	var putTime, rawTime time.Duration
	timed := func(f func() error) time.Duration {
		start := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		batch := w.Batch(size)
		b.StartTimer()
		putTime += timed(func() error { return put(batch) })
		rawTime += timed(func() error { return raw(batch) })
	}
	if finish != nil {
		putTime += timed(finish)
	}
	records := float64(b.N * size)
	b.ReportMetric(records/putTime.Seconds(), "put-records/s")
	b.ReportMetric(records/rawTime.Seconds(), "raw-records/s")
	b.ReportMetric(rawTime.Seconds()/putTime.Seconds(), "put/raw")
}
