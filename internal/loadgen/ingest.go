package loadgen

// Region load: the telemetry workload, ingest over HTTP and its raw-insert
// baseline, verdict lookups, and the time a report takes to become a
// verdict in another region. `vitrine-bench ingest`, `verdicts` and
// `propagation` run these.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // the raw-insert baseline's database/sql driver

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/custody"
	"github.com/vitrine-dev/vitrine/internal/seal"
	"github.com/vitrine-dev/vitrine/internal/store/postgres"
	"github.com/vitrine-dev/vitrine/internal/store/sqlite"
	"github.com/vitrine-dev/vitrine/telemetry"
)

// A Workload makes the telemetry of the region benchmarks. Endpoints report
// files whose popularity follows a Zipf law (s = 1.1) over Hashes distinct
// files — a few seen everywhere, a long tail seen once — with varied sizes,
// paths and product versions; 5% of records are URLs, and 2% are
// detections, of Malware other files with a Zipf law of their own. Encoded,
// a record is about 250 bytes.
//
// Batch k of endpoint e depends only on the workload's fields, e and k, so
// that the raw-insert baseline can insert exactly the rows that an HTTP run
// sent. A Workload is safe for concurrent use.
type Workload struct {
	// Seed selects the files (hashes) and every random choice.
	Seed uint64
	// Run varies the batches but not the files: runs with the same Seed
	// and another Run report the same files, in other batches.
	Run uint64
	// Hashes is the number of distinct files (default DefaultHashes).
	Hashes uint64
	// Start is the time of each endpoint's first record; the records of
	// an endpoint follow 1 ms apart.
	Start time.Time
}

// DefaultHashes is the default number of distinct files of a Workload;
// Malware is the number of files that detections name.
const (
	DefaultHashes = 1 << 22
	Malware       = 20000
)

var (
	detectionNames = []string{"EICAR-Test-File", "Trojan.GenericKD", "Ransom.Locky", "PUA.Adware", "Worm.Conficker",
		"Exploit.CVE-2026-1234", "Backdoor.Agent", "Phishing.Page", "Trojan.Win32.Agent", "HackTool.Mimikatz"}
	vendors = []string{"Microsoft", "Google", "Mozilla", "Adobe", "Oracle", "JetBrains", "Zoom", "Slack", "VideoLAN", "7-Zip"}
	exts    = []string{"dll", "exe", "sys", "msi", "so", "dylib", "jar"}
)

func (w *Workload) hashes() uint64 {
	if w.Hashes < 2 {
		return DefaultHashes
	}
	return w.Hashes
}

