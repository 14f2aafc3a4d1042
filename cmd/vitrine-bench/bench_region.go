package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vitrine-dev/vitrine/internal/cli"
	"github.com/vitrine-dev/vitrine/internal/custody"
	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/internal/loadgen"
	"github.com/vitrine-dev/vitrine/internal/region"
	"github.com/vitrine-dev/vitrine/internal/store"
	_ "github.com/vitrine-dev/vitrine/internal/store/postgres" // for --store postgres://
	_ "github.com/vitrine-dev/vitrine/internal/store/sqlite"
	"github.com/vitrine-dev/vitrine/residency"
)

// The region benchmarks of docs/performance.md. Each runs against a
// running `vitrine up`, registering its own endpoints with the operator
// token, and prints its baseline beside it; `vitrine-bench ingest --store` serves
// one region in-process instead, for stores `vitrine up` cannot use.

// regionFlags are the flags every region benchmark takes.
type regionFlags struct {
	url, tokenFile *string
	seed           *uint64
}

func addRegionFlags(fs *flag.FlagSet) regionFlags {
	return regionFlags{
		url:       fs.String("url", cli.DefaultPlatform(), "base URL of a running 'vitrine up'"),
		tokenFile: fs.String("operator-token", cli.DefaultOperatorToken, "file holding the operator token, to register endpoints"),
		seed:      fs.Uint64("seed", 1, "workload seed: runs with the same seed report and ask about the same files"),
	}
}

func (f regionFlags) operatorToken() (string, error) {
	return cli.ReadToken(*f.tokenFile, "the operator token")
}

// register registers n endpoints, their countries taken from countries in
// turn.
func (f regionFlags) register(ctx context.Context, countries []string, n int) ([]loadgen.Endpoint, error) {
	tok, err := f.operatorToken()
	if err != nil {
		return nil, err
	}
	hc := loadgen.NewClient(1)
	eps := make([]loadgen.Endpoint, n)
	for i := range eps {
		if eps[i], err = loadgen.Register(ctx, hc, *f.url, tok, countries[i%len(countries)]); err != nil {
			return nil, err
		}
	}
	return eps, nil
}

// cpuWatch splits the machine's CPU time over an interval between the
// server, this process and everything else, so that a figure measured while
// other work loaded the machine says so.
type cpuWatch struct {
	pid         int
	t0          time.Time
	srv0, self0 loadgen.ProcStats
	busy0       time.Duration
}

func startWatch(pid int) *cpuWatch {
	w := &cpuWatch{pid: pid, t0: time.Now()}
	w.self0, _ = loadgen.ReadProc(os.Getpid())
	if pid > 0 {
		w.srv0, _ = loadgen.ReadProc(pid)
	}
	w.busy0, _, _ = loadgen.MachineCPU()
	return w
}

// others returns the share of the machine's CPU capacity that processes
// other than the server and this one used since the watch started.
func (w *cpuWatch) others() string {
	busy, cpus, err := loadgen.MachineCPU()
	if err != nil || cpus == 0 {
		return "?"
	}
	self, _ := loadgen.ReadProc(os.Getpid())
	o := busy - w.busy0 - (self.CPU - w.self0.CPU)
	switch {
	case w.pid == os.Getpid(): // the server is this process
	case w.pid > 0:
		srv, _ := loadgen.ReadProc(w.pid)
		o -= srv.CPU - w.srv0.CPU
	default:
		return "?"
	}
	return fmt.Sprintf("%.0f%%", 100*max(o, 0).Seconds()/(time.Since(w.t0).Seconds()*float64(cpus)))
}

