package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/internal/cli"
	"github.com/vitrine-dev/vitrine/internal/platform"
)

// buildClient waits for a build, which takes minutes; the context bounds
// it instead of a client timeout.
var buildClient = &http.Client{}

func runBuild(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "build", "[--url URL] [--token FILE] [--json] RECIPE")
	base := fs.String("url", cli.DefaultPlatform(), "base URL of the platform that builds, signs and publishes")
	tokenFile := fs.String("token", cli.DefaultOperatorToken, "file holding the operator token (<data>/operator.token of 'vitrine up')")
	asJSON := fs.Bool("json", false, `print the release as one JSON object {"name","version","artifacts":[{"name","sha256"}],"log_index"}`)
	timeout := fs.Duration("timeout", time.Hour, "give up waiting for the build after this long")
	if err := parseFlags(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("a recipe file is required (see recipes/)")
	}
	recipe, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	token, err := cli.ReadToken(*tokenFile, "the operator token")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	u := strings.TrimSuffix(*base, "/") + platform.BuildPath
	var named struct{ Name, Version string }
	_ = json.Unmarshal(recipe, &named) // the platform says what is wrong with a bad recipe
	fmt.Fprintf(e.Stderr, "building %s %s on %s (a rule database takes seconds, a Go program minutes)\n", named.Name, named.Version, *base)
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		watchBuild(watchCtx, e, u, token, named.Name, named.Version)
	}()
	var pub platform.Published
	err = callWith(ctx, buildClient, "POST", u, token, recipe, &pub)
	stopWatch()
	<-watched
	if err != nil {
		return fmt.Errorf("building %s: %w", fs.Arg(0), err)
	}
	if *asJSON {
		return json.NewEncoder(e.Stdout).Encode(&pub)
	}
	fmt.Fprintf(e.Stdout, "%s %s: release-log entry %d, in a witnessed checkpoint\n", pub.Name, pub.Version, pub.LogIndex)
	for _, a := range pub.Artifacts {
		fmt.Fprintf(e.Stdout, "  %-24s sha256:%s\n", a.Name, a.SHA256)
	}
	return nil
}

// watchBuild shows a person waiting on a build what the platform is doing:
// a line on e.Stderr each time the build reaches another step, and every
// half minute within a long one, with the time since the build began. It
// returns when ctx ends.
func watchBuild(ctx context.Context, e *env, u, token, name, version string) {
	start := time.Now()
	var last string
	var shown time.Time
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var ans platform.BuildsAnswer
		if err := call(ctx, "GET", u, token, nil, &ans); err != nil {
			continue // an older platform, or a moment's failure: the build's answer says what matters
		}
		for _, b := range ans.Builds {
			if b.Name != name || b.Version != version {
				continue
			}
			if b.Step != last || time.Since(shown) >= 30*time.Second {
				fmt.Fprintf(e.Stderr, "  %s  %s\n", elapsed(time.Since(start)), b.Step)
				last, shown = b.Step, time.Now()
			}
		}
	}
}
