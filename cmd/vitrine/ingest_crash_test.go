package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/keys"
)

// crashEndpoint is an endpoint registered for the ingest crash test.
type crashEndpoint struct {
	Country   string `json:"-"`
	ID        string `json:"id"`
	Token     string `json:"token"`
	Region    string `json:"region"`
	IngestURL string `json:"ingest_url"`
}

// crashRecord is what a record of a sent batch must be in the store.
type crashRecord struct {
	batch     *crashBatch
	sha256    string
	path      string
	detection string
}

// crashBatch is a batch the test sent, with what it knows of its fate.
type crashBatch struct {
	id   string
	ep   *crashEndpoint
	body []byte
	recs []crashRecord

	acked     bool // a 200 arrived: it must be stored, once
	uncertain bool // sent, but no answer: retried with the same id
	stored    bool // found in the store at the last check (uncertain batches)
	retries   int
}

const (
	crashBatchRecords = 50
	crashDetectEvery  = 10 // every 10th record is a detection
)

// TestIngestCrashSafety kills `vitrine up` with SIGKILL at random moments
// while endpoints of both regions send batches concurrently. A batch
// answered 200 is acknowledged; one whose answer the kill cut off is
// retried with the same batch id after the restart. After every kill the
// test reads both regions' SQLite stores directly and checks that every
// acknowledged batch is there exactly once with exactly its records, only
// in its home region, and that a retry answers duplicate:true exactly when
// the batch had been stored before the kill. At the end, after a clean
// shutdown has folded everything, each record counts once in the
// aggregates.
func TestIngestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test builds and kills processes; skipped in -short mode")
	}
	iterations := 30
	if s := os.Getenv("VITRINE_INGEST_CRASH_ITERATIONS"); s != "" {
		var err error
		if iterations, err = strconv.Atoi(s); err != nil {
			t.Fatalf("VITRINE_INGEST_CRASH_ITERATIONS: %v", err)
		}
	}
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	addr := freeAddr(t)
	rng := rand.New(rand.NewPCG(3, 4)) // deterministic schedule of kill moments
	recTime := time.Now().UTC().Add(-time.Hour).Truncate(time.Second).Format(time.RFC3339)

	p := startUp(t, bin, data, addr)
	t.Cleanup(func() { p.kill() }) // the running one, if the test stops early; a no-op otherwise
	tok, err := os.ReadFile(filepath.Join(data, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	home := map[string]string{"DE": "zurich", "US": "zurich", "RU": "moscow", "BR": "moscow"}
	var eps []*crashEndpoint
	for _, c := range []string{"DE", "US", "RU", "BR"} {
		ep := registerCrashEndpoint(t, p.base, strings.TrimSpace(string(tok)), c)
		if ep.Region != home[c] {
			t.Fatalf("%s registered in %s, want %s", c, ep.Region, home[c])
		}
		eps = append(eps, ep)
	}

	var (
		mu      sync.Mutex
		batches = map[string]*crashBatch{} // by batch id, across all runs
		retryQ  []*crashBatch              // uncertain batches not being retried
		nextID  int
		acks    = make(chan struct{}, 1) // an acknowledgement arrived
		killing atomic.Bool              // the kill is due: requests may fail
		stats   struct{ acked, retried, retriedDup, retriedNew int }
	)
	newBatch := func(ep *crashEndpoint) *crashBatch {
		mu.Lock()
		n := nextID
		nextID++
		mu.Unlock()
		b := &crashBatch{id: fmt.Sprintf("crash-%s-%d", ep.Country, n), ep: ep}
		var body bytes.Buffer
		body.WriteString(`{"batch_id":"` + b.id + `","records":[`)
		for i := 0; i < crashBatchRecords; i++ {
			sum := sha256.Sum256([]byte(b.id + "#" + strconv.Itoa(i)))
			r := crashRecord{batch: b, sha256: hex.EncodeToString(sum[:]), path: "C:/crash/" + b.id + "/" + strconv.Itoa(i) + ".exe"}
			kind := "file"
			if i%crashDetectEvery == 0 {
				kind, r.detection = "detection", "Crash.Test."+strconv.Itoa(i)
			}
			if i > 0 {
				body.WriteByte(',')
			}
			fmt.Fprintf(&body, `{"time":%q,"kind":%q,"sha256":%q,"size":%d,"detection":%q,"url":"","path":%q,"product":"vitrine-agent/1.0.0","ruledb":42}`,
				recTime, kind, r.sha256, 1000+i, r.detection, r.path)
			b.recs = append(b.recs, r)
		}
		body.WriteString(`]}`)
		b.body = body.Bytes()
		mu.Lock()
		batches[b.id] = b
		mu.Unlock()
		return b
	}
	// send sends b once and records the outcome. It reports false when the
	// server did not answer, which is expected only around a kill.
	send := func(ctx context.Context, hc *http.Client, b *crashBatch) bool {
		retry := b.uncertain
		code, ans, err := postBatch(ctx, hc, b.ep.IngestURL, b.ep.Token, b.body)
		mu.Lock()
		defer mu.Unlock()
		if err != nil || code == http.StatusServiceUnavailable {
			if !killing.Load() {
				t.Errorf("batch %s (retry %v): no answer while the server was up: %d %v %s", b.id, retry, code, err, ans.raw)
			}
			b.uncertain = true
			retryQ = append(retryQ, b)
			return false
		}
		if code != http.StatusOK {
			t.Errorf("batch %s (retry %v): %d %s", b.id, retry, code, ans.raw)
			return true
		}
		if ans.BatchID != b.id || ans.Records != len(b.recs) {
			t.Errorf("batch %s: answer %s names another batch or count", b.id, ans.raw)
		}
		switch {
		case !retry && ans.Duplicate:
			t.Errorf("batch %s sent for the first time was answered duplicate: %s", b.id, ans.raw)
		case retry && ans.Duplicate != b.stored:
			// Both ways are a server bug: duplicate:true for a batch
			// that was not stored means it is lost; duplicate:false for
			// one that was means it is stored again.
			t.Errorf("retry of batch %s: answered duplicate:%v, but the batch was %sin the store after the kill",
				b.id, ans.Duplicate, map[bool]string{false: "not ", true: ""}[b.stored])
		}
		if retry {
			if ans.Duplicate {
				stats.retriedDup++
			} else {
				stats.retriedNew++
			}
		} else {
			stats.acked++
		}
		b.acked, b.uncertain = true, false
		select {
		case acks <- struct{}{}:
		default:
		}
		return true
	}
	takeRetry := func() *crashBatch {
		mu.Lock()
		defer mu.Unlock()
		if len(retryQ) == 0 {
			return nil
		}
		b := retryQ[len(retryQ)-1]
		retryQ = retryQ[:len(retryQ)-1]
		b.retries++
		stats.retried++
		return b
	}

	for it := 0; it < iterations; it++ {
		if it > 0 {
			p = startUp(t, bin, data, addr)
		}
		tr := &http.Transport{MaxIdleConnsPerHost: 16}
		hc := &http.Client{Transport: tr, Timeout: 20 * time.Second}
		ctx, cancel := context.WithCancel(context.Background())
		killing.Store(false)
		select {
		case <-acks: // of the last round
		default:
		}
		var wg sync.WaitGroup
		for _, ep := range eps {
			for c := 0; c < 2; c++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for !killing.Load() {
						// Retries first, as an agent would send its
						// spool before new reports; any goroutine takes
						// any endpoint's retry, as each carries its own
						// token and URL.
						b := takeRetry()
						if b == nil {
							b = newBatch(ep)
						}
						send(ctx, hc, b)
					}
				}()
			}
		}
		// Kill at a random moment once ingest is under way: until the
		// first acknowledgement after a restart, the server may be busy
		// exchanging aggregates, and a round could end before any batch
		// is stored.
		select {
		case <-acks:
		case <-time.After(5 * time.Second):
		}
		time.Sleep(time.Duration(rng.IntN(250)) * time.Millisecond)
		killing.Store(true)
		p.kill()
		cancel()
		wg.Wait()
		tr.CloseIdleConnections()

		mu.Lock()
		checkIngestStores(t, fmt.Sprintf("kill %d", it+1), data, eps, batches, it%10 == 9, false)
		if it%10 == 0 {
			t.Logf("kill %d: %d batches sent, %d acknowledged first time, %d retries answered duplicate, %d new",
				it+1, len(batches), stats.acked, stats.retriedDup, stats.retriedNew)
		}
		mu.Unlock()
		if t.Failed() {
			t.FailNow()
		}
	}

	// A last start: send what is still uncertain, then stop cleanly, so
	// that the store folds everything into the aggregates.
	p = startUp(t, bin, data, addr)
	killing.Store(false)
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 20 * time.Second}
	for b := takeRetry(); b != nil; b = takeRetry() {
		if !send(context.Background(), hc, b) {
			p.kill()
			t.Fatalf("retry of batch %s after the last restart: no answer\n%s", b.id, p.out.String())
		}
	}
	stopUpCleanly(t, p)
	mu.Lock()
	defer mu.Unlock()
	checkIngestStores(t, "after clean shutdown", data, eps, batches, true, true)
	t.Logf("%d kills: %d batches (%d records); %d acknowledged first time, %d after retries: %d answered duplicate (stored before the kill), %d new; %d retries in all",
		iterations, len(batches), len(batches)*crashBatchRecords, stats.acked, stats.retriedDup+stats.retriedNew, stats.retriedDup, stats.retriedNew, stats.retried)
}

