//go:build unix

package custody

import (
	"syscall"
	"testing"
	"time"
)

// BenchmarkUnwrap unwraps the 10 data keys an access entry names, as the
// gateway does for a read: cold, every key decapsulated, and warm, the
// request seen before. Every unwrap verifies the proof and counts durably
// either way. cpu-ns/op is the CPU time of the whole process (custody, the
// log and the witness in the background) per unwrap.
func BenchmarkUnwrap(b *testing.B) {
	e := newEnv(b)
	_, wrapped := e.wrap("zurich", 10)
	entry := record("zurich", "read", "granted", wrapped)
	_, proofs := e.prove("zurich", entry)
	req := &UnwrapRequest{Region: "zurich", Entry: entry, Proof: proofs[0], Keys: wrapped}

	b.Run("keys=10/cold", func(b *testing.B) {
		b.ReportAllocs()
		var cpu time.Duration
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			dropKeyCache(e.svc)
			start := cpuTime(b)
			b.StartTimer()
			if _, err := e.svc.Unwrap(b.Context(), req); err != nil {
				b.Fatal(err)
			}
			cpu += cpuTime(b) - start
		}
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	})
	b.Run("keys=10/warm", func(b *testing.B) {
		b.ReportAllocs()
		if _, err := e.svc.Unwrap(b.Context(), req); err != nil {
			b.Fatal(err)
		}
		start := cpuTime(b)
		for b.Loop() {
			if _, err := e.svc.Unwrap(b.Context(), req); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((cpuTime(b)-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	})
	// Many readers at once: 8 goroutines per CPU, as under a load of
	// concurrent reads, which share count commits.
	b.Run("keys=10/warm/parallel", func(b *testing.B) {
		b.ReportAllocs()
		if _, err := e.svc.Unwrap(b.Context(), req); err != nil {
			b.Fatal(err)
		}
		b.SetParallelism(8)
		start := cpuTime(b)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := e.svc.Unwrap(b.Context(), req); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64((cpuTime(b)-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	})
}

// cpuTime returns the user and system CPU time this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
