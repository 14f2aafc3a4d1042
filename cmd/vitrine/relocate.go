package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/backoff"
	"github.com/vitrine-dev/vitrine/internal/cli"
	"github.com/vitrine-dev/vitrine/internal/relocate"
)

func runRelocate(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "relocate", "[--url URL] [--token FILE] (--country CC --to REGION | --job ID) [--json | --quiet]")
	base := fs.String("url", cli.DefaultPlatform(), "base URL of the platform")
	tokenFile := fs.String("token", cli.DefaultOperatorToken, "file holding the operator token (<data>/operator.token of 'vitrine up')")
	country := fs.String("country", "", "the country to relocate (ISO 3166-1 alpha-2)")
	to := fs.String("to", "", "the region to relocate it to")
	asJSON := fs.Bool("json", false, "print the finished job as JSON")
	quiet := fs.Bool("quiet", false, "print only the job's id once it has finished, for 'relocate verify --job' (progress still goes to standard error)")
	timeout := fs.Duration("timeout", 2*time.Hour, "give up waiting after this long (the relocation goes on)")
	job := fs.String("job", "", "follow this job instead of starting one")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *job == "" && (*country == "" || *to == "") {
		fs.Usage()
		return errors.New("either --country and --to or --job is required")
	}
	token, err := cli.ReadToken(*tokenFile, "the operator token")
	if err != nil {
		return err
	}
	u := strings.TrimSuffix(*base, "/")
	id := *job
	if id == "" {
		body, _ := json.Marshal(map[string]string{"country": *country, "to": *to})
		var j relocate.Job
		if err := call(ctx, "POST", u+"/v1/relocations", token, body, &j); err != nil {
			return err
		}
		id = j.ID
		fmt.Fprintf(e.Stderr, "relocation %s started: %s from %s to %s\n", j.ID, j.Country, j.From, j.To)
	}
	// The relocation runs in the platform; follow it, also across a
	// restart of the platform, until it ends.
	deadline := time.Now().Add(*timeout)
	var last string
	var failed backoff.State
	for {
		var j relocate.Job
		err := call(ctx, "GET", u+"/v1/relocations/"+id, token, nil, &j)
		// Progress every half second; a platform that does not answer
		// (restarting, or asking to wait) is asked again later and later.
		wait := 500 * time.Millisecond
		if err != nil {
			wait = failed.Next(followBackoff, err, rand.Float64())
		} else {
			failed = backoff.State{}
		}
		switch {
		case err == nil && (j.Step == relocate.StepDone || j.Error != ""):
			switch {
			case *quiet:
				fmt.Fprintln(e.Stdout, j.ID)
			case *asJSON:
				enc := json.NewEncoder(e.Stdout)
				enc.SetIndent("", "  ")
				_ = enc.Encode(&j)
			default:
				fmt.Fprint(e.Stdout, relocate.Describe(&j))
			}
			if j.Error != "" {
				return fmt.Errorf("relocation %s stopped: %s", j.ID, j.Error)
			}
			return nil
		case err == nil:
			if s := fmt.Sprintf("%s %d", j.Step, j.Copied); s != last {
				fmt.Fprintf(e.Stderr, "  %s: %d records copied\n", j.Step, j.Copied)
				last = s
			}
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			fmt.Fprintf(e.Stderr, "  waiting for the platform (again in %v): %v\n", wait.Round(time.Millisecond), err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("relocation %s has not finished after %s; follow it with --job %s", id, *timeout, id)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// followBackoff spaces the reads of a relocation's job while the platform
// does not answer.
var followBackoff = backoff.Policy{Min: 500 * time.Millisecond, Max: 10 * time.Second}

func runRelocateVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "relocate verify", "[--url URL] --job ID")
	base := fs.String("url", cli.DefaultPlatform(), "base URL of the platform whose logs to read")
	job := fs.String("job", "", "the relocation's job id (in its report and its log entries)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *job == "" {
		fs.Usage()
		return errors.New("--job is required")
	}
	ev := &relocate.Evidence{Access: map[string][]*access.Record{}}
	var err error
	if ev.Policies, _, err = loggedPolicies(ctx, *base, e.Stderr); err != nil {
		return err
	}
	d, err := fetchDiscovery(ctx, *base)
	if err != nil {
		return err
	}
	for _, l := range d.Logs {
		region, ok := strings.CutPrefix(l.Name, "access-")
		if !ok {
			continue
		}
		recs, err := accessRecords(ctx, *base, l.Name)
		if err != nil {
			return err
		}
		ev.Access[region] = recs
	}
	a, err := relocate.Verify(ev, *job)
	if a != nil {
		fmt.Fprintf(e.Stdout, "relocation %s: %s from %s to %s under policy version %d\n", a.Job, a.Country, a.From, a.To, a.Policy)
		fmt.Fprintf(e.Stdout, "  %d chunks: %d records relocated, %d received, %d deleted at %s\n", a.Chunks, a.Records, a.DestRecords, a.Deleted, a.From)
		if a.Digest != "" {
			fmt.Fprintf(e.Stdout, "  content digest %s at both ends\n", a.Digest)
		}
	}
	if err != nil {
		return fmt.Errorf("relocation %s does not verify: %w", *job, err)
	}
	fmt.Fprintln(e.Stdout, "OK: the logs account for every record of the relocation")
	return nil
}

// accessRecords reads every access record of the named log, from a
// checkpoint that meets the witness policy, after checking that the
// entries it reads make up that checkpoint's tree.
func accessRecords(ctx context.Context, base, name string) ([]*access.Record, error) {
	entries, err := logEntries(ctx, base, name)
	if err != nil {
		return nil, err
	}
	var out []*access.Record
	for _, e := range entries {
		if rec, err := access.Parse(e); err == nil {
			out = append(out, rec) // other entries (commitments) are not access records
		}
	}
	return out, nil
}

// logEntries reads every entry of the named log of the platform at base,
// each proven to be in a checkpoint that meets the witness policy: the
// bytes returned are the bytes proven (once they were read a second time,
// unverified, after the tree had been checked).
func logEntries(ctx context.Context, base, name string) ([][]byte, error) {
	t := target{platform: base, log: name}
	r, err := t.resolve(ctx, true)
	if err != nil {
		return nil, err
	}
	l, err := r.log()
	if err != nil {
		return nil, err
	}
	entries, _, err := l.Entries(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return entries, nil
}