// Hash returns the SHA-256, as 64 lowercase hex digits, of the workload's
// i-th most popular file.
func (w *Workload) Hash(i uint64) string {
	var b [32]byte
	x := w.Seed ^ (i+1)*0x9e3779b97f4a7c15
	for j := 0; j < 32; j += 8 {
		x = splitmix(x)
		binary.BigEndian.PutUint64(b[j:], x)
	}
	return hex.EncodeToString(b[:])
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func (w *Workload) rng(stream, k uint64) *rand.Rand {
	return rand.New(rand.NewPCG(splitmix(w.Seed^stream*0x9e3779b97f4a7c15)^splitmix(w.Run), k))
}

// Batch returns the k-th batch of n records of endpoint e.
func (w *Workload) Batch(e, k, n int) []telemetry.Record {
	rng := w.rng(uint64(e), uint64(k))
	zipf := rand.NewZipf(rng, 1.1, 1, w.hashes()-1)
	malware := rand.NewZipf(rng, 1.1, 1, Malware-1)
	recs := make([]telemetry.Record, n)
	t := w.Start.Add(time.Duration(k*n) * time.Millisecond)
	for i := range recs {
		r := telemetry.Record{
			Time:    t.Add(time.Duration(i) * time.Millisecond),
			Kind:    telemetry.KindFile,
			SHA256:  w.Hash(zipf.Uint64()),
			Size:    int64(512 + rng.IntN(8<<20)),
			Product: "vitrine-agent/1." + strconv.Itoa(rng.IntN(4)) + "." + strconv.Itoa(rng.IntN(12)),
			RuleDB:  uint64(4200 + rng.IntN(30)),
		}
		switch p := rng.IntN(100); {
		case p < 2:
			r.Kind = telemetry.KindDetection
			r.SHA256 = w.Hash(w.hashes() + malware.Uint64())
			r.Detection = detectionNames[rng.IntN(len(detectionNames))]
			r.Path = "C:/Users/user" + strconv.Itoa(rng.IntN(5000)) + "/Downloads/setup-" + strconv.Itoa(rng.IntN(100000)) + ".exe"
			if rng.IntN(2) == 0 {
				r.URL = "https://dl" + strconv.Itoa(rng.IntN(3000)) + ".example.net/get/" + strconv.Itoa(rng.IntN(1000000))
			}
		case p < 7:
			r.Kind = telemetry.KindURL
			r.URL = "https://cdn" + strconv.Itoa(rng.IntN(10000)) + ".example.com/downloads/" + strconv.Itoa(rng.IntN(100000)) + "/package.zip"
		case p < 60:
			v := vendors[rng.IntN(len(vendors))]
			r.Path = "C:/Program Files/" + v + "/App" + strconv.Itoa(rng.IntN(40)) + "/bin/module" + strconv.Itoa(rng.IntN(2000)) + "." + exts[rng.IntN(3)]
		default:
			r.Path = "/usr/lib/x86_64-linux-gnu/" + vendors[rng.IntN(len(vendors))] + "/lib" + strconv.Itoa(rng.IntN(5000)) + "." + exts[3+rng.IntN(4)]
		}
		recs[i] = r
	}
	return recs
}

// LookupHashes returns n hashes to ask verdicts for, drawn as endpoints
// ask about the files they see: 98% from the workload's files, 2% from its
// malware, each by its Zipf law. Most were reported, some not yet.
func (w *Workload) LookupHashes(n int) []string {
	rng := w.rng(1<<62, 0)
	zipf := rand.NewZipf(rng, 1.1, 1, w.hashes()-1)
	malware := rand.NewZipf(rng, 1.1, 1, Malware-1)
	out := make([]string, n)
	for i := range out {
		if rng.IntN(100) < 2 {
			out[i] = w.Hash(w.hashes() + malware.Uint64())
		} else {
			out[i] = w.Hash(zipf.Uint64())
		}
	}
	return out
}

// AppendBatch appends the JSON body of a batch, as an endpoint posts it, to
// dst. Empty optional fields are left out.
func AppendBatch(dst []byte, batchID string, recs []telemetry.Record) []byte {
	dst = append(dst, `{"batch_id":`...)
	dst = appendString(dst, batchID)
	dst = append(dst, `,"records":[`...)
	for i := range recs {
		r := &recs[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"time":"`...)
		dst = r.Time.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
		dst = append(dst, `","kind":`...)
		dst = appendString(dst, r.Kind)
		dst = append(dst, `,"sha256":"`...)
		dst = append(dst, r.SHA256...)
		dst = append(dst, `","size":`...)
		dst = strconv.AppendInt(dst, r.Size, 10)
		for _, f := range [...]struct{ key, v string }{{"detection", r.Detection}, {"url", r.URL}, {"path", r.Path}, {"product", r.Product}} {
			if f.v != "" {
				dst = append(dst, `,"`...)
				dst = append(dst, f.key...)
				dst = append(dst, `":`...)
				dst = appendString(dst, f.v)
			}
		}
		dst = append(dst, `,"ruledb":`...)
		dst = strconv.AppendUint(dst, r.RuleDB, 10)
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}

// appendString appends s as a JSON string.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, `\u00`...)
			dst = append(dst, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// Endpoint is a registered endpoint, as POST /v1/endpoints answers.
type Endpoint struct {
	ID        string `json:"id"`
	Token     string `json:"token"`
	Region    string `json:"region"`
	IngestURL string `json:"ingest_url"`
	// Country is the country it was registered in.
	Country string `json:"-"`
}

// RegionURL is the base URL of the endpoint's home region.
func (e Endpoint) RegionURL() string { return strings.TrimSuffix(e.IngestURL, "/v1/telemetry") }

// Register registers an endpoint in country with the platform at base
// (POST base/v1/endpoints with the operator token).
func Register(ctx context.Context, hc *http.Client, base, operatorToken, country string) (Endpoint, error) {
	body, _ := json.Marshal(map[string]string{"country": country})
	var e Endpoint
	if err := call(ctx, hc, http.MethodPost, strings.TrimSuffix(base, "/")+"/v1/endpoints", operatorToken, body, &e); err != nil {
		return Endpoint{}, fmt.Errorf("registering an endpoint in %s: %w", country, err)
	}
	e.Country = country
	return e, nil
}

// NewClient returns an HTTP client that keeps up to conns connections
// open to each host.
func NewClient(conns int) *http.Client {
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		IdleConnTimeout:     30 * time.Second,
	}}
}

// call sends one request with the bearer token and decodes the 2xx
// answer's JSON into out; another answer is a *client.StatusError.
func call(ctx context.Context, hc *http.Client, method, u, token string, body []byte, out any) error {
	return client.Call(ctx, hc, method, u, token, body, 16<<20, out)
}

// IngestConfig says how to load a platform's ingest.
type IngestConfig struct {
	// Endpoints are the reporting endpoints; Workload endpoint e is
	// Endpoints[e].
	Endpoints []Endpoint
	// Clients is the number of concurrent clients, each with one batch in
	// flight; client c sends for endpoints c, c+Clients, … in turn.
	Clients int
	// BatchSize is the number of records per batch (default 500).
	BatchSize int
	// Warmup and Duration: batches are counted if they start after Warmup
	// and end before Warmup+Duration.
	Warmup, Duration time.Duration
	// Records, if positive, sends this many records (in whole batches)
	// instead, with no warm-up, and counts them all.
	Records  int64
	Workload *Workload
	// RunID tells this run's batch ids from other runs'.
	RunID string
	// Progress, if set, is called about every second with the records
	// acknowledged so far.
	Progress func(records int64, elapsed time.Duration)
}

// BatchRef names one batch of a Workload.
type BatchRef struct{ Endpoint, Seq int }

// IngestResult is what an ingest run measured.
type IngestResult struct {
	// Records and Batches were acknowledged in the measured window.
	Records       int64
	Batches       int
	Errors        int
	FirstError    string
	Elapsed       time.Duration
	P50, P99, Max time.Duration // per batch, from send to answer
	// BodyBytes is the mean body size of a batch.
	BodyBytes int
	// Sent lists every batch acknowledged, measured or not, in order.
	Sent []BatchRef
}

// PerSecond is the measured ingest rate in records per second.
func (r IngestResult) PerSecond() float64 { return float64(r.Records) / r.Elapsed.Seconds() }

// Ingest posts the workload's batches to the endpoints' ingest URLs and
// measures records per second.
func Ingest(ctx context.Context, cfg IngestConfig) (IngestResult, error) {
	if len(cfg.Endpoints) == 0 || cfg.Clients < 1 || cfg.Workload == nil {
		return IngestResult{}, errors.New("loadgen: ingest needs endpoints, a workload and at least one client")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	hc := NewClient(cfg.Clients)
	defer hc.Transport.(*http.Transport).CloseIdleConnections()

	start := time.Now()
	measureFrom, measureTo := start.Add(cfg.Warmup), start.Add(cfg.Warmup+cfg.Duration)
	var totalBatches int64
	if cfg.Records > 0 {
		measureFrom, measureTo = start, time.Time{}
		totalBatches = (cfg.Records + int64(cfg.BatchSize) - 1) / int64(cfg.BatchSize)
	} else {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, measureTo)
		defer cancel()
	}
	var (
		mu        sync.Mutex
		res       IngestResult
		latencies []time.Duration
		claimed   atomic.Int64
		acked     atomic.Int64
		bodyBytes atomic.Int64
	)
	done := make(chan struct{})
	if cfg.Progress != nil {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					cfg.Progress(acked.Load(), time.Since(start))
				}
			}
		}()
	}
	var wg sync.WaitGroup
	for c := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []int
			for e := c; e < len(cfg.Endpoints); e += cfg.Clients {
				mine = append(mine, e)
			}
			if len(mine) == 0 {
				return
			}
			seq := make([]int, len(mine))
			var body []byte
			for turn := 0; ctx.Err() == nil; turn++ {
				if totalBatches > 0 && claimed.Add(1) > totalBatches {
					return
				}
				i := turn % len(mine)
				e, k := mine[i], seq[i]
				seq[i]++
				recs := cfg.Workload.Batch(e, k, cfg.BatchSize)
				body = AppendBatch(body[:0], fmt.Sprintf("%s-e%d-%d", cfg.RunID, e, k), recs)
				bodyBytes.Add(int64(len(body)))
				t0 := time.Now()
				err := postBatch(ctx, hc, cfg.Endpoints[e], body, len(recs))
				t1 := time.Now()
				if ctx.Err() != nil && cfg.Records == 0 {
					return
				}
				mu.Lock()
				if err == nil {
					res.Sent = append(res.Sent, BatchRef{e, k})
					acked.Add(int64(len(recs)))
				}
				if !t0.Before(measureFrom) && (measureTo.IsZero() || !t1.After(measureTo)) {
					if err != nil {
						res.Errors++
						if res.FirstError == "" {
							res.FirstError = err.Error()
						}
					} else {
						res.Records += int64(len(recs))
						res.Batches++
						latencies = append(latencies, t1.Sub(t0))
					}
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	res.Elapsed = cfg.Duration
	if cfg.Records > 0 {
		res.Elapsed = time.Since(start)
	}
	if n := len(res.Sent) + res.Errors; n > 0 {
		res.BodyBytes = int(bodyBytes.Load() / int64(n))
	}
	res.P50, res.P99, res.Max = percentiles(latencies)
	if cfg.Records > 0 && ctx.Err() != nil {
		return res, ctx.Err()
	}
	return res, nil
}

func postBatch(ctx context.Context, hc *http.Client, e Endpoint, body []byte, n int) error {
	var ans struct {
		Records   int  `json:"records"`
		Duplicate bool `json:"duplicate"`
	}
	if err := call(ctx, hc, http.MethodPost, e.IngestURL, e.Token, body, &ans); err != nil {
		return err
	}
	if ans.Records != n || ans.Duplicate {
		return fmt.Errorf("ingest answered %d records, duplicate=%v; sent %d new", ans.Records, ans.Duplicate, n)
	}
	return nil
}

// RawResult is what a raw insert measured.
type RawResult struct {
	Records int64
	Elapsed time.Duration
}

// PerSecond is the insert rate in records per second.
func (r RawResult) PerSecond() float64 { return float64(r.Records) / r.Elapsed.Seconds() }

// RawInsert is the baseline of Ingest: it creates a SQLite store at path
// (which must not exist) with internal/store/sqlite, closes it, and inserts
// the rows of the given batches of w straight into its batches, records and
// personal tables, with the store's page size and pragmas (WAL,
// synchronous=FULL, a 64 MiB page cache), one transaction per batch: the
// batch row, then the records and their sealed personal halves with one
// prepared multi-row INSERT each. It checks nothing and maintains no
// aggregates. A goroutine builds (and seals) the rows ahead of the writer,
// as the HTTP clients build their batches.
func RawInsert(ctx context.Context, path string, w *Workload, endpoints []Endpoint, batches []BatchRef, batchSize int) (RawResult, error) {
	if batchSize <= 0 {
		batchSize = 500
	}
	if _, err := os.Stat(path); err == nil {
		return RawResult{}, fmt.Errorf("raw insert: %s exists; give a fresh path", path)
	}
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		return RawResult{}, fmt.Errorf("raw insert: %w", err)
	}
	if err := st.Close(); err != nil {
		return RawResult{}, fmt.Errorf("raw insert: %w", err)
	}
	q := url.Values{}
	for _, p := range []string{fmt.Sprintf("page_size(%d)", sqlite.PageSize), "journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(10000)", "temp_store(MEMORY)", "cache_size(-65536)"} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return RawResult{}, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		return RawResult{}, err
	}
	defer conn.Close()
	rows := func(cols int) string {
		row := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
		return strings.TrimSuffix(strings.Repeat(row+",", batchSize), ",")
	}
	insBatch, err := conn.PrepareContext(ctx, "INSERT INTO batches (pk, pseudonym, batch_id, country, received, count, wrapped_key, first_id) VALUES (?,?,?,?,?,?,?,?)")
	if err != nil {
		return RawResult{}, err
	}
	defer insBatch.Close()
	insRecords, err := conn.PrepareContext(ctx, "INSERT INTO records (id, batch_pk, time, kind, sha256, size, detection, product, ruledb) VALUES "+rows(9))
	if err != nil {
		return RawResult{}, err
	}
	defer insRecords.Close()
	insPersonal, err := conn.PrepareContext(ctx, "INSERT INTO personal (record_id, sealed) VALUES "+rows(2))
	if err != nil {
		return RawResult{}, err
	}
	defer insPersonal.Close()

	gctx, cancel := context.WithCancel(ctx) // stops the producer if inserting fails
	defer cancel()
	ch := rawRows(gctx, w, endpoints, batches, batchSize, func(t time.Time) any { return t.UnixMicro() }, true)
	var res RawResult
	start := time.Now()
	for a := range ch {
		if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			return res, err
		}
		_, err := insBatch.ExecContext(ctx, a.batch...)
		if err == nil {
			_, err = insRecords.ExecContext(ctx, a.records...)
		}
		if err == nil {
			_, err = insPersonal.ExecContext(ctx, a.personal...)
		}
		if err == nil {
			_, err = conn.ExecContext(ctx, "COMMIT")
		}
		if err != nil {
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
			return res, fmt.Errorf("raw insert: %w", err)
		}
		res.Records += int64(len(a.records) / 9)
	}
	res.Elapsed = time.Since(start)
	return res, ctx.Err()
}

