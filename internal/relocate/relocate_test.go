package relocate

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/custody"
	"github.com/vitrine-dev/vitrine/internal/logserver"
	"github.com/vitrine-dev/vitrine/internal/seal"
	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/internal/store/sqlite"
	"github.com/vitrine-dev/vitrine/internal/store/storetest"
	"github.com/vitrine-dev/vitrine/internal/witness"
	"github.com/vitrine-dev/vitrine/residency"
	"github.com/vitrine-dev/vitrine/tlog"
)

// env is a relocation between two regions over real parts: SQLite stores,
// access logs whose checkpoints a witness cosigns over HTTP, and custody.
type env struct {
	regions map[string]Region
	stores  map[string]*sqlite.Store
	paths   map[string]string
	logs    map[string]*logserver.Log
	custody *custody.Service
	mu      sync.Mutex
	policy  *residency.Policy
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	ctx := context.Background()
	e := &env{regions: map[string]Region{}, stores: map[string]*sqlite.Store{}, paths: map[string]string{}, logs: map[string]*logserver.Log{}, policy: residency.Default()}
	var trusted []witness.LogKey
	dirs := map[string]string{}
	for _, r := range []string{"zurich", "moscow"} {
		dirs[r] = tb.TempDir()
		vkey, err := logserver.LoadOrCreateKey(dirs[r], "test/access-"+r)
		if err != nil {
			tb.Fatal(err)
		}
		trusted = append(trusted, witness.LogKey{Origin: "test/access-" + r, VKey: vkey})
	}
	w, err := witness.Open(ctx, witness.Config{Dir: tb.TempDir(), Name: "test/witness", Logs: trusted})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { w.Close() })
	wsrv := httptest.NewServer(w.Handler())
	tb.Cleanup(wsrv.Close)
	policy, err := tlog.SingleWitnessPolicy("supervisor", w.VKey(), wsrv.URL)
	if err != nil {
		tb.Fatal(err)
	}
	var cfgs []custody.RegionConfig
	for _, r := range []string{"zurich", "moscow"} {
		l, err := logserver.Open(ctx, logserver.Config{Dir: dirs[r], Origin: "test/access-" + r, WitnessPolicy: policy, CheckpointInterval: 200 * time.Millisecond})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			l.Close(ctx)
		})
		e.logs[r] = l
		cfgs = append(cfgs, custody.RegionConfig{Name: r, AccessLogVerifier: l.Verifier(), WitnessPolicy: l.Policy()})
		e.paths[r] = filepath.Join(tb.TempDir(), "telemetry.db")
		st, err := sqlite.Open(ctx, e.paths[r])
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { st.Close() })
		e.stores[r] = st
		e.regions[r] = Region{Store: st, Log: l}
	}
	if e.custody, err = custody.Open(custody.Config{Dir: tb.TempDir(), Regions: cfgs}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.custody.Close() })
	return e
}

