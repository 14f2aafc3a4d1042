package storetest

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/telemetry"
)

// A Workload makes batches that look like a region's ingest, the same for
// every store's benchmarks: endpoints report files whose popularity
// follows a Zipf law (a few system files everywhere, a long tail seen once),
// 2% of records are detections and 5% are URLs. Each batch comes from one
// of Endpoints endpoints, with a new batch id. It is deterministic for a
// seed and not safe for concurrent use.
type Workload struct {
	// Unique makes every record's hash one never seen before: the worst
	// case for the aggregates, which then grow by a row per record.
	Unique bool

	rng     *rand.Rand
	zipf    *rand.Zipf
	batches int
	next    int
	t       time.Time
}

// Workload sizes.
const (
	Endpoints = 100000
	Hashes    = 1 << 22 // distinct files of the Zipf law
)

var detectionNames = []string{"EICAR-Test-File", "Trojan.GenericKD", "Ransom.Locky", "PUA.Adware", "Worm.Conficker",
	"Exploit.CVE-2026-1234", "Backdoor.Agent", "Phishing.Page"}

// NewWorkload returns a workload whose batches follow from seed.
func NewWorkload(seed uint64) *Workload {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	return &Workload{rng: rng, zipf: rand.NewZipf(rng, 1.1, 1, Hashes-1), t: T0}
}

// Batch returns the next batch, of n records.
func (w *Workload) Batch(n int) *store.Batch {
	w.batches++
	endpoint := fmt.Sprintf("ep-%08x", w.rng.IntN(Endpoints))
	recs := make([]telemetry.Record, n)
	for i := range recs {
		w.t = w.t.Add(time.Millisecond)
		var h string
		if w.Unique {
			w.next++
			h = Hash(fmt.Sprint("unique ", w.next))
		} else {
			h = Hash(fmt.Sprint(w.zipf.Uint64()))
		}
		r := telemetry.Record{
			Time:    w.t,
			Kind:    telemetry.KindFile,
			SHA256:  h,
			Size:    int64(1024 + w.rng.IntN(1<<20)),
			Path:    fmt.Sprintf("C:/Program Files/App%d/bin/file%d.dll", w.rng.IntN(500), w.rng.IntN(1000)),
			Product: "vitrine-agent/1.0.0",
			RuleDB:  42,
		}
		switch p := w.rng.IntN(100); {
		case p < 2:
			r.Kind = telemetry.KindDetection
			r.Detection = detectionNames[w.rng.IntN(len(detectionNames))]
			r.Path = fmt.Sprintf("C:/Users/user%d/Downloads/setup%d.exe", w.rng.IntN(1000), w.rng.IntN(1000))
		case p < 7:
			r.Kind = telemetry.KindURL
			r.URL = fmt.Sprintf("https://site%d.example/download/%d", w.rng.IntN(10000), w.rng.IntN(1000))
			r.Path = ""
		}
		recs[i] = r
	}
	// Sealing the personal halves is the region's work, not the store's,
	// but the benchmarks time it too.
	return Batch(endpoint, fmt.Sprintf("b-%d", w.batches), recs...)
}