func runBenchIngest(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "ingest", "[--url URL] [--operator-token FILE] [--clients 8] [--duration 10s | --records N] [--server-pid PID]")
	rf := addRegionFlags(fs)
	countries := fs.String("countries", "DE", "comma-separated countries of the endpoints, in turn (DE: all into zurich's store)")
	endpoints := fs.Int("endpoints", 64, "endpoints to register per round")
	clients := fs.Int("clients", 8, "concurrent clients, each with one batch in flight")
	batch := fs.Int("batch", 500, "records per batch")
	duration := fs.Duration("duration", 10*time.Second, "how long to measure each round")
	warmup := fs.Duration("warmup", 2*time.Second, "warm-up before each round's measurement")
	rounds := fs.Int("rounds", 3, "rounds, each followed by its raw-insert baseline")
	records := fs.Int64("records", 0, "send this many records in one round, with no warm-up, and report progress (for peak memory) instead of measuring a duration")
	raw := fs.Bool("raw", true, "after each round, insert the same rows into a fresh SQLite file in-process (the baseline)")
	rawDir := fs.String("raw-dir", os.TempDir(), "directory for the baseline's SQLite files (deleted after each round)")
	pid := fs.Int("server-pid", 0, "process id of the server, to report its CPU time and memory from /proc")
	storeSpec := fs.String("store", "", "instead of loading --url, serve one region (zurich, no peers) in this process with this store, sqlite:PATH or a postgres:// URL (a fresh schema is made in it); the baseline then inserts into the same kind of store")
	ingestURLs := fs.String("region-urls", "", "comma-separated base URLs of the processes of the endpoints' region (vitrine serve --role region:NAME): the endpoints send to them in turn, as a load balancer would spread them, instead of to the URL their registration gave")
	settle := fs.Duration("settle", 3*time.Second, "pause after each round's ingest, so that the server's folding and exchange finish before the baseline runs")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	cs := cli.SplitList(*countries)
	if len(cs) == 0 || *endpoints < 1 || *clients < 1 || *rounds < 1 || *batch < 1 || *batch > 10000 {
		fs.Usage()
		return errors.New("need countries, and positive endpoints, clients, rounds and a batch of at most 10,000")
	}
	if *records > 0 {
		*rounds = 1
	}
	var ipr *inProcessRegion
	if *storeSpec != "" {
		var err error
		if ipr, err = startInProcessRegion(ctx, *storeSpec, *rawDir); err != nil {
			return err
		}
		defer ipr.close()
		*pid = os.Getpid() // the server is this process
		fmt.Fprintf(e.Stdout, "in-process region zurich at %s, store %s (server and load generator share this process: \"client CPU\" and the memory columns are the whole process's)\n", ipr.url, ipr.kind)
		cli.TuneGC()
	}
	start := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	fmt.Fprintf(e.Stdout, "ingest: %d endpoints (%s), %d clients, batches of %d, %s after %s warm-up\n",
		*endpoints, strings.Join(cs, ","), *clients, *batch, *duration, *warmup)
	fmt.Fprintln(e.Stdout, "(CPU per million records; others: the machine's CPU that other processes used during the ingest/raw insert)")
	const row = "%5v %12v %10v %10v %6v %12v %6v %11v %11v %11v %11v %7v\n"
	if *records == 0 {
		fmt.Fprintf(e.Stdout, row, "round", "ingest rec/s", "batch p50", "batch p99", "errors", "raw rec/s", "ratio", "server CPU", "client CPU", "server RSS", "server HWM", "others")
	}
	for r := 1; r <= *rounds; r++ {
		runID := strconv.FormatInt(time.Now().UnixNano(), 36)
		var eps []loadgen.Endpoint
		var err error
		if ipr != nil {
			eps, err = ipr.register(cs, *endpoints)
		} else {
			eps, err = rf.register(ctx, cs, *endpoints)
		}
		if err != nil {
			return err
		}
		if us := cli.SplitList(*ingestURLs); len(us) > 0 {
			for i := range eps {
				eps[i].IngestURL = strings.TrimSuffix(us[i%len(us)], "/") + "/v1/telemetry"
			}
		}
		w := &loadgen.Workload{Seed: *rf.seed, Run: uint64(time.Now().UnixNano()), Start: start}
		self0, _ := loadgen.ReadProc(os.Getpid())
		watch := startWatch(*pid)
		var before loadgen.ProcStats
		if *pid > 0 {
			if before, err = loadgen.ReadProc(*pid); err != nil {
				return fmt.Errorf("reading the server's /proc: %w", err)
			}
		}
		cfg := loadgen.IngestConfig{Endpoints: eps, Clients: *clients, BatchSize: *batch, Warmup: *warmup, Duration: *duration,
			Records: *records, Workload: w, RunID: runID}
		if *records > 0 {
			cfg.Progress = progress(e, *pid)
		}
		res, err := loadgen.Ingest(ctx, cfg)
		if err != nil {
			return err
		}
		self1, _ := loadgen.ReadProc(os.Getpid())
		others := watch.others()
		// Server CPU per million records ingested in the whole round,
		// warm-up included; the client's likewise.
		perM := func(d time.Duration) string {
			return fmt.Sprintf("%.2fs/M", d.Seconds()/(float64(len(res.Sent)**batch)/1e6))
		}
		clientCPU := perM(self1.CPU - self0.CPU)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(*settle):
		}
		var after loadgen.ProcStats
		if *pid > 0 {
			if after, err = loadgen.ReadProc(*pid); err != nil {
				return fmt.Errorf("reading the server's /proc: %w", err)
			}
		}
		rawRate, ratio := "-", "-"
		if *raw {
			path := filepath.Join(*rawDir, fmt.Sprintf("vitrine-raw-%s.db", runID))
			rawWatch := startWatch(*pid)
			var rr loadgen.RawResult
			if ipr != nil && ipr.kind == "postgres" {
				rr, err = loadgen.RawInsertPostgres(ctx, ipr.dsn, "vitrine_raw_"+runID, w, eps, res.Sent, *batch)
			} else {
				rr, err = loadgen.RawInsert(ctx, path, w, eps, res.Sent, *batch)
			}
			others += "/" + rawWatch.others()
			for _, suffix := range []string{"", "-wal", "-shm"} {
				os.Remove(path + suffix)
			}
			if err != nil {
				return err
			}
			rawRate, ratio = rate(rr.PerSecond()), floor2(res.PerSecond()/rr.PerSecond())
		}
		cpu, rss, hwm := "-", "-", "-"
		if *pid > 0 {
			cpu, rss, hwm = perM(after.CPU-before.CPU), mib(after.RSS), mib(after.HWM)
		}
		if ipr != nil {
			cpu = "-" // in clientCPU
		}
		if *records > 0 {
			fmt.Fprintf(e.Stdout, "done: %d records in %s: %.0f records/s, batch p50 %s p99 %s, %d errors, %d bytes/record; raw insert %s records/s (ratio %s)\n",
				res.Records, res.Elapsed.Round(time.Millisecond), math.Floor(res.PerSecond()), ms(res.P50), ms(res.P99), res.Errors, res.BodyBytes / *batch, rawRate, ratio)
			fmt.Fprintf(e.Stdout, "CPU per million records: server %s, client %s; server VmRSS %s, VmHWM %s; other processes used %s of the machine's CPU\n", cpu, clientCPU, rss, hwm, others)
		} else {
			fmt.Fprintf(e.Stdout, row, r, rate(res.PerSecond()), ms(res.P50), ms(res.P99), res.Errors, rawRate, ratio, cpu, clientCPU, rss, hwm, others)
		}
		if res.FirstError != "" {
			fmt.Fprintf(e.Stdout, "  first error: %s\n", res.FirstError)
		}
	}
	return nil
}

