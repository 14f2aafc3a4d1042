package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/gateway"
	"github.com/vitrine-dev/vitrine/internal/loadgen"
	"github.com/vitrine-dev/vitrine/internal/relocate"
	"github.com/vitrine-dev/vitrine/telemetry"
)

// TestRelocationCrashSafety relocates the records of Brazil (1M by
// default) from moscow to zurich on `vitrine up`, killing the process with
// SIGKILL at random moments and restarting it, while Brazilian endpoints
// keep reporting through the front door. At the end: nothing is lost
// (every record is in zurich, readable through the gateway with its
// personal fields), nothing is left in moscow, both ends' digests are
// equal, the other countries are untouched, and `vitrine relocate verify`
// accounts for the relocation from the logs alone.
func TestRelocationCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test builds and kills processes; skipped in -short mode")
	}
	records := int64(1_000_000)
	if s := os.Getenv("VITRINE_RELOCATE_RECORDS"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		records = n
	}
	const batchSize = 500
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	data, addr := t.TempDir(), freeAddr(t)
	var mu sync.Mutex // guards p
	p := startUp(t, bin, data, addr)
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		if p != nil {
			p.kill()
		}
	}()
	opTok, err := os.ReadFile(filepath.Join(data, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	operator := strings.TrimSpace(string(opTok))
	ctx := t.Context()
	hc := loadgen.NewClient(16)

	register := func(country string, n int) []loadgen.Endpoint {
		var eps []loadgen.Endpoint
		for range n {
			e, err := loadgen.Register(ctx, hc, p.base, operator, country)
			if err != nil {
				t.Fatal(err)
			}
			eps = append(eps, e)
		}
		return eps
	}
	br, ar := register("BR", 100), register("AR", 4)
	w := &loadgen.Workload{Seed: 42, Hashes: 1 << 16, Start: time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)}
	loaded, err := loadgen.Ingest(ctx, loadgen.IngestConfig{Endpoints: br, Clients: 8, BatchSize: batchSize, Records: records, Workload: w, RunID: "br"})
	if err != nil || loaded.Records != records {
		t.Fatalf("loading Brazil: %d records, %v", loaded.Records, err)
	}
	other, err := loadgen.Ingest(ctx, loadgen.IngestConfig{Endpoints: ar, Clients: 2, BatchSize: batchSize, Records: 4 * batchSize, Workload: w, RunID: "ar"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded %d records of BR and %d of AR into moscow", loaded.Records, other.Records)

	var job relocate.Job
	body, _ := json.Marshal(map[string]string{"country": "BR", "to": "zurich"})
	if err := call(ctx, "POST", p.base+"/v1/relocations", operator, body, &job); err != nil {
		t.Fatal(err)
	}

	// Brazilian endpoints go on reporting during the move, through the
	// front door, each batch retried until it is acknowledged.
	lateDone := make(chan struct{})
	const lateBatches = 40
	var lateErrs []string
	base := p.base // the same across restarts; p itself is replaced
	go func() {
		defer close(lateDone)
		for k := range lateBatches {
			ep := br[k%len(br)]
			b := loadgen.AppendBatch(nil, fmt.Sprintf("late-%d", k), w.Batch(1000+k, 0, 10))
			for try := 0; ; try++ {
				req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/telemetry", bytes.NewReader(b))
				req.Header.Set("Authorization", "Bearer "+ep.Token)
				resp, err := hc.Do(req)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						break
					}
					err = fmt.Errorf("%s", resp.Status)
				}
				if try == 600 || ctx.Err() != nil {
					lateErrs = append(lateErrs, fmt.Sprintf("late batch %d: %v", k, err))
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	// Kill in every step of the relocation, at a random moment of it,
	// until it is done: in the copy before and after its first chunk, in
	// the verification, and in the deletion.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	status := func() (relocate.Job, error) {
		var j relocate.Job
		err := call(ctx, "GET", p.base+"/v1/relocations/"+job.ID, operator, nil, &j)
		return j, err
	}
	order := map[string]int{relocate.StepPolicy: 0, relocate.StepCopy: 1, relocate.StepVerify: 2, relocate.StepSummary: 3, relocate.StepDone: 4}
	deleted := func(j relocate.Job) int {
		n := 0
		for _, c := range j.Chunks {
			if c.Deleted {
				n++
			}
		}
		return n
	}
	// The copy step copies, verifies and deletes chunk by chunk; kill it
	// before its first chunk, once the source has deleted some, and near
	// its end, then after it.
	targets := []struct {
		name string
		at   func(j relocate.Job) bool
		past func(j relocate.Job) bool
	}{
		{"copy, first chunk", func(j relocate.Job) bool { return j.Step == relocate.StepCopy && j.Copied == 0 },
			func(j relocate.Job) bool { return order[j.Step] > 1 || j.Copied > 0 }},
		{"copy, some chunks deleted", func(j relocate.Job) bool { return j.Step == relocate.StepCopy && deleted(j) > 0 },
			func(j relocate.Job) bool { return order[j.Step] > 1 || j.Copied > records*2/3 }},
		{"copy, near the end", func(j relocate.Job) bool { return j.Step == relocate.StepCopy && j.Copied > records*2/3 },
			func(j relocate.Job) bool { return order[j.Step] > 1 }},
		{"after the copy", func(j relocate.Job) bool { return order[j.Step] >= 2 && order[j.Step] < 4 },
			func(j relocate.Job) bool { return order[j.Step] >= 4 }},
	}
	var killed []string
	deadline := time.Now().Add(15 * time.Minute)
	for {
		j, err := status()
		if err == nil && (j.Step == relocate.StepDone || j.Error != "") {
			if j.Error != "" {
				t.Fatalf("relocation stopped: %s", j.Error)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("relocation not done after 15 minutes: %+v %v", j, err)
		}
		for err == nil && len(targets) > 0 && targets[0].past(j) {
			t.Logf("the relocation passed %q before a kill", targets[0].name)
			targets = targets[1:]
		}
		if err == nil && len(targets) > 0 && targets[0].at(j) {
			time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
			mu.Lock()
			p.kill()
			killed = append(killed, fmt.Sprintf("%s (%d copied, cursor %d)", targets[0].name, j.Copied, j.Cursor))
			p = startUp(t, bin, data, addr)
			mu.Unlock()
			targets = targets[1:]
			continue
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("killed during: %s", strings.Join(killed, "; "))
	if len(killed) < 3 {
		t.Errorf("only %d kills landed in the relocation (%v); the test did not exercise its steps", len(killed), killed)
	}
	<-lateDone
	if len(lateErrs) > 0 {
		t.Fatal(lateErrs)
	}
	j, err := status()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("relocation done:\n%s", relocate.Describe(&j))
	// Late reports that reached moscow before the policy switched were
	// relocated with the rest.
	rep := j.Report
	late := rep.SourceRecords - records
	if rep == nil || late < 0 || late > lateBatches*10 || late%10 != 0 || rep.DestRecords != rep.SourceRecords || rep.SourceDigest != rep.DestDigest || j.Deleted != rep.SourceRecords {
		t.Fatalf("report %+v, deleted %d; want %d records (and some late batches) at both ends with equal digests", rep, j.Deleted, records)
	}

	// The logs alone account for it.
	out, err := exec.Command(bin, "relocate", "verify", "--url", p.base, "--job", j.ID).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("OK")) {
		t.Fatalf("relocate verify: %v\n%s", err, out)
	}

	// Through the gateway, zurich reads Brazilian records with their
	// personal fields: the keys were rewrapped, the seals are intact.
	var created struct{ Token string }
	if err := call(ctx, "POST", p.base+"/v1/principals", operator,
		[]byte(`{"id":"analyst:reloc","role":"analyst","location":"CH","regions":["zurich","moscow"]}`), &created); err != nil {
		t.Fatal(err)
	}
	seqs := map[int][]int{}
	for _, b := range loaded.Sent {
		seqs[b.Endpoint] = append(seqs[b.Endpoint], b.Seq)
	}
	for _, e := range []int{lateBatches, 77, 99} { // endpoints without late batches
		var want []telemetry.Record
		s := seqs[e]
		slices.Sort(s)
		for _, k := range s {
			want = append(want, w.Batch(e, k, batchSize)...)
		}
		if len(want) > gateway.MaxLimit {
			want = want[:gateway.MaxLimit]
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", p.base+"/regions/zurich/v1/records?limit=1000&endpoint="+br[e].ID, nil)
		req.Header.Set("Authorization", "Bearer "+created.Token)
		req.Header.Set(access.Header, "SUPERVISOR_REVIEW; relocation check")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var ans gateway.Answer
		err = json.NewDecoder(resp.Body).Decode(&ans)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || len(ans.Records) != len(want) {
			t.Fatalf("reading endpoint %d at zurich: %d, %d records (want %d), %v", e, resp.StatusCode, len(ans.Records), len(want), err)
		}
		for i, g := range ans.Records {
			wr := want[i]
			if g.Endpoint != br[e].ID || g.SHA256 != wr.SHA256 || g.Path != wr.Path || g.URL != wr.URL || !g.Time.Equal(wr.Time) {
				t.Fatalf("endpoint %d record %d at zurich = %+v, want %+v", e, i, g.Record, wr)
			}
		}
	}

	// With the platform down, the stores themselves: nothing of Brazil in
	// moscow, all of it (and the late reports) in zurich, Argentina as it
	// was.
	mu.Lock()
	stopUpCleanly(t, p)
	p = nil
	mu.Unlock()
	count := func(region, query string) int64 {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(data, "regions", region, "telemetry.db")+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n int64
		if err := db.QueryRow(query).Scan(&n); err != nil {
			t.Fatalf("%s: %s: %v", region, query, err)
		}
		return n
	}
	const brRecords = `SELECT count(*) FROM records r JOIN batches b ON b.pk = r.batch_pk WHERE b.country = 'BR'`
	if n := count("moscow", `SELECT count(*) FROM batches WHERE country = 'BR'`); n != 0 {
		t.Errorf("moscow still holds %d batches of BR", n)
	}
	if n := count("moscow", brRecords); n != 0 {
		t.Errorf("moscow still holds %d records of BR", n)
	}
	if n, want := count("moscow", `SELECT count(*) FROM records`), other.Records; n != want {
		t.Errorf("moscow holds %d records, want the %d of AR", n, want)
	}
	if n, want := count("moscow", `SELECT count(*) FROM personal`), other.Records; n != want {
		t.Errorf("moscow holds %d sealed halves, want the %d of AR", n, want)
	}
	if n, want := count("zurich", brRecords), records+lateBatches*10; n != want {
		t.Errorf("zurich holds %d records of BR, want %d relocated and %d reported during the move", n, records, lateBatches*10)
	}
	if n, want := count("zurich", `SELECT count(*) FROM personal p JOIN records r ON r.id = p.record_id JOIN batches b ON b.pk = r.batch_pk WHERE b.country = 'BR'`), records+lateBatches*10; n != want {
		t.Errorf("zurich holds %d sealed halves of BR, want %d", n, want)
	}
}
