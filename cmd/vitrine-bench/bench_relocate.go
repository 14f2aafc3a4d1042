package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/loadgen"
	"github.com/vitrine-dev/vitrine/internal/relocate"
)

func runBenchRelocate(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "relocate", "--url URL --operator-token FILE [--records 1000000] [--country BR] [--to zurich]")
	rf := addRegionFlags(fs)
	records := fs.Int64("records", 1_000_000, "records to load into the country's region before relocating it")
	country := fs.String("country", "BR", "the country to load and relocate")
	to := fs.String("to", "zurich", "the region to relocate it to")
	endpoints := fs.Int("endpoints", 100, "endpoints of the country that report the records")
	batch := fs.Int("batch", 500, "records per batch")
	settle := fs.Duration("settle", 0, "wait this long after loading, so that the stores fold what they took in before the relocation starts (a store that has been up a while has)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *rf.url == "" {
		fs.Usage()
		return errors.New("--url is required")
	}
	token, err := rf.operatorToken()
	if err != nil {
		return err
	}
	eps, err := rf.register(ctx, []string{*country}, *endpoints)
	if err != nil {
		return err
	}
	w := &loadgen.Workload{Seed: uint64(time.Now().UnixNano()), Start: time.Now().Add(-time.Hour).UTC()}
	fmt.Fprintf(e.Stderr, "loading %d records of %s…\n", *records, *country)
	loaded, err := loadgen.Ingest(ctx, loadgen.IngestConfig{Endpoints: eps, Clients: 8, BatchSize: *batch, Records: *records, Workload: w, RunID: fmt.Sprint(w.Seed)})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "loaded   %d records in %s (%.0f records/s)\n", loaded.Records, loaded.Elapsed.Round(time.Millisecond), loaded.PerSecond())

	if *settle > 0 {
		fmt.Fprintf(e.Stderr, "letting the stores settle for %s…\n", *settle)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(*settle):
		}
	}
	var j relocate.Job
	body, _ := json.Marshal(map[string]string{"country": *country, "to": *to})
	start := time.Now()
	if err := client.Call(ctx, nil, "POST", *rf.url+"/v1/relocations", token, body, 1<<20, &j); err != nil {
		return err
	}
	steps := map[string]time.Duration{}
	last, lastAt := j.Step, time.Now()
	for j.Step != relocate.StepDone && j.Error == "" {
		time.Sleep(20 * time.Millisecond)
		if err := client.Call(ctx, nil, "GET", *rf.url+"/v1/relocations/"+j.ID, token, nil, 1<<20, &j); err != nil {
			return err
		}
		if j.Step != last {
			steps[last] += time.Since(lastAt)
			last, lastAt = j.Step, time.Now()
		}
	}
	if j.Error != "" {
		return fmt.Errorf("relocation stopped: %s", j.Error)
	}
	total := j.Finished.Sub(j.Started)
	fmt.Fprint(e.Stdout, relocate.Describe(&j))
	fmt.Fprintf(e.Stdout, "relocated %d records in %s: %.0f records/s (request to done %s)\n",
		j.Copied, total.Round(time.Millisecond), float64(j.Copied)/total.Seconds(), time.Since(start).Round(time.Millisecond))
	for _, s := range []string{relocate.StepPolicy, relocate.StepCopy, relocate.StepVerify, relocate.StepSummary} {
		fmt.Fprintf(e.Stdout, "  %-7s %s\n", s, steps[s].Round(time.Millisecond))
	}
	return nil
}
