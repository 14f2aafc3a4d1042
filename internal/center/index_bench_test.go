package center

import (
	"path/filepath"
	"testing"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/gotest"
)

// BenchmarkFollowBare1M is the verified follower alone over the
// benchmark access log (gotest.AccessBenchLog): the baseline of
// BenchmarkIndexFollow1M.
func BenchmarkFollowBare1M(b *testing.B) {
	l := gotest.AccessBenchLog(b)
	log := l.Open(b)
	cpu := gotest.CPUSeconds(b)
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
	gotest.ReportRate(b, l.Size, gotest.CPUSeconds(b)-cpu)
}

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
