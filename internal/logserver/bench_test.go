//go:build unix

package logserver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/witness"
	"github.com/vitrine-dev/vitrine/tlog"
)

// benchEntries makes a tree of three tile levels.
const benchEntries = 70_000

// openWitnessedLog opens a log whose checkpoints a real witness cosigns over
// HTTP, as the access logs are, and appends n entries to it.
func openWitnessedLog(b *testing.B, n int) *Log {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	const origin = "example.com/bench"
	vkey, err := LoadOrCreateKey(dir, origin)
	if err != nil {
		b.Fatal(err)
	}
	w, err := witness.Open(ctx, witness.Config{Dir: b.TempDir(), Name: "example.com/witness", Logs: []witness.LogKey{{Origin: origin, VKey: vkey}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.Close() })
	wsrv := httptest.NewServer(w.Handler())
	b.Cleanup(wsrv.Close)
	policy, err := tlog.SingleWitnessPolicy("w", w.VKey(), wsrv.URL)
	if err != nil {
		b.Fatal(err)
	}
	l, err := Open(ctx, Config{Dir: dir, Origin: origin, WitnessPolicy: policy, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		l.Close(ctx)
	})
	const workers = 256
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if _, err := l.Append(ctx, fmt.Appendf(nil, "entry %d", i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := l.AwaitWitnessed(wctx, uint64(n-1)); err != nil {
		b.Fatal(err)
	}
	return l
}

// BenchmarkProve proves entries from many goroutines at once, as gateways
// do for their reads: the newest entries of a checkpoint that stays the
// same, entries anywhere in the tree, and entries each goroutine has just
// appended (so that the checkpoint moves on as they wait; the CPU of the
// appends is counted too). cpu-ns/op is the CPU time of the whole process
// (log, witness) per operation.
func BenchmarkProve(b *testing.B) {
	l := openWitnessedLog(b, benchEntries)
	run := func(b *testing.B, parallelism int, op func(r *rand.Rand) error) {
		b.ReportAllocs()
		b.SetParallelism(parallelism)
		start := cpuTime(b)
		b.RunParallel(func(pb *testing.PB) {
			r := rand.New(rand.NewPCG(rand.Uint64(), 0))
			for pb.Next() {
				if err := op(r); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64((cpuTime(b)-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
	b.Run("recent", func(b *testing.B) {
		run(b, 8, func(r *rand.Rand) error {
			_, err := l.Prove(b.Context(), benchEntries-1-r.Uint64N(1024))
			return err
		})
	})
	b.Run("anywhere", func(b *testing.B) {
		run(b, 8, func(r *rand.Rand) error {
			_, err := l.Prove(b.Context(), r.Uint64N(benchEntries))
			return err
		})
	})
	b.Run("appended", func(b *testing.B) {
		run(b, 64, func(r *rand.Rand) error {
			i, err := l.Append(b.Context(), fmt.Appendf(nil, "access %d", r.Uint64()))
			if err != nil {
				return err
			}
			_, err = l.Prove(b.Context(), i)
			return err
		})
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