// progress prints the ingest's progress every 10 s, with the server's
// memory when pid is set.
func progress(e *env, pid int) func(int64, time.Duration) {
	var last int64
	var lastT time.Duration
	return func(n int64, t time.Duration) {
		if t-lastT < 10*time.Second {
			return
		}
		line := fmt.Sprintf("%7.1fs %11d records %8.0f records/s (last interval %8.0f/s)", t.Seconds(), n, float64(n)/t.Seconds(), float64(n-last)/(t-lastT).Seconds())
		if pid > 0 {
			if ps, err := loadgen.ReadProc(pid); err == nil {
				line += fmt.Sprintf("  server VmRSS %s VmHWM %s CPU %.0fs", mib(ps.RSS), mib(ps.HWM), ps.CPU.Seconds())
			}
		}
		fmt.Fprintln(e.Stdout, line)
		last, lastT = n, t
	}
}

// rate and floor2 never round up: a figure is at most what was measured.
func rate(perSecond float64) string { return strconv.FormatInt(int64(perSecond), 10) }

func floor2(x float64) string { return strconv.FormatFloat(math.Floor(x*100)/100, 'f', 2, 64) }

func mib(b int64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }

func runBenchVerdicts(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "verdicts", "[--url URL] [--operator-token FILE] [--clients 4] [--hashes 100000]")
	rf := addRegionFlags(fs)
	country := fs.String("country", "DE", "country of the asking endpoint: its home region answers")
	clients := fs.Int("clients", 4, "concurrent clients, each with one request in flight")
	hashes := fs.Int("hashes", 100000, "hashes to look up per round, batched and then one by one")
	batch := fs.Int("batch", 1000, "hashes per batched POST")
	rounds := fs.Int("rounds", 3, "rounds")
	pid := fs.Int("server-pid", 0, "process id of the server, to report what other processes used of the machine's CPU meanwhile")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *clients < 1 || *hashes < 1 || *batch < 2 || *rounds < 1 {
		fs.Usage()
		return errors.New("need positive clients, hashes and rounds, and a batch of at least 2")
	}
	eps, err := rf.register(ctx, []string{*country}, 1)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "verdicts: region %s, %d clients, %d hashes per round from the workload's Zipf law (seed %d)\n", eps[0].Region, *clients, *hashes, *rf.seed)
	const row = "%5v %14v %9v %9v %14v %9v %9v %6v %6v %9v  %s\n"
	fmt.Fprintf(e.Stdout, row, "round", "batched hash/s", "req p50", "req p99", "single hash/s", "req p50", "req p99", "ratio", "errors", "others", "verdicts (batched)")
	for r := 1; r <= *rounds; r++ {
		w := &loadgen.Workload{Seed: *rf.seed, Run: uint64(r)}
		hs := w.LookupHashes(*hashes)
		cfg := loadgen.LookupConfig{Region: eps[0].RegionURL(), Token: eps[0].Token, Clients: *clients, Batch: *batch, Hashes: hs}
		watch := startWatch(*pid)
		b, err := loadgen.Lookup(ctx, cfg)
		if err != nil {
			return err
		}
		others := watch.others()
		cfg.Batch = 1
		watch = startWatch(*pid)
		s, err := loadgen.Lookup(ctx, cfg)
		if err != nil {
			return err
		}
		others += "/" + watch.others()
		vs := []string{fmt.Sprintf("known %d", b.Known)}
		for _, v := range []string{"malicious", "suspicious", "clean", "unknown"} {
			vs = append(vs, fmt.Sprintf("%s %d", v, b.Verdicts[v]))
		}
		fmt.Fprintf(e.Stdout, row, r, rate(b.PerSecond()), ms(b.P50), ms(b.P99),
			rate(s.PerSecond()), ms(s.P50), ms(s.P99), floor2(b.PerSecond()/s.PerSecond()),
			b.Errors+s.Errors, others, strings.Join(vs, ", "))
		for _, fe := range []string{b.FirstError, s.FirstError} {
			if fe != "" {
				fmt.Fprintf(e.Stdout, "  first error: %s\n", fe)
			}
		}
	}
	return nil
}