func registerCrashEndpoint(t *testing.T, base, operatorToken, country string) *crashEndpoint {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/v1/endpoints", strings.NewReader(`{"country":"`+country+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+operatorToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("registering an endpoint in %s: %s %s", country, resp.Status, body)
	}
	ep := &crashEndpoint{Country: country}
	if err := json.Unmarshal(body, ep); err != nil {
		t.Fatal(err)
	}
	return ep
}

type ingestAnswer struct {
	BatchID   string `json:"batch_id"`
	Records   int    `json:"records"`
	Duplicate bool   `json:"duplicate"`
	raw       []byte
}

func postBatch(ctx context.Context, hc *http.Client, u, token string, body []byte) (int, ingestAnswer, error) {
	var ans ingestAnswer
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, ans, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, ans, err
	}
	defer resp.Body.Close()
	if ans.raw, err = io.ReadAll(resp.Body); err != nil {
		return 0, ans, err
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(ans.raw, &ans); err != nil {
			return 0, ans, fmt.Errorf("answer %q: %w", ans.raw, err)
		}
	}
	return resp.StatusCode, ans, nil
}

// stopUpCleanly stops p with SIGTERM and waits for it to exit.
func stopUpCleanly(t *testing.T, p *upProcess) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("vitrine up did not stop cleanly: %v\n%s", err, p.out.String())
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
		t.Fatalf("vitrine up did not stop within 30s of SIGTERM:\n%s", p.out.String())
	}
}

// checkIngestStores reads every region's SQLite store directly, with the
// server down, and checks it against what the test sent: every batch in a
// store was sent by one of that region's endpoints and is in no other
// store, the store holds as many records, and personal rows, as its batches
// were sent with, and every acknowledged batch is there. It sets stored on every uncertain batch. With full, it
// also compares every record's threat half with what was sent, and checks
// that its personal half is there, sealed;
// with folded (which needs full), the aggregates must count each record
// exactly once. The caller holds the lock on batches.
func checkIngestStores(t *testing.T, when, data string, eps []*crashEndpoint, batches map[string]*crashBatch, full, folded bool) {
	t.Helper()
	var bySHA map[string]*crashRecord
	if full {
		bySHA = make(map[string]*crashRecord, len(batches)*crashBatchRecords)
		for _, b := range batches {
			for i := range b.recs {
				bySHA[b.recs[i].sha256] = &b.recs[i]
			}
		}
	}
	present := map[string]string{} // batch id -> region
	seenRec := map[string]bool{}   // sha256 -> seen
	recsOf := map[string]int{}     // batch id -> records found
	pkey, err := keys.LoadOrCreateToken(filepath.Join(data, "pseudonym.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, region := range []string{"zurich", "moscow"} {
		home := map[string]bool{} // pseudonyms of the region's endpoints
		for _, ep := range eps {
			if ep.Region == region {
				home[endpoint.Pseudonym([]byte(pkey), ep.ID)] = true
			}
		}
		path := filepath.Join(data, "regions", region, "telemetry.db")
		// Read-only, so that closing does not checkpoint the WAL: the
		// next start must recover the database as the kill left it.
		db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		func() {
			defer db.Close()
			pks := map[int64]*crashBatch{}
			want := 0 // records of the batches stored here
			rows, err := db.Query(`SELECT pk, pseudonym, batch_id, count FROM batches`)
			if err != nil {
				t.Fatalf("%s: %s store: %v", when, region, err)
			}
			for rows.Next() {
				var pk, count int64
				var ps, id string
				if err := rows.Scan(&pk, &ps, &id, &count); err != nil {
					t.Fatal(err)
				}
				b := batches[id]
				switch {
				case b == nil:
					t.Errorf("%s: %s store holds batch %q, which was never sent", when, region, id)
					continue
				case present[id] != "":
					t.Errorf("%s: batch %s stored twice: in %s and in %s", when, id, present[id], region)
				case b.ep.Region != region || !home[ps]:
					t.Errorf("%s: batch %s of an endpoint in %s (home %s) is in the %s store", when, id, b.ep.Country, b.ep.Region, region)
				case ps != endpoint.Pseudonym([]byte(pkey), b.ep.ID):
					t.Errorf("%s: batch %s stored under pseudonym %s, not its endpoint's", when, id, ps)
				case count != int64(len(b.recs)):
					t.Errorf("%s: batch %s stored with count %d, want %d", when, id, count, len(b.recs))
				}
				present[id] = region
				pks[pk] = b
				want += len(b.recs)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			rows.Close()

			// Between full checks, counts only: SQLite under the race
			// detector reads some 20,000 rows a second.
			var nrec, npers int
			if err := db.QueryRow(`SELECT (SELECT count(*) FROM records), (SELECT count(*) FROM personal)`).Scan(&nrec, &npers); err != nil {
				t.Fatal(err)
			}
			if nrec != want || npers != want {
				t.Errorf("%s: %s store holds %d records and %d personal rows, but its batches hold %d records", when, region, nrec, npers, want)
			}
			if !full {
				return
			}
			checkIngestRecords(t, when, region, db, pks, bySHA, seenRec, recsOf)
			// No personal row without a record.
			var orphans int
			if err := db.QueryRow(`SELECT count(*) FROM personal p LEFT JOIN records r ON r.id = p.record_id WHERE r.id IS NULL`).Scan(&orphans); err != nil {
				t.Fatal(err)
			}
			if orphans != 0 {
				t.Errorf("%s: %s store: %d personal rows without a record", when, region, orphans)
			}

			if folded {
				checkIngestAggregates(t, when, region, db, batches, present)
			}
		}()
	}
	for id, b := range batches {
		_, in := present[id]
		switch {
		case b.acked && !in:
			t.Errorf("%s: acknowledged batch %s (%s, %d retries) is not in the %s store", when, id, b.ep.Country, b.retries, b.ep.Region)
		case full && in && recsOf[id] != len(b.recs):
			t.Errorf("%s: batch %s holds %d records in the store, want %d", when, id, recsOf[id], len(b.recs))
		}
		if b.uncertain {
			b.stored = in
		}
	}
}

// checkIngestAggregates checks that region's folded aggregates count every
// stored record once: each record has a hash of its own, so each hash must
// have prevalence 1 and each detection a count of 1.
func checkIngestAggregates(t *testing.T, when, region string, db *sql.DB, batches map[string]*crashBatch, present map[string]string) {
	t.Helper()
	var pending int64
	if err := db.QueryRow(`SELECT count(*) FROM records WHERE id > (SELECT record_id FROM fold_state)`).Scan(&pending); err != nil {
		t.Fatal(err)
	}
	if pending != 0 {
		t.Errorf("%s: %s store: %d records not folded after a clean shutdown", when, region, pending)
	}
	wantAgg, wantDet := map[string]bool{}, map[string]string{}
	for id, b := range batches {
		if present[id] != region {
			continue
		}
		for _, r := range b.recs {
			wantAgg[r.sha256] = true
			if r.detection != "" {
				wantDet[r.sha256] = r.detection
			}
		}
	}
	rows, err := db.Query(`SELECT sha256, prevalence FROM aggregates`)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var sha string
		var prev int64
		if err := rows.Scan(&sha, &prev); err != nil {
			t.Fatal(err)
		}
		n++
		if !wantAgg[sha] || prev != 1 {
			t.Errorf("%s: %s aggregate of %s: prevalence %d, want 1 (of a record stored here: %v)", when, region, sha, prev, wantAgg[sha])
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if n != len(wantAgg) {
		t.Errorf("%s: %s store has %d aggregates, want %d", when, region, n, len(wantAgg))
	}
	rows, err = db.Query(`SELECT sha256, name, count FROM detections`)
	if err != nil {
		t.Fatal(err)
	}
	n = 0
	for rows.Next() {
		var sha, name string
		var count int64
		if err := rows.Scan(&sha, &name, &count); err != nil {
			t.Fatal(err)
		}
		n++
		if wantDet[sha] != name || count != 1 {
			t.Errorf("%s: %s detections of %s: %q counted %d, want %q counted 1", when, region, sha, name, count, wantDet[sha])
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if n != len(wantDet) {
		t.Errorf("%s: %s store has %d detection rows, want %d", when, region, n, len(wantDet))
	}
}

// checkIngestRecords reads every record of region's store with its personal
// half and compares it with what was sent in the batch of pks it is stored
// under. It adds what it saw to seen (by sha256) and recsOf (by batch id).
func checkIngestRecords(t *testing.T, when, region string, db *sql.DB, pks map[int64]*crashBatch, bySHA map[string]*crashRecord, seen map[string]bool, recsOf map[string]int) {
	t.Helper()
	rows, err := db.Query(`SELECT r.batch_pk, r.sha256, r.detection, p.sealed
		FROM records r LEFT JOIN personal p ON p.record_id = r.id`)
	if err != nil {
		t.Fatalf("%s: %s store: %v", when, region, err)
	}
	for rows.Next() {
		var pk int64
		var sha, det string
		var sealed []byte
		if err := rows.Scan(&pk, &sha, &det, &sealed); err != nil {
			t.Fatal(err)
		}
		b, r := pks[pk], bySHA[sha]
		switch {
		case b == nil:
			t.Errorf("%s: %s store holds record %s of batch pk %d, which is not in batches", when, region, sha, pk)
			continue
		case r == nil || r.batch != b:
			t.Errorf("%s: %s store holds record %s under batch %s, which did not send it", when, region, sha, b.id)
			continue
		case seen[sha]:
			t.Errorf("%s: record %s of batch %s stored twice", when, sha, b.id)
		case len(sealed) == 0:
			t.Errorf("%s: record %s of batch %s has no personal row", when, sha, b.id)
		case bytes.Contains(sealed, []byte(b.ep.ID)) || bytes.Contains(sealed, []byte(r.path)):
			t.Errorf("%s: record %s of batch %s: personal half in clear", when, sha, b.id)
		case det != r.detection:
			t.Errorf("%s: record %s of batch %s stored with detection %q, want %q", when, sha, b.id, det, r.detection)
		}
		seen[sha] = true
		recsOf[b.id]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
}
