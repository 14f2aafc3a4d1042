package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vitrine-dev/vitrine/internal/cli"
	"github.com/vitrine-dev/vitrine/internal/loadgen"
)

// The accountability benchmark of docs/performance.md: reads through a
// region's access gateway, each logged before anything is released, beside
// plain appends of entries of the same size, in the same run against a
// running `vitrine up`. The platform's access logs take entries only from
// their regions, so the plain appends go to a standalone `vitrine log
// serve` (--append-url), the same log code; without one they are left out.

func runBenchAccess(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "access", "[--url URL] [--operator-token FILE] [--append-url URL --append-token FILE] [--clients 1,64,1024] [--duration 10s] [--warmup 2s] [--rounds 1]")
	rf := addRegionFlags(fs)
	appendURL := fs.String("append-url", "", "base URL of a standalone log (vitrine log serve) for the plain appends to compare reads with; empty: no plain appends")
	appendTokenFile := fs.String("append-token", "", "file holding that log's add token (its add.token)")
	clients := fs.String("clients", "1,64,1024", "comma-separated numbers of concurrent clients")
	duration := fs.Duration("duration", 10*time.Second, "how long to measure each kind of request at each number of clients")
	warmup := fs.Duration("warmup", 2*time.Second, "warm-up before each measurement")
	rounds := fs.Int("rounds", 1, "rounds, each over every number of clients")
	country := fs.String("country", "DE", "country of the endpoints that report the data set; their home region is read")
	endpoints := fs.Int("endpoints", 64, "endpoints that report the data set")
	records := fs.Int64("records", 5000, "records in the data set")
	hashes := fs.Uint64("hashes", 300, "distinct files the data set's records report (by a Zipf law; detections add files of their own)")
	batch := fs.Int("batch", 50, "records per ingested batch: every batch has its own data key")
	limit := fs.Int("limit", 10, "the limit parameter of every read")
	entrySize := fs.Int("entry-size", 0, "bytes per plain append (0: the mean size of the access records that threat-only reads log, measured at the start)")
	pid := fs.Int("server-pid", 0, "process id of the server, to report what other processes used of the machine's CPU meanwhile")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	steps, err := clientSteps(*clients)
	if err != nil {
		return err
	}
	if *endpoints < 1 || *records < 1 || *hashes < 2 || *batch < 1 || *rounds < 1 || *limit < 1 {
		fs.Usage()
		return errors.New("need positive endpoints, records, batch, rounds and limit, and at least 2 hashes")
	}
	if err := checkFiles(slices.Max(steps)); err != nil {
		return err
	}
	opTok, err := rf.operatorToken()
	if err != nil {
		return err
	}
	var appendTok string
	if *appendURL != "" {
		if appendTok, err = cli.ReadToken(*appendTokenFile, "the standalone log's add token"); err != nil {
			return err
		}
	}

	// The data set.
	eps, err := rf.register(ctx, []string{*country}, *endpoints)
	if err != nil {
		return err
	}
	region, regionURL := eps[0].Region, eps[0].RegionURL()
	runID := strconv.FormatInt(time.Now().UnixNano(), 36)
	w := &loadgen.Workload{Seed: *rf.seed, Run: uint64(time.Now().UnixNano()), Hashes: *hashes, Start: time.Now().Add(-time.Hour).Truncate(time.Millisecond)}
	ing, err := loadgen.Ingest(ctx, loadgen.IngestConfig{Endpoints: eps, Clients: min(8, *endpoints), BatchSize: *batch, Records: *records, Workload: w, RunID: "access-" + runID})
	if err != nil {
		return fmt.Errorf("ingesting the data set: %w", err)
	}
	known := map[string]bool{}
	for _, b := range ing.Sent {
		for _, r := range w.Batch(b.Endpoint, b.Seq, *batch) {
			known[r.SHA256] = true
		}
	}
	hs := make([]string, 0, len(known))
	for h := range known {
		hs = append(hs, h)
	}
	slices.Sort(hs)
	if len(hs) == 0 {
		return fmt.Errorf("ingesting the data set: no batch was acknowledged (%d errors, first: %s)", ing.Errors, ing.FirstError)
	}

	// The analyst, new in every run.
	hc := loadgen.NewClient(1)
	defer hc.Transport.(*http.Transport).CloseIdleConnections()
	who := loadgen.Principal{ID: "analyst:bench-" + runID, Role: "analyst", Location: "CH", Regions: []string{region}}
	tok, err := loadgen.CreatePrincipal(ctx, hc, *rf.url, opTok, who)
	if err != nil {
		return err
	}
	read := loadgen.ReadConfig{Region: regionURL, Token: tok, Justification: "RESPONSE_TO_PRODUCTION_ALERT; vitrine-bench access " + runID,
		Hashes: hs, Limit: *limit, Seed: *rf.seed}
	logURL := strings.TrimSuffix(*rf.url, "/") + "/logs/access-" + region

	fmt.Fprintf(e.Stdout, "access: region %s, %d records in %d batches from %d %s endpoints, %d distinct hashes; principal %s\n",
		region, len(ing.Sent)**batch, len(ing.Sent), *endpoints, *country, len(hs), who.ID)
	fmt.Fprintf(e.Stdout, "reads: GET %s/v1/records?sha256=<one of the %d, uniformly>&limit=%d, timed from sending to the answer's last byte\n", regionURL, len(hs), *limit)

	// What the gateway logs per read, so that the plain appends are of
	// the same size.
	sizes := map[bool]string{}
	for _, threatOnly := range []bool{true, false} {
		cfg := read
		cfg.Clients, cfg.Duration, cfg.ThreatOnly = 1, 3*time.Second, threatOnly
		r, err := loadgen.Read(ctx, cfg)
		if err != nil {
			return err
		}
		if r.Reads == 0 {
			return fmt.Errorf("no read succeeded: %s", r.FirstError)
		}
		ss, err := loadgen.EntrySizes(ctx, hc, logURL, r.Receipts[:min(64, len(r.Receipts))], 10*time.Second)
		if err != nil {
			return err
		}
		mean := 0
		for _, s := range ss {
			mean += s
		}
		mean /= len(ss)
		sizes[threatOnly] = fmt.Sprintf("%d B (%d–%d, %d entries)", mean, slices.Min(ss), slices.Max(ss), len(ss))
		if threatOnly && *entrySize == 0 {
			*entrySize = mean
		}
	}
	if *appendURL != "" {
		fmt.Fprintf(e.Stdout, "access records: threat-only read %s, custody read %s; plain appends of %d B to %s/add\n", sizes[true], sizes[false], *entrySize, strings.TrimSuffix(*appendURL, "/"))
	} else {
		fmt.Fprintf(e.Stdout, "access records: threat-only read %s, custody read %s; no plain appends (no --append-url), so no ratio\n", sizes[true], sizes[false])
	}
	fmt.Fprintf(e.Stdout, "%s measured after %s warm-up; ratio: rate against the plain appends' of the same row group; others: the machine's CPU that other processes used\n", *duration, *warmup)

	const row = "%5v %7v  %-18s %9v %9v %9v %9v %6v %6v %8v %7v\n"
	fmt.Fprintf(e.Stdout, row, "round", "clients", "kind", "req/s", "p50", "p99", "max", "errors", "ratio", "rec/read", "others")
	for r := 1; r <= *rounds; r++ {
		for _, n := range steps {
			var a *loadgen.Result
			if *appendURL != "" {
				watch := startWatch(*pid)
				res, err := loadgen.Run(ctx, loadgen.Config{URL: strings.TrimSuffix(*appendURL, "/"), Token: appendTok, Clients: n, Duration: *duration, Warmup: *warmup, EntrySize: *entrySize})
				a = &res
				if ctx.Err() != nil {
					return ctx.Err()
				}
				note := ""
				if err != nil {
					note = " (" + err.Error() + ")"
				}
				fmt.Fprintf(e.Stdout, row, r, n, "append", rate(a.PerSecond()), ms(a.P50), ms(a.P99), ms(a.Max), a.Errors, "", "", watch.others())
				if a.FirstError != "" {
					fmt.Fprintf(e.Stdout, "  first error: %s%s\n", a.FirstError, note)
				}
			}
			for _, k := range []struct {
				name       string
				threatOnly bool
			}{{"read threat-only", true}, {"read custody", false}} {
				cfg := read
				cfg.Clients, cfg.Warmup, cfg.Duration, cfg.ThreatOnly = n, *warmup, *duration, k.threatOnly
				cfg.Seed += uint64(r)
				watch := startWatch(*pid)
				res, err := loadgen.Read(ctx, cfg)
				if err != nil {
					return err
				}
				perRead := "-"
				if res.Reads > 0 {
					perRead = strconv.FormatFloat(float64(res.Records)/float64(res.Reads), 'f', 1, 64)
				}
				ratio := "-"
				if a != nil {
					ratio = floor2(res.PerSecond() / a.PerSecond())
				}
				fmt.Fprintf(e.Stdout, row, r, n, k.name, rate(res.PerSecond()), ms(res.P50), ms(res.P99), ms(res.Max), res.Errors,
					ratio, perRead, watch.others())
				if res.FirstError != "" {
					fmt.Fprintf(e.Stdout, "  first error: %s\n", res.FirstError)
				}
				if !k.threatOnly && res.Opened != res.Records {
					fmt.Fprintf(e.Stdout, "  %d of %d records released without their personal fields\n", res.Records-res.Opened, res.Records)
				}
				if k.threatOnly && res.Opened > 0 {
					fmt.Fprintf(e.Stdout, "  %d threat-only records released with personal fields\n", res.Opened)
				}
			}
		}
	}
	return nil
}

// clientSteps parses a comma-separated list of client counts.
func clientSteps(s string) ([]int, error) {
	var steps []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 10000 {
			return nil, fmt.Errorf("bad --clients value %q", f)
		}
		steps = append(steps, n)
	}
	return steps, nil
}

// checkFiles makes sure this process may open a connection per client and
// then some. Go raises the soft limit on open files to the hard one at
// start; the server, a process of its own, needs as many.
func checkFiles(clients int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil // not a limit this system has
	}
	if need := uint64(clients) + 256; lim.Cur < need {
		return fmt.Errorf("%d clients need about %d open files, and this process may open %d: raise `ulimit -n` for the bench and the server", clients, need, lim.Cur)
	}
	return nil
}
