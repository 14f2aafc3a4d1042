package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/internal/loadgen"
)

func runBench(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "appends", "--url URL [--token FILE] [--clients 1,16,256,1024] [--duration 10s]")
	var targets multiFlag
	fs.Var(&targets, "url", "base `URL` of a log to load (POST <url>/add); repeat as NAME=URL to compare logs side by side in one run")
	tokenFile := fs.String("token", "", "file holding the bearer token for /add (for NAME=URL targets: NAME=FILE, repeatable)")
	clients := fs.String("clients", "1,16,256,1024", "comma-separated numbers of concurrent clients")
	duration := fs.Duration("duration", 10*time.Second, "how long to measure each step")
	warmup := fs.Duration("warmup", 2*time.Second, "warm-up before each measurement")
	size := fs.Int("entry-size", 128, "bytes per entry")
	track := fs.Bool("checkpoint-latency", true, "also measure the time from append to the first published checkpoint covering it")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if len(targets) == 0 {
		fs.Usage()
		return errors.New("--url is required")
	}
	tokens := map[string]string{}
	if *tokenFile != "" {
		for _, spec := range strings.Split(*tokenFile, ",") {
			name, file, ok := strings.Cut(spec, "=")
			if !ok {
				name, file = "", spec
			}
			b, err := os.ReadFile(file)
			if err != nil {
				return fmt.Errorf("reading token: %w", err)
			}
			tokens[name] = strings.TrimSpace(string(b))
		}
	}
	var steps []int
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 10000 {
			return fmt.Errorf("bad --clients value %q", s)
		}
		steps = append(steps, n)
	}
	const row = "%-10s %7v %10v %9v %9v %9v %6v %15v %15v%s\n"
	fmt.Fprintf(e.Stdout, row, "target", "clients", "appends/s", "p50", "p99", "max", "errors", "checkpoint p50", "checkpoint p99", "")
	for _, n := range steps {
		for _, t := range targets {
			name, u, ok := strings.Cut(t, "=")
			if !ok || strings.Contains(name, "/") {
				name, u = "log", t
			}
			tok := tokens[name]
			if tok == "" {
				tok = tokens[""]
			}
			r, err := loadgen.Run(ctx, loadgen.Config{URL: u, Token: tok, Clients: n, Duration: *duration, Warmup: *warmup, EntrySize: *size, TrackCheckpoint: *track})
			if ctx.Err() != nil {
				return ctx.Err()
			}
			note := ""
			if err != nil {
				note = " (" + err.Error() + ")"
			}
			if r.FirstError != "" {
				note += " first error: " + r.FirstError
			}
			fmt.Fprintf(e.Stdout, row, name, n, fmt.Sprintf("%.0f", r.PerSecond()), ms(r.P50), ms(r.P99), ms(r.Max), r.Errors, ms(r.CheckpointP50), ms(r.CheckpointP99), note)
		}
	}
	return nil
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + "ms"
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }
