package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vitrine-dev/vitrine/agent"
	"github.com/vitrine-dev/vitrine/internal/cli"
	"github.com/vitrine-dev/vitrine/scan"
)

func runAgentRegister(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "agent register", "[--platform URL] [--token FILE] --country CC [--dir DIR] [--monitor URL …]")
	base := fs.String("platform", cli.DefaultPlatform(), "the platform to register with; its discovery document is pinned now")
	tokenFile := fs.String("token", cli.DefaultOperatorToken, "file holding the enrolment token (in 'vitrine up', the operator token)")
	country := fs.String("country", "", "the endpoint's country (ISO 3166-1 alpha-2): it chooses the home region")
	dir := fs.String("dir", userDir("agent"), "the agent's directory: pinned trust, identity, installed releases")
	var monitors platforms
	fs.Var(&monitors, "monitor", "`URL` of a supervisor's monitor to report each update's checkpoint to, besides those the discovery document lists (repeat for several)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	for _, m := range monitors {
		if err := agent.CheckMonitorURL(m); err != nil {
			return fmt.Errorf("--monitor: %w", err)
		}
	}
	if *country == "" {
		fs.Usage()
		return errors.New("--country is required")
	}
	token, err := cli.ReadToken(*tokenFile, "the enrolment token")
	if err != nil {
		return err
	}
	a, err := agent.Register(ctx, *dir, *base, token, strings.ToUpper(*country), nil)
	if err != nil {
		return err
	}
	for _, m := range monitors {
		if err := a.AddMonitor(m); err != nil {
			return err
		}
	}
	id := a.Identity()
	fmt.Fprintf(e.Stdout, "registered endpoint %s, home region %s; trust pinned in %s\n", id.ID, id.Region, *dir)
	return nil
}

func runAgentUpdate(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "agent update", "[--dir DIR]")
	dir := fs.String("dir", userDir("agent"), "the agent's directory")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	a, err := agent.Open(*dir)
	if err != nil {
		return err
	}
	done, err := a.Update(ctx)
	for _, in := range done {
		how := ""
		if len(in.Delta) > 0 {
			how = " (by delta: " + strings.Join(in.Delta, ", ") + ")"
		}
		fmt.Fprintf(e.Stdout, "installed %s %s, release-log entry %d%s\n", in.Release, in.Version, in.LogIndex, how)
		for _, r := range in.Monitors {
			if r.Confirmed {
				fmt.Fprintf(e.Stdout, "  the checkpoint it was verified in is consistent with what monitor %s verified\n", r.Monitor)
			} else {
				fmt.Fprintf(e.Stdout, "  monitor %s could not confirm the checkpoint: %v\n", r.Monitor, r.Err)
			}
		}
	}
	if err != nil {
		return err
	}
	if len(done) == 0 {
		fmt.Fprintln(e.Stdout, "up to date")
	}
	return nil
}

// runAgentScan is 'vitrine agent scan'. Its exit status is that of
// clamscan, which scripts rely on: 0 nothing found, 1 something found,
// 2 an error (a path that cannot be read, a file that could not be
// scanned, a report that did not reach the home region), whatever was
// found.
func runAgentScan(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "agent scan", "[--dir DIR] [--workers N] [--no-report] PATH...")
	dir := fs.String("dir", userDir("agent"), "the agent's directory")
	workers := fs.Int("workers", 0, "files scanned at once (0: one per core)")
	noReport := fs.Bool("no-report", false, "do not report detections to the home region")
	fs.Usage = func() {
		fmt.Fprintf(e.Stderr, "usage: vitrine agent scan [--dir DIR] [--workers N] [--no-report] PATH...\n\n%s\n\nexit status: 0 nothing found, 1 something found, 2 an error\n\nflags:\n", commands["agent scan"].Summary)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &cli.ExitError{Status: 2, Err: err}
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return &cli.ExitError{Status: 2, Err: errors.New("name at least one file or directory to scan")}
	}
	// What cannot be read is reported and the rest scanned, as clamscan
	// does; the exit status is then 2 whatever was found.
	var paths []string
	missing := 0
	for _, p := range fs.Args() {
		if _, err := os.Stat(p); err != nil {
			fmt.Fprintf(e.Stderr, "cannot scan %s: %v\n", p, err)
			missing++
			continue
		}
		paths = append(paths, p)
	}
	a, err := agent.Open(*dir)
	if err != nil {
		return &cli.ExitError{Status: 2, Err: err}
	}
	start := time.Now()
	var files, errs int
	ds, err := a.Scan(ctx, paths, *workers, func(r scan.Result) {
		files++
		if r.Err != nil {
			errs++
			fmt.Fprintf(e.Stderr, "%s: %v\n", r.Path, r.Err)
		}
	})
	if err != nil {
		return &cli.ExitError{Status: 2, Err: err}
	}
	sort.Slice(ds, func(i, j int) bool {
		if ds[i].Path != ds[j].Path {
			return ds[i].Path < ds[j].Path
		}
		return ds[i].Signature < ds[j].Signature
	})
	infected := map[string]bool{}
	for _, d := range ds {
		fmt.Fprintf(e.Stdout, "%s: %s FOUND\n", d.Path, d.Signature)
		infected[d.Path] = true
	}
	errs += missing
	fmt.Fprintf(e.Stdout, "scanned %s in %s: %d infected, %d unreadable\n", plural(files, "file", "files"), time.Since(start).Round(time.Millisecond), len(infected), errs)
	if len(ds) > 0 && !*noReport {
		if err := a.Report(ctx, ds); err != nil {
			return &cli.ExitError{Status: 2, Err: fmt.Errorf("reporting detections: %w", err)}
		}
		fmt.Fprintf(e.Stdout, "reported %d detections to region %s\n", len(ds), a.Identity().Region)
	}
	switch {
	case errs > 0:
		return &cli.ExitError{Status: 2, Err: fmt.Errorf("%s could not be scanned", plural(errs, "path", "paths"))}
	case len(ds) > 0:
		return &cli.ExitError{Status: 1}
	}
	return nil
}

func runAgentAccesses(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "agent accesses", "[--dir DIR] [--monitor URL]")
	dir := fs.String("dir", userDir("agent"), "the agent's directory")
	mon := fs.String("monitor", "", "the supervisor's monitor to ask (default: the first one the agent pinned)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	a, err := agent.Open(*dir)
	if err != nil {
		return err
	}
	if *mon == "" {
		ms := a.Monitors()
		if len(ms) == 0 {
			return errors.New("the agent pinned no monitor: name one with --monitor")
		}
		*mon = ms[0]
	}
	pseudonym, seen, err := a.Accesses(ctx, *mon)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "endpoint %s, pseudonym %s: %d accesses, each proven in its log\n", a.Identity().ID, pseudonym, len(seen))
	if len(seen) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tBY\tACTION\tRECORDS\tJUSTIFICATION\tOUTCOME\tENTRY")
	for _, s := range seen {
		r := s.Record
		fmt.Fprintf(tw, "%s\t%s (%s, %s)\t%s\t%d\t%s: %s\t%s\t%s/%d\n", r.Time.UTC().Format(time.RFC3339), r.Principal.ID, r.Principal.Role, r.Principal.Location,
			r.Action, r.Resource.Count, r.Justification.Code, r.Justification.Detail, r.Outcome, s.Log, s.Index)
	}
	return tw.Flush()
}
