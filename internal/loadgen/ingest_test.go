package loadgen

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/telemetry"
)

func testWorkload() *Workload {
	return &Workload{Seed: 7, Start: time.Now().Add(-time.Hour).Truncate(time.Millisecond)}
}

// TestBatchParses checks that what the load generator sends is what the
// region's parser reads back, record for record, and that the workload
// looks as its documentation says.
func TestBatchParses(t *testing.T) {
	w := testWorkload()
	var bytes, records int
	distinct := map[string]bool{}
	kinds := map[string]int{}
	for e := range 4 {
		for k := range 5 {
			recs := w.Batch(e, k, 500)
			body := AppendBatch(nil, "b-1", recs)
			got, err := telemetry.ParseBatch(body)
			if err != nil {
				t.Fatalf("endpoint %d batch %d: %v", e, k, err)
			}
			if got.BatchID != "b-1" || len(got.Records) != len(recs) {
				t.Fatalf("parsed batch %q with %d records, want b-1 with %d", got.BatchID, len(got.Records), len(recs))
			}
			for i := range recs {
				want := recs[i]
				want.Time = want.Time.UTC()
				if got.Records[i] != want {
					t.Fatalf("record %d: parsed %+v, want %+v", i, got.Records[i], want)
				}
				distinct[recs[i].SHA256] = true
				kinds[recs[i].Kind]++
			}
			bytes += len(body)
			records += len(recs)
		}
	}
	if per := bytes / records; per < 200 || per > 300 {
		t.Errorf("%d bytes per record, want about 250", per)
	}
	if f := float64(len(distinct)) / float64(records); f < 0.3 || f > 0.9 {
		t.Errorf("%.2f distinct hashes per record, want many distinct and some repeated", f)
	}
	for _, k := range []string{telemetry.KindFile, telemetry.KindURL, telemetry.KindDetection} {
		if kinds[k] == 0 {
			t.Errorf("no record of kind %s in %d records", k, records)
		}
	}
}

func TestBatchDeterministic(t *testing.T) {
	w := testWorkload()
	a, b := w.Batch(3, 9, 50), w.Batch(3, 9, 50)
	if !slices.Equal(a, b) {
		t.Error("the same batch of the same endpoint differs between calls")
	}
	if c := w.Batch(3, 10, 50); slices.Equal(a, c) {
		t.Error("consecutive batches are equal")
	}
	if c := w.Batch(4, 9, 50); slices.Equal(a, c) {
		t.Error("two endpoints' batches are equal")
	}
}

func TestRawInsert(t *testing.T) {
	w := testWorkload()
	eps := []Endpoint{{ID: "ep-a", Country: "DE"}, {ID: "ep-b", Country: "US"}}
	batches := []BatchRef{{0, 0}, {1, 0}, {0, 1}}
	path := filepath.Join(t.TempDir(), "raw.db")
	res, err := RawInsert(context.Background(), path, w, eps, batches, 100)
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 300 || res.Elapsed <= 0 {
		t.Errorf("RawInsert = %+v, want 300 records", res)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for table, want := range map[string]int{"batches": 3, "records": 300, "personal": 300} {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("%s holds %d rows, want %d", table, n, want)
		}
	}
	var sha string
	if err := db.QueryRow("SELECT sha256 FROM records WHERE id = 101").Scan(&sha); err != nil {
		t.Fatal(err)
	}
	if want := w.Batch(1, 0, 100)[0].SHA256; sha != want {
		t.Errorf("record 101 has hash %s, want the first of endpoint 1's batch 0, %s", sha, want)
	}
	if _, err := RawInsert(context.Background(), path, w, eps, batches, 100); err == nil {
		t.Error("RawInsert into an existing file succeeded")
	}
}

