//go:build unix

package tlog_test

import (
	"bytes"
	"context"
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

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	vclient "github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/tlog"
)

// The benchmarks share one log of benchSize entries of about 100 bytes,
// built once by Tessera and cached under os.TempDir() across runs, since
// building it takes far longer than checking it. Bump benchVersion when the
// way it is built changes.
const (
	benchSize    = 1 << 20
	benchVersion = "v1"
	// benchSizeEnv overrides benchSize, for profiling on a smaller log.
	benchSizeEnv = "VITRINE_BENCH_SIZE"
)

// benchEntry is entry i of the benchmark log: 100 bytes, all different.
func benchEntry(i int) []byte {
	e := fmt.Appendf(nil, "vitrine benchmark entry %010d ", i)
	return append(e, bytes.Repeat([]byte{'.'}, 100-len(e))...)
}

// benchLog is the cached log, with what fsck needs to check it.
type benchLog struct {
	dir      string
	origin   string
	vkey     string
	verifier note.Verifier
	size     uint64
	root     []byte
}

var (
	benchOnce sync.Once
	benchLg   *benchLog
	benchErr  error
)

// openBenchLog returns the cached benchmark log, building it first if need
// be. It skips in -short mode, so that no quick run pays for the build.
func openBenchLog(b *testing.B) *benchLog {
	b.Helper()
	if testing.Short() {
		b.Skip("skipping the benchmark log in short mode")
	}
	size := benchSize
	if s := os.Getenv(benchSizeEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("%s=%q: want a positive entry count", benchSizeEnv, s)
		}
		size = n
	}
	benchOnce.Do(func() { benchLg, benchErr = loadBenchLog(b, size) })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchLg
}

// loadBenchLog opens the log cached for size, or builds it in a scratch
// directory and renames that into place, so that an interrupted build is
// never mistaken for a complete one.
func loadBenchLog(b *testing.B, size int) (*benchLog, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("vitrine-bench-%d-%s", size, benchVersion))
	vkeyPath := filepath.Join(dir, ".vitrine-verifier")
	vkey, err := os.ReadFile(vkeyPath)
	if errors.Is(err, fs.ErrNotExist) {
		b.Logf("building a %d-entry log in %s; later runs reuse it", size, dir)
		scratch, err := os.MkdirTemp(os.TempDir(), filepath.Base(dir)+".build-*")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(scratch)
		l := buildTestLog(b, scratch, benchEntry, size)
		vkey = []byte(l.vkey)
		// The verifier key is the sentinel: written last, renamed with the log.
		if err := os.WriteFile(filepath.Join(scratch, filepath.Base(vkeyPath)), vkey, 0o644); err != nil {
			return nil, err
		}
		if err := os.Rename(scratch, dir); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(string(vkey))
	if err != nil {
		return nil, fmt.Errorf("cached benchmark log %s: %v", dir, err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if err != nil {
		return nil, err
	}
	cp, _, _, err := log.ParseCheckpoint(raw, v.Name(), v)
	if err != nil {
		return nil, fmt.Errorf("cached benchmark log %s: %v", dir, err)
	}
	if cp.Size != uint64(size) {
		return nil, fmt.Errorf("cached benchmark log %s has %d entries, want %d", dir, cp.Size, size)
	}
	l := &benchLog{dir: dir, origin: v.Name(), vkey: string(vkey), verifier: v, size: cp.Size, root: cp.Hash}
	// Warm the page cache, so that neither benchmark pays for reading the
	// log from disk the first time.
	if _, err := tlog.VerifyTree(context.Background(), client.FileFetcher{Root: dir}, l.size, l.root); err != nil {
		return nil, fmt.Errorf("cached benchmark log %s: %v", dir, err)
	}
	return l, nil
}

// BenchmarkVerifyTree1M recomputes the benchmark log with VerifyTree.
// BenchmarkFsck1M does the same work with Tessera's fsck, on the same log,
// with as many workers, as the baseline.
func BenchmarkVerifyTree1M(b *testing.B) {
	l := openBenchLog(b)
	f := client.FileFetcher{Root: l.dir}
	cpu := cpuTime(b)
	for b.Loop() {
		if _, err := tlog.VerifyTree(b.Context(), f, l.size, l.root); err != nil {
			b.Fatal(err)
		}
	}
	reportThroughput(b, l.size, cpuTime(b)-cpu)
}

func BenchmarkFsck1M(b *testing.B) {
	l := openBenchLog(b)
	f := client.FileFetcher{Root: l.dir}
	tl := &testLog{origin: l.origin, verifier: l.verifier}
	cpu := cpuTime(b)
	for b.Loop() {
		if err := runFsck(b.Context(), tl, f); err != nil {
			b.Fatal(err)
		}
	}
	reportThroughput(b, l.size, cpuTime(b)-cpu)
}

// BenchmarkFollow1M hands out every entry of the benchmark log through
// client.Follower, each proven; BenchmarkReadEntries1M reads and parses the
// same bundles with no check at all, the unverified read that the
// outsiders' readers once did after VerifyTree.
func BenchmarkFollow1M(b *testing.B) {
	l := openBenchLog(b)
	none, err := tlog.ParsePolicy([]byte("quorum none\n"))
	if err != nil {
		b.Fatal(err)
	}
	log, err := vclient.NewLogFetcher(client.FileFetcher{Root: l.dir}, l.vkey, none)
	if err != nil {
		b.Fatal(err)
	}
	cpu := cpuTime(b)
	for b.Loop() {
		f, err := vclient.NewFollower(log, nil)
		if err != nil {
			b.Fatal(err)
		}
		var n uint64
		if _, err := f.Update(b.Context(), func(uint64, []byte) error {
			n++
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		if n != l.size {
			b.Fatalf("followed %d entries, want %d", n, l.size)
		}
	}
	reportThroughput(b, l.size, cpuTime(b)-cpu)
}

func BenchmarkReadEntries1M(b *testing.B) {
	l := openBenchLog(b)
	f := client.FileFetcher{Root: l.dir}
	cpu := cpuTime(b)
	for b.Loop() {
		var n uint64
		for bi := uint64(0); bi*256 < l.size; bi++ {
			eb, err := client.GetEntryBundle(b.Context(), f.ReadEntryBundle, bi, l.size)
			if err != nil {
				b.Fatal(err)
			}
			n += uint64(len(eb.Entries))
		}
		if n != l.size {
			b.Fatalf("read %d entries, want %d", n, l.size)
		}
	}
	reportThroughput(b, l.size, cpuTime(b)-cpu)
}

// reportThroughput reports entries per second of wall-clock time and, since
// a shared machine makes that noisy, the CPU time the process spent per
// operation too.
func reportThroughput(b *testing.B, size uint64, cpu float64) {
	b.ReportMetric(float64(size)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(cpu/float64(b.N), "cpu-s/op")
}

// cpuTime returns the user and system CPU seconds this process has used.
func cpuTime(b *testing.B) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
