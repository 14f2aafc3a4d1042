package ruledb

import (
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// textSources renders srcs as rule files, so benchmarks include parsing.
func textSources(srcs []*Source) map[string]string {
	out := map[string]string{}
	for _, src := range srcs {
		var b strings.Builder
		for _, s := range src.Signatures {
			b.WriteString(s.String())
			b.WriteByte('\n')
		}
		out[src.Name] = b.String()
	}
	return out
}

// peakHeap samples runtime.MemStats.HeapAlloc every few milliseconds until
// stop is called, which returns the largest value seen.
func peakHeap() (stop func() uint64) {
	var (
		peak uint64
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	sample := func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		peak = max(peak, m.HeapAlloc)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				sample()
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
}

func heapNow() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkCompile parses and compiles 1,000,000 hash signatures (half MD5,
// half SHA-256) and 100,000 body signatures. It reports the heap before
// (input text) and the peak heap during the run.
func BenchmarkCompile(b *testing.B) {
	texts := textSources(generate(1_000_000, 100_000, 1))
	base := heapNow()
	var size int
	stop := peakHeap()
	for b.Loop() {
		var srcs []*Source
		for name, text := range texts {
			src, err := Parse(name, strings.NewReader(text))
			if err != nil {
				b.Fatal(err)
			}
			srcs = append(srcs, src)
		}
		data, err := Compile(srcs, 1)
		if err != nil {
			b.Fatal(err)
		}
		size = len(data)
	}
	peak := stop()
	b.ReportMetric(float64(base)/1e6, "input-heap-MB")
	b.ReportMetric(float64(peak)/1e6, "peak-heap-MB")
	b.ReportMetric(float64(size)/1e6, "db-MB")
}

// BenchmarkDelta makes a delta between a database of 1,000,000 hash and
// 100,000 body signatures and one with 1% of them replaced, and reports its
// size as a percentage of the new database.
func BenchmarkDelta(b *testing.B) {
	srcs := generate(1_000_000, 100_000, 1)
	old := mustCompile(b, srcs, 1)
	new := mustCompile(b, mutate(srcs, 0.01, 2), 2)
	var delta []byte
	for b.Loop() {
		var err error
		if delta, err = Delta(old, new); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	got, err := ApplyDelta(old, delta)
	if err != nil || string(got) != string(new) {
		b.Fatalf("applying the delta does not give the new database: %v", err)
	}
	b.ReportMetric(float64(len(delta))/float64(len(new))*100, "delta/full-%")
	b.ReportMetric(float64(len(delta))/1e3, "delta-kB")
	b.ReportMetric(float64(len(new))/1e6, "full-MB")
}

// BenchmarkApplyDelta applies the delta of BenchmarkDelta.
func BenchmarkApplyDelta(b *testing.B) {
	srcs := generate(1_000_000, 100_000, 1)
	old := mustCompile(b, srcs, 1)
	delta, err := Delta(old, mustCompile(b, mutate(srcs, 0.01, 2), 2))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := ApplyDelta(old, delta); err != nil {
			b.Fatal(err)
		}
	}
}