// rawArgs are the statement arguments of one batch's rows.
type rawArgs struct{ batch, records, personal []any }

// rawRows builds the rows of batches of w ahead of the inserter, a few at a
// time, until ctx ends, sealing the personal halves as a region does;
// encodeTime gives a time as the store keeps it, and firstID adds the
// batch's first record id to its row, as the SQLite store keeps it.
func rawRows(ctx context.Context, w *Workload, endpoints []Endpoint, batches []BatchRef, batchSize int, encodeTime func(time.Time) any, firstID bool) <-chan rawArgs {
	ch := make(chan rawArgs, 4)
	go func() {
		defer close(ch)
		// A region key, so that the rows are the very ones a region
		// writes: the same sealing, the same wrapped key size.
		key, err := custody.WrapOnlyKey("raw")
		if err != nil {
			panic(err) // only a broken crypto/rand fails
		}
		var id int64
		for pk, b := range batches {
			ep := endpoints[b.Endpoint]
			recs := w.Batch(b.Endpoint, b.Seq, batchSize)
			wrapped, sealed, err := seal.Records(key, ep.ID, recs)
			if err != nil {
				panic(err) // wrapping a 32-byte key does not fail
			}
			a := rawArgs{
				batch:    []any{int64(pk + 1), pseudonym(ep.ID), fmt.Sprintf("raw-e%d-%d", b.Endpoint, b.Seq), ep.Country, encodeTime(time.Now()), int64(len(recs)), wrapped},
				records:  make([]any, 0, 9*len(recs)),
				personal: make([]any, 0, 2*len(recs)),
			}
			if firstID {
				a.batch = append(a.batch, id+1)
			}
			for i := range recs {
				r := &recs[i]
				id++
				a.records = append(a.records, id, int64(pk+1), encodeTime(r.Time), r.Kind, r.SHA256, r.Size, r.Detection, r.Product, int64(r.RuleDB))
				a.personal = append(a.personal, id, sealed[i])
			}
			select {
			case ch <- a:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// pseudonym stands in for the region's HMAC pseudonym: a string of the same
// length (43 characters), derived from the id.
func pseudonym(id string) string {
	var x uint64
	for i := 0; i < len(id); i++ {
		x = splitmix(x ^ uint64(id[i]))
	}
	s := strconv.FormatUint(x, 36) + strconv.FormatUint(splitmix(x), 36) + strconv.FormatUint(splitmix(x+1), 36) + "0000000000000000000000000000000000000000000"
	return s[:43]
}

// LookupConfig says how to load a region's verdict API.
type LookupConfig struct {
	// Region is the region's base URL (…/regions/<name>), Token an endpoint
	// token of that region.
	Region, Token string
	// Clients is the number of concurrent clients, each with one request
	// in flight.
	Clients int
	// Batch is the number of hashes per POST /v1/verdicts; 1 asks each
	// hash with its own GET /v1/verdicts/<sha256>.
	Batch int
	// Hashes are looked up, each once.
	Hashes []string
}

// LookupResult is what a verdict run measured.
type LookupResult struct {
	Hashes, Requests, Errors int
	FirstError               string
	Elapsed                  time.Duration
	P50, P99, Max            time.Duration // per request
	// Verdicts counts the answers by verdict; Known counts the answers
	// about hashes some region has seen (prevalence above zero).
	Verdicts map[string]int
	Known    int
}

// PerSecond is the lookup rate in hashes per second.
func (r LookupResult) PerSecond() float64 { return float64(r.Hashes) / r.Elapsed.Seconds() }

// Lookup asks the verdicts of cfg.Hashes, cfg.Batch at a time.
func Lookup(ctx context.Context, cfg LookupConfig) (LookupResult, error) {
	if cfg.Clients < 1 || cfg.Batch < 1 || cfg.Region == "" {
		return LookupResult{}, errors.New("loadgen: lookup needs a region URL, a batch size and at least one client")
	}
	hc := NewClient(cfg.Clients)
	defer hc.Transport.(*http.Transport).CloseIdleConnections()
	base := strings.TrimSuffix(cfg.Region, "/") + "/v1/verdicts"
	var (
		mu        sync.Mutex
		next      int
		res       = LookupResult{Verdicts: map[string]int{}}
		latencies []time.Duration
	)
	claim := func() []string {
		mu.Lock()
		defer mu.Unlock()
		lo := next
		next = min(len(cfg.Hashes), next+cfg.Batch)
		return cfg.Hashes[lo:next]
	}
	type answer struct {
		Verdict    string `json:"verdict"`
		Prevalence int64  `json:"prevalence"`
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body []byte
			for ctx.Err() == nil {
				hs := claim()
				if len(hs) == 0 {
					return
				}
				t0 := time.Now()
				var got []answer
				var err error
				if cfg.Batch == 1 {
					var a answer
					err = call(ctx, hc, http.MethodGet, base+"/"+hs[0], cfg.Token, nil, &a)
					got = []answer{a}
				} else {
					body = append(body[:0], `{"sha256":[`...)
					for i, h := range hs {
						if i > 0 {
							body = append(body, ',')
						}
						body = appendString(body, h)
					}
					body = append(body, "]}"...)
					var a struct {
						Verdicts []answer `json:"verdicts"`
					}
					err = call(ctx, hc, http.MethodPost, base, cfg.Token, body, &a)
					got = a.Verdicts
					if err == nil && len(got) != len(hs) {
						err = fmt.Errorf("asked %d verdicts, got %d", len(hs), len(got))
					}
				}
				d := time.Since(t0)
				mu.Lock()
				res.Requests++
				if err != nil {
					res.Errors++
					if res.FirstError == "" {
						res.FirstError = err.Error()
					}
				} else {
					res.Hashes += len(hs)
					latencies = append(latencies, d)
					for _, a := range got {
						res.Verdicts[a.Verdict]++
						if a.Prevalence > 0 {
							res.Known++
						}
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.P50, res.P99, res.Max = percentiles(latencies)
	return res, ctx.Err()
}

// PropagationConfig says how to measure the time from a report in one
// region to a verdict in another.
type PropagationConfig struct {
	// From reports; To is an endpoint of the other region, whose token
	// reads that region's verdicts.
	From, To Endpoint
	// Samples is the number of reports, one at a time.
	Samples int
	// Poll is the interval between verdict lookups (default 2ms).
	Poll time.Duration
	// Timeout is how long to wait for one verdict (default 10s).
	Timeout time.Duration
	// Seed makes the reported hashes, which are new to both regions.
	Seed uint64
}

// PropagationResult holds, for every sample, the time from sending the
// report to its acknowledgment (Ack), to the first lookup in the reporting
// region that is no longer unknown (Local), and to the first such lookup in
// the other region (Remote). Each is sorted.
type PropagationResult struct {
	Ack, Local, Remote []time.Duration
	// Timeouts counts samples whose verdict did not change in time.
	Timeouts   int
	FirstError string
}

// Quantile returns the q-quantile of sorted d, or 0 if d is empty.
func Quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// Propagation reports a new detection of a fresh hash through cfg.From,
// then polls both regions' verdicts of that hash until neither is
// "unknown", cfg.Samples times.
func Propagation(ctx context.Context, cfg PropagationConfig) (PropagationResult, error) {
	if cfg.Poll <= 0 {
		cfg.Poll = 2 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	hc := NewClient(4)
	defer hc.Transport.(*http.Transport).CloseIdleConnections()
	var res PropagationResult
	w := &Workload{Seed: cfg.Seed ^ uint64(time.Now().UnixNano())}
	for s := range cfg.Samples {
		if ctx.Err() != nil {
			break
		}
		hash := w.Hash(uint64(s))
		body := AppendBatch(nil, "prop-"+hash[:16], []telemetry.Record{{
			Time: time.Now().UTC(), Kind: telemetry.KindDetection, SHA256: hash, Size: 68432,
			Detection: "Trojan.Propagation", Path: "C:/Users/user/Downloads/invoice.exe", Product: "vitrine-agent/1.0.0", RuleDB: 4200,
		}})
		sctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		t0 := time.Now()
		var local, remote time.Duration
		var lerr, rerr error
		var wg sync.WaitGroup
		poll := func(e Endpoint, out *time.Duration, errp *error) {
			defer wg.Done()
			u := e.RegionURL() + "/v1/verdicts/" + hash
			for {
				var a struct {
					Verdict string `json:"verdict"`
				}
				if err := call(sctx, hc, http.MethodGet, u, e.Token, nil, &a); err != nil {
					*errp = err
					return
				}
				if a.Verdict != "unknown" {
					*out = time.Since(t0)
					return
				}
				select {
				case <-sctx.Done():
					*errp = sctx.Err()
					return
				case <-time.After(cfg.Poll):
				}
			}
		}
		err := postBatch(sctx, hc, cfg.From, body, 1)
		ack := time.Since(t0)
		if err == nil {
			wg.Add(2)
			go poll(cfg.From, &local, &lerr)
			go poll(cfg.To, &remote, &rerr)
			wg.Wait()
			err = errors.Join(lerr, rerr)
		}
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			res.Timeouts++
			if res.FirstError == "" {
				res.FirstError = err.Error()
			}
			continue
		}
		res.Ack = append(res.Ack, ack)
		res.Local = append(res.Local, local)
		res.Remote = append(res.Remote, remote)
	}
	for _, d := range [][]time.Duration{res.Ack, res.Local, res.Remote} {
		percentiles(d) // sorts
	}
	return res, ctx.Err()
}

// ProcStats is what /proc tells of a process.
type ProcStats struct {
	// RSS and HWM are the resident set size now and at its peak (VmRSS,
	// VmHWM), in bytes.
	RSS, HWM int64
	// CPU is the user and system time the process has used.
	CPU time.Duration
}

// ReadProc reads /proc/<pid>/status and /proc/<pid>/stat (Linux only).
func ReadProc(pid int) (ProcStats, error) {
	var ps ProcStats
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return ps, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return ps, fmt.Errorf("reading %s of process %d: %w", k, pid, err)
		}
		if k == "VmRSS" {
			ps.RSS = kb << 10
		} else {
			ps.HWM = kb << 10
		}
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ps, err
	}
	// Fields after the command, which is in parentheses and may hold
	// spaces: state is field 3, utime and stime fields 14 and 15.
	rest := string(stat[bytes.LastIndexByte(stat, ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return ps, fmt.Errorf("reading /proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return ps, fmt.Errorf("reading /proc/%d/stat: %w", pid, err)
	}
	ps.CPU = time.Duration(ut+st) * time.Second / 100 // USER_HZ
	return ps, nil
}

// MachineCPU returns the CPU time all processes have used since boot, and
// the number of CPUs, from /proc/stat (Linux only).
func MachineCPU() (busy time.Duration, cpus int, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 8 && f[0] == "cpu":
			// user nice system idle iowait irq softirq steal: all but
			// idle and iowait are busy.
			for i, v := range f[1:9] {
				if i == 3 || i == 4 {
					continue
				}
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return 0, 0, fmt.Errorf("reading /proc/stat: %w", err)
				}
				busy += time.Duration(n) * time.Second / 100
			}
		case len(f) > 0 && strings.HasPrefix(f[0], "cpu"):
			cpus++
		}
	}
	return busy, cpus, nil
}

// RawInsertPostgres is RawInsert into PostgreSQL: it creates schema (which
// must not exist) in the database at dsn, a PostgreSQL store in it with
// internal/store/postgres, inserts the same rows the same way
// (a transaction per batch, one prepared multi-row INSERT per table,
// synchronous_commit on), and drops the schema.
func RawInsertPostgres(ctx context.Context, dsn, schema string, w *Workload, endpoints []Endpoint, batches []BatchRef, batchSize int) (RawResult, error) {
	if batchSize <= 0 {
		batchSize = 500
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return RawResult{}, fmt.Errorf("raw insert: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	ident := pgx.Identifier{schema}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+ident); err != nil {
		return RawResult{}, fmt.Errorf("raw insert: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "DROP SCHEMA "+ident+" CASCADE")
	if _, err := conn.Exec(ctx, "SET search_path TO "+ident+"; SET synchronous_commit TO on"); err != nil {
		return RawResult{}, err
	}
	// The store creates its tables in the schema.
	u, err := url.Parse(dsn)
	if err != nil {
		return RawResult{}, fmt.Errorf("raw insert: %w", err)
	}
	uq := u.Query()
	uq.Set("search_path", schema)
	u.RawQuery = uq.Encode()
	st, err := postgres.Open(ctx, u.String())
	if err != nil {
		return RawResult{}, fmt.Errorf("raw insert: %w", err)
	}
	if err := st.Close(); err != nil {
		return RawResult{}, fmt.Errorf("raw insert: %w", err)
	}
	rows := func(cols int) string {
		var sb strings.Builder
		for r := range batchSize {
			if r > 0 {
				sb.WriteByte(',')
			}
			sb.WriteByte('(')
			for c := range cols {
				if c > 0 {
					sb.WriteByte(',')
				}
				sb.WriteString("$" + strconv.Itoa(r*cols+c+1))
			}
			sb.WriteByte(')')
		}
		return sb.String()
	}
	for name, q := range map[string]string{
		"batch":    "INSERT INTO batches (pk, pseudonym, batch_id, country, received, count, wrapped_key) OVERRIDING SYSTEM VALUE VALUES ($1,$2,$3,$4,$5,$6,$7)",
		"records":  "INSERT INTO records (id, batch_pk, time, kind, sha256, size, detection, product, ruledb) VALUES " + rows(9),
		"personal": "INSERT INTO personal (record_id, sealed) VALUES " + rows(2),
	} {
		if _, err := conn.Prepare(ctx, name, q); err != nil {
			return RawResult{}, fmt.Errorf("raw insert: preparing %s: %w", name, err)
		}
	}
	gctx, cancel := context.WithCancel(ctx) // stops the producer if inserting fails
	defer cancel()
	ch := rawRows(gctx, w, endpoints, batches, batchSize, func(t time.Time) any { return t }, false)
	var res RawResult
	start := time.Now()
	for a := range ch {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			for _, q := range []struct {
				name string
				args []any
			}{{"batch", a.batch}, {"records", a.records}, {"personal", a.personal}} {
				if _, err := tx.Exec(ctx, q.name, q.args...); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("raw insert: %w", err)
		}
		res.Records += int64(len(a.records) / 9)
	}
	res.Elapsed = time.Since(start)
	return res, ctx.Err()
}
