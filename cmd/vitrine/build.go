package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/internal/loadgen"
	"github.com/vitrine-dev/vitrine/internal/platform"
)

// buildClient waits for a build, which takes minutes; the context bounds
// it instead of a client timeout.
var buildClient = &http.Client{}

func runBuild(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "build", "[--url URL] [--token FILE] [--json] RECIPE")
	base := fs.String("url", "http://127.0.0.1:8080", "base URL of the platform that builds, signs and publishes")
	tokenFile := fs.String("token", "./vitrine-data/operator.token", "file holding the operator token (`vitrine up`'s <data>/operator.token)")
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
	token, err := readToken(*tokenFile, "the operator token")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var pub platform.Published
	if err := loadgen.Call(ctx, buildClient, "POST", strings.TrimSuffix(*base, "/")+platform.BuildPath, token, recipe, http.StatusOK, &pub); err != nil {
		return fmt.Errorf("building %s: %w", fs.Arg(0), err)
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(&pub)
	}
	fmt.Fprintf(e.stdout, "%s %s: release-log entry %d, in a witnessed checkpoint\n", pub.Name, pub.Version, pub.LogIndex)
	for _, a := range pub.Artifacts {
		fmt.Fprintf(e.stdout, "  %-24s sha256:%s\n", a.Name, a.SHA256)
	}
	return nil
}