func runBenchPropagation(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "propagation", "[--url URL] [--operator-token FILE] [--from RU] [--to DE] [--samples 300]")
	rf := addRegionFlags(fs)
	from := fs.String("from", "RU", "country of the reporting endpoint (RU: moscow)")
	to := fs.String("to", "DE", "country of the endpoint that asks the other region (DE: zurich)")
	samples := fs.Int("samples", 300, "reports, one at a time")
	poll := fs.Duration("poll", 2*time.Millisecond, "interval between verdict lookups")
	loadClients := fs.Int("load-clients", 0, "if positive, ingest with this many clients in the background meanwhile")
	loadCountries := fs.String("load-countries", "DE,RU", "countries of the background load's endpoints, in turn")
	pid := fs.Int("server-pid", 0, "process id of the server, to report what other processes used of the machine's CPU meanwhile")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *samples < 1 {
		fs.Usage()
		return errors.New("need at least one sample")
	}
	eps, err := rf.register(ctx, []string{*from, *to}, 2)
	if err != nil {
		return err
	}
	if eps[0].Region == eps[1].Region {
		return fmt.Errorf("%s and %s are both served by %s; pick countries of two regions", *from, *to, eps[0].Region)
	}
	var load <-chan loadResult
	if *loadClients > 0 {
		lctx, cancel := context.WithCancel(ctx)
		defer cancel()
		lcs := cli.SplitList(*loadCountries)
		leps, err := rf.register(ctx, lcs, max(*loadClients, len(lcs)))
		if err != nil {
			return err
		}
		ch := make(chan loadResult, 1)
		load = ch
		go func() {
			w := &loadgen.Workload{Seed: *rf.seed, Run: uint64(time.Now().UnixNano()), Start: time.Now().Add(-time.Hour).Truncate(time.Millisecond)}
			r, err := loadgen.Ingest(lctx, loadgen.IngestConfig{Endpoints: leps, Clients: *loadClients, Duration: 24 * time.Hour, Workload: w,
				RunID: "load" + strconv.FormatInt(time.Now().UnixNano(), 36)})
			ch <- loadResult{r, err}
		}()
		time.Sleep(2 * time.Second) // let the load settle
		defer func() {
			cancel()
			if lr := <-load; lr.err == nil || errors.Is(lr.err, context.Canceled) {
				fmt.Fprintf(e.Stdout, "background load: %d batches acknowledged, %d errors\n", len(lr.res.Sent), lr.res.Errors)
			}
		}()
	}
	fmt.Fprintf(e.Stdout, "propagation: report in %s (%s), verdict asked in %s (%s) every %s; %d samples; background ingest clients: %d\n",
		eps[0].Region, *from, eps[1].Region, *to, *poll, *samples, *loadClients)
	t0 := time.Now()
	watch := startWatch(*pid)
	res, err := loadgen.Propagation(ctx, loadgen.PropagationConfig{From: eps[0], To: eps[1], Samples: *samples, Poll: *poll, Seed: *rf.seed})
	if err != nil {
		if len(res.Remote) == 0 {
			return err
		}
		// Interrupted: what was measured still counts.
		fmt.Fprintf(e.Stdout, "interrupted after %d samples (%v)\n", len(res.Remote)+res.Timeouts, err)
	}
	const row = "%-38v %8v %9v %9v %9v\n"
	fmt.Fprintf(e.Stdout, row, "", "samples", "p50", "p99", "max")
	for _, l := range []struct {
		name string
		d    []time.Duration
	}{
		{"report acknowledged by " + eps[0].Region, res.Ack},
		{"verdict in " + eps[0].Region + " (same region)", res.Local},
		{"verdict in " + eps[1].Region + " (other region)", res.Remote},
	} {
		fmt.Fprintf(e.Stdout, row, l.name, len(l.d), ms(loadgen.Quantile(l.d, 0.5)), ms(loadgen.Quantile(l.d, 0.99)), ms(loadgen.Quantile(l.d, 1)))
	}
	fmt.Fprintf(e.Stdout, "timeouts or errors: %d; took %s; other processes used %s of the machine's CPU\n", res.Timeouts, time.Since(t0).Round(time.Second), watch.others())
	if res.FirstError != "" {
		fmt.Fprintf(e.Stdout, "  first error: %s\n", res.FirstError)
	}
	return nil
}