// TestRawInsertPostgres runs the PostgreSQL baseline against the test
// server (VITRINE_TEST_POSTGRES, or a local one), as the store's tests do.
func TestRawInsertPostgres(t *testing.T) {
	dsn := os.Getenv("VITRINE_TEST_POSTGRES")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Skipf("no PostgreSQL server (set VITRINE_TEST_POSTGRES; .ci/run starts one): %v", err)
	}
	defer conn.Close(ctx)
	w := testWorkload()
	eps := []Endpoint{{ID: "ep-a", Country: "DE"}, {ID: "ep-b", Country: "US"}}
	schema := fmt.Sprintf("vitrine_loadgen_test_%d", time.Now().UnixNano())
	for range 2 { // the second run proves the first dropped its schema
		res, err := RawInsertPostgres(ctx, dsn, schema, w, eps, []BatchRef{{0, 0}, {1, 0}, {0, 1}}, 100)
		if err != nil {
			t.Fatal(err)
		}
		if res.Records != 300 {
			t.Errorf("RawInsertPostgres stored %d records, want 300", res.Records)
		}
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", schema).Scan(&n); err != nil || n != 0 {
		t.Errorf("schema %s left behind (%d, %v)", schema, n, err)
	}
}

func TestReadProc(t *testing.T) {
	ps, err := ReadProc(os.Getpid())
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	if ps.RSS <= 0 || ps.HWM < ps.RSS {
		t.Errorf("ReadProc = %+v, want 0 < RSS <= HWM", ps)
	}
}

// TestAgainstPlatform drives a real platform with each generator: it
// ingests, looks verdicts up both ways, and measures propagation.
func TestAgainstPlatform(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a platform")
	}
	ctx := context.Background()
	p, err := platform.Start(ctx, platform.Config{Data: t.TempDir(), Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := p.Close(cctx); err != nil {
			t.Errorf("closing the platform: %v", err)
		}
	}()
	hc := NewClient(2)
	var eps []Endpoint
	for _, c := range []string{"DE", "US", "RU"} {
		e, err := Register(ctx, hc, p.URL(), p.OperatorToken(), c)
		if err != nil {
			t.Fatal(err)
		}
		eps = append(eps, e)
	}
	w := testWorkload()
	res, err := Ingest(ctx, IngestConfig{Endpoints: eps, Clients: 2, BatchSize: 100, Records: 1000, Workload: w, RunID: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 1000 || res.Errors != 0 || len(res.Sent) != 10 {
		t.Fatalf("Ingest = %d records, %d errors (%s), %d batches; want 1000, 0, 10", res.Records, res.Errors, res.FirstError, len(res.Sent))
	}
	var inZurich int64
	for _, b := range res.Sent {
		if eps[b.Endpoint].Region == "zurich" {
			inZurich += 100
		}
	}
	if n, err := p.Region("zurich").Store().CountRecords(ctx); err != nil || n != inZurich {
		t.Errorf("zurich holds %d records (%v), want %d", n, err, inZurich)
	}

	hashes := append(w.LookupHashes(150), w.Batch(0, 0, 1)[0].SHA256)
	for _, batch := range []int{1, 64} {
		lr, err := Lookup(ctx, LookupConfig{Region: eps[0].RegionURL(), Token: eps[0].Token, Clients: 2, Batch: batch, Hashes: hashes})
		if err != nil || lr.Errors != 0 || lr.Hashes != len(hashes) {
			t.Fatalf("Lookup batch %d = %+v, %v", batch, lr, err)
		}
		if lr.Verdicts["unknown"] == len(hashes) {
			t.Errorf("Lookup batch %d: every verdict unknown, though %s was reported", batch, hashes[len(hashes)-1])
		}
	}

	pr, err := Propagation(ctx, PropagationConfig{From: eps[2], To: eps[0], Samples: 3})
	if err != nil || pr.Timeouts != 0 || len(pr.Remote) != 3 {
		t.Fatalf("Propagation = %+v, %v", pr, err)
	}
	if pr.Remote[0] < pr.Ack[0] {
		t.Errorf("a verdict in zurich (%v) before moscow acknowledged the report (%v)", pr.Remote[0], pr.Ack[0])
	}
}