func (e *env) relocator(tb testing.TB, dir string) *Relocator {
	tb.Helper()
	r, err := Open(Config{
		Dir: dir, Regions: e.regions, Custody: e.custody,
		Policy: func() *residency.Policy { e.mu.Lock(); defer e.mu.Unlock(); return e.policy },
		MovePolicy: func(_ context.Context, country, to string) (uint64, error) {
			e.mu.Lock()
			defer e.mu.Unlock()
			if home, _ := e.policy.RegionFor(country); home == to {
				return e.policy.Version, nil
			}
			next, err := e.policy.Move(country, to)
			if err != nil {
				return 0, err
			}
			e.policy = next
			return next.Version, nil
		},
		Principal: access.Principal{ID: "operator:test", Role: "operator", Location: "CH"},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// load stores n batches of size records of country in region, sealed
// under the region's custody key.
func (e *env) load(tb testing.TB, region, country string, n, size int) {
	tb.Helper()
	pk, _ := e.custody.PublicKey(region)
	w := storetest.NewWorkload(uint64(n))
	var bs []*store.Batch
	for i := range n {
		b := w.Batch(size)
		b.Country, b.BatchID = country, fmt.Sprintf("%s-%d", country, i)
		for j := range b.Records {
			b.Records[j].Path = fmt.Sprintf("C:/Users/u%d/f%d", i, j)
		}
		wrapped, sealed, err := seal.Records(pk, fmt.Sprintf("ep_%d", i%100), b.Records)
		if err != nil {
			tb.Fatal(err)
		}
		b.Sealed = store.Sealed{WrappedKey: wrapped, Records: sealed}
		bs = append(bs, b)
		if len(bs) == 100 || i == n-1 {
			if _, err := e.stores[region].PutBatches(context.Background(), bs); err != nil {
				tb.Fatal(err)
			}
			bs = nil
		}
	}
	// A store folds what it holds in the background; closing folds it
	// all at once, as a store that has been up a while would have.
	path := e.paths[region]
	if err := e.stores[region].Close(); err != nil {
		tb.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	e.stores[region] = st
	e.regions[region] = Region{Store: st, Log: e.logs[region]}
}

func (e *env) run(tb testing.TB, r *Relocator, country, to string) *Job {
	tb.Helper()
	j, err := r.Start(context.Background(), country, to)
	if err != nil {
		tb.Fatal(err)
	}
	r.Wait()
	j, _ = r.Job(j.ID)
	if j.Step != StepDone || j.Error != "" {
		tb.Fatalf("job ended in step %s: %s", j.Step, j.Error)
	}
	return j
}

func TestRelocate(t *testing.T) {
	e := newEnv(t)
	e.load(t, "moscow", "BR", 30, 50)
	e.load(t, "moscow", "AR", 5, 50)
	j := e.run(t, e.relocator(t, t.TempDir()), "BR", "zurich")
	if j.Copied != 1500 || j.Deleted != 1500 || j.Report.SourceDigest != j.Report.DestDigest {
		t.Errorf("job %+v", j)
	}
	ctx := context.Background()
	if left, _ := e.stores["moscow"].Batches(ctx, store.BatchQuery{Country: "BR", Limit: 10}); len(left) != 0 {
		t.Errorf("moscow keeps %d batches of BR", len(left))
	}
	if ar, _ := e.stores["moscow"].Batches(ctx, store.BatchQuery{Country: "AR", Limit: 10}); len(ar) != 5 {
		t.Errorf("moscow has %d batches of AR, want 5", len(ar))
	}
	// Each relocated key now unwraps for zurich, and the seals open
	// under it with their original binding.
	moved, _ := e.stores["zurich"].Batches(ctx, store.BatchQuery{Country: "BR", Limit: 100})
	if len(moved) != 30 {
		t.Fatalf("zurich holds %d batches of BR", len(moved))
	}
	b := moved[7].Batch
	if b.Sealed.KeyID == seal.KeyID(b.Sealed.WrappedKey) {
		t.Error("the relocated key was not rewrapped")
	}
	// Custody counted a rewrap of every key against moscow's log.
	counts, err := e.custody.Counts()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, c := range counts["moscow"] {
		n += c
	}
	if n != 30 {
		t.Errorf("custody counted %d rewraps in moscow, want 30", n)
	}
}

// TestRelocateResumes stops the relocator at many points (its context
// cancelled, as when the platform stops) and resumes it from its job file
// each time; the end state is the same as without stops.
func TestRelocateResumes(t *testing.T) {
	e := newEnv(t)
	e.load(t, "moscow", "BR", 60, 20)
	dir := t.TempDir()
	r := e.relocator(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	j, err := r.Start(ctx, "BR", "zurich")
	if err != nil {
		t.Fatal(err)
	}
	for stop := 0; ; stop++ {
		// Ever longer runs between stops, so that the job gets done
		// however slow the machine (or the race detector) is.
		time.Sleep(time.Duration(50+stop*stop*20) * time.Millisecond)
		cancel()
		r.Wait()
		got, _ := r.Job(j.ID)
		if got.Step == StepDone {
			break
		}
		if got.Error != "" {
			t.Fatalf("job failed: %s", got.Error)
		}
		r = e.relocator(t, dir)
		ctx, cancel = context.WithCancel(context.Background())
		r.Resume(ctx)
	}
	cancel()
	got, _ := r.Job(j.ID)
	if got.Report == nil || got.Report.SourceRecords != 1200 || got.Report.SourceDigest != got.Report.DestDigest || got.Deleted != 1200 {
		t.Fatalf("job %+v", got)
	}
	if left, _ := e.stores["moscow"].Batches(context.Background(), store.BatchQuery{Country: "BR", Limit: 10}); len(left) != 0 {
		t.Errorf("moscow keeps %d batches", len(left))
	}
	if moved, _ := e.stores["zurich"].Batches(context.Background(), store.BatchQuery{Country: "BR", Limit: 100}); len(moved) != 60 {
		t.Errorf("zurich holds %d batches, want 60", len(moved))
	}
}

// BenchmarkRelocate relocates 200k records (400 batches of 500) per
// iteration and reports records/s.
func BenchmarkRelocate(b *testing.B) {
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		e := newEnv(b)
		e.load(b, "moscow", "BR", 400, 500)
		r := e.relocator(b, b.TempDir())
		b.StartTimer()
		start := time.Now()
		j := e.run(b, r, "BR", "zurich")
		b.ReportMetric(float64(j.Copied)/time.Since(start).Seconds(), "records/s")
		for _, s := range []string{StepCopy, StepVerify, StepSummary} {
			b.ReportMetric(time.Duration(j.Took[s]).Seconds(), s+"-s")
		}
	}
}