type loadResult struct {
	res loadgen.IngestResult
	err error
}

// inProcessRegion is one region served from this process the way
// `vitrine up` serves it — the same handler, token checks, pseudonyms and
// store — but with no peers to exchange aggregates with, over a loopback
// listener. It lets `vitrine-bench ingest` load a store that `vitrine up` cannot be
// configured with.
type inProcessRegion struct {
	url, kind, dsn string
	issuer         *endpoint.Issuer
	policy         *residency.Policy
	st             store.Store
	srv            *http.Server
	cleanup        []func()
}

func startInProcessRegion(ctx context.Context, spec, dir string) (_ *inProcessRegion, err error) {
	ipr := &inProcessRegion{policy: residency.Default()}
	defer func() {
		if err != nil {
			ipr.close()
		}
	}()
	tmp, err := os.MkdirTemp(dir, "vitrine-bench-region-")
	if err != nil {
		return nil, err
	}
	ipr.cleanup = append(ipr.cleanup, func() { os.RemoveAll(tmp) })
	ipr.kind, _, err = store.ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	if ipr.kind == "postgres" {
		// A fresh schema, dropped afterwards, so that each run starts
		// from an empty store.
		schema := "vitrine_bench_" + strconv.FormatInt(time.Now().UnixNano(), 36)
		conn, err := pgx.Connect(ctx, spec)
		if err != nil {
			return nil, fmt.Errorf("connecting to %s: %w", spec, err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
			return nil, err
		}
		ipr.cleanup = append(ipr.cleanup, func() {
			if c, err := pgx.Connect(context.Background(), spec); err == nil {
				c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
				c.Close(context.Background())
			}
		})
		ipr.dsn = spec
		u, err := url.Parse(spec)
		if err != nil {
			return nil, err
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		spec = u.String()
	}
	if ipr.st, err = store.Open(ctx, spec); err != nil {
		return nil, err
	}
	if ipr.issuer, err = endpoint.LoadOrCreateIssuer(filepath.Join(tmp, "endpoint.key"), filepath.Join(tmp, "endpoint.vkey"), "bench/endpoints"); err != nil {
		return nil, err
	}
	pkey, err := keys.LoadOrCreateToken(filepath.Join(tmp, "pseudonym.key"))
	if err != nil {
		return nil, err
	}
	wrapper, err := custody.WrapOnlyKey("zurich")
	if err != nil {
		return nil, err
	}
	r := region.New(region.Config{
		Name:       "zurich",
		Store:      ipr.st,
		Wrapper:    wrapper,
		Tokens:     ipr.issuer.Verifier(),
		Pseudonyms: endpoint.PseudonymKey(pkey),
		Policy:     func() *residency.Policy { return ipr.policy },
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ipr.srv = &http.Server{Handler: r.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10}
	go ipr.srv.Serve(ln)
	ipr.url = "http://" + ln.Addr().String()
	return ipr, nil
}

// register registers n endpoints of the region, their countries taken
// from countries in turn.
func (ipr *inProcessRegion) register(countries []string, n int) ([]loadgen.Endpoint, error) {
	eps := make([]loadgen.Endpoint, n)
	for i := range eps {
		c := countries[i%len(countries)]
		if home, err := ipr.policy.RegionFor(c); err != nil || home != "zurich" {
			return nil, fmt.Errorf("the in-process region is zurich; %s endpoints belong to %s", c, home)
		}
		id, tok, err := ipr.issuer.Register(c, "zurich")
		if err != nil {
			return nil, err
		}
		eps[i] = loadgen.Endpoint{ID: id.ID, Token: tok, Region: "zurich", IngestURL: ipr.url + "/v1/telemetry", Country: c}
	}
	return eps, nil
}

func (ipr *inProcessRegion) close() {
	if ipr.srv != nil {
		ipr.srv.Close()
	}
	if ipr.st != nil {
		ipr.st.Close()
	}
	for i := len(ipr.cleanup) - 1; i >= 0; i-- {
		ipr.cleanup[i]()
	}
}
