package platform

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/internal/backoff"
	"github.com/vitrine-dev/vitrine/internal/conveyer"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/publish"
	"github.com/vitrine-dev/vitrine/release"
)

// BuildPath is where the operator asks the platform to build a recipe.
const BuildPath = "/v1/builds"

// maxRecipe bounds a recipe's size; real ones are a few hundred bytes.
const maxRecipe = 1 << 20

// Build runs recipe (a conveyer recipe as JSON) through the conveyer in the
// trusted region, where the release key is, and publishes the result (see
// [Platform.Publish]): the release is done, and Build returns, only once
// its release-log entry is in a witnessed checkpoint.
//
// A local source (a git repository or directory) given as a relative path
// is resolved against the platform's working directory, and must lie in
// one of [Config.BuildSourceRoots]. Builds run one at a time, each in a fresh
// work directory under the data directory that is removed afterwards;
// the download phase shares one module cache, which every build verifies
// against its go.sum before use.
//
// Errors wrap [conveyer.ErrInvalidRecipe] for a bad recipe,
// [conveyer.ErrSourceNotAllowed] for a local source outside the build
// source roots (the route answers 403),
// [publish.ErrExists] for a release already published,
// [conveyer.ErrBuild] for a build that failed, and
// [conveyer.ErrToolchain] for a toolchain the recipe pins that could not
// be fetched or checked (the route answers 422 for both).
func (p *Platform) Build(ctx context.Context, recipe []byte) (*Published, error) {
	if p.rel == nil {
		return nil, fault.New(fault.ErrNotFound, "this platform builds nothing: its releases are built by the releases process at "+p.cfg.RemoteReleases.URL)
	}
	return p.rel.build(ctx, recipe)
}

func (p *releaseParts) build(ctx context.Context, recipe []byte) (*Published, error) {
	r, err := conveyer.ParseRecipe(recipe)
	if err != nil {
		return nil, err
	}
	if p.publisher.Finished(r.Name, r.Version) {
		return nil, fmt.Errorf("building %s %s: %w", r.Name, r.Version, publish.ErrExists)
	}
	defer p.builds.begin(r)()
	select {
	case p.buildSlot <- struct{}{}:
		defer func() { <-p.buildSlot }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// Checked again: a build of the same release may have just finished.
	// A release published but not yet in the update repository is built
	// again: Publish finishes it if the build reproduces it.
	if p.publisher.Finished(r.Name, r.Version) {
		return nil, fmt.Errorf("building %s %s: %w", r.Name, r.Version, publish.ErrExists)
	}

	id := make([]byte, 8)
	_, _ = rand.Read(id)
	invocation := hex.EncodeToString(id)
	base := filepath.Join(p.cfg.Data, "conveyer")
	work := filepath.Join(base, "work", invocation)
	defer conveyer.RemoveWorkDir(work)
	modCache := p.cfg.GoModCache
	if modCache == "" {
		modCache = filepath.Join(base, "modcache")
	}
	b := &conveyer.Builder{
		Proxy:       p.cfg.GoProxy,
		SumDB:       p.cfg.GoSumDB,
		ModCache:    modCache,
		SourceRoots: p.cfg.BuildSourceRoots,
		Logger:      p.logger.With("build", invocation),
		Progress:    p.builds.step,
	}
	started := time.Now().UTC()
	res, err := b.Build(ctx, r, work)
	switch {
	case err == nil:
	case errors.Is(err, conveyer.ErrBuild), errors.Is(err, conveyer.ErrSourceNotAllowed), ctx.Err() != nil:
		return nil, fmt.Errorf("building %s %s: %w", r.Name, r.Version, err)
	default:
		// A source that cannot be exported or a rule directory that is
		// missing is the recipe's fault as much as a failed compile.
		return nil, fmt.Errorf("building %s %s: %w: %w", r.Name, r.Version, conveyer.ErrBuild, err)
	}
	finished := time.Now().UTC()
	p.builds.step(r, "signing, logging and publishing the release (it ends in a witnessed checkpoint)")

	artifacts := map[string][]byte{}
	files := make([]conveyer.File, 0, len(res.Artifacts)+len(res.RuleDBs))
	for _, a := range res.Artifacts {
		files = append(files, a.File)
	}
	for _, d := range res.RuleDBs {
		files = append(files, d.File)
	}
	for _, f := range files {
		if artifacts[f.Name], err = os.ReadFile(f.Path); err != nil {
			return nil, fmt.Errorf("building %s %s: %w", r.Name, r.Version, err)
		}
	}
	source, err := os.ReadFile(res.Source.Path)
	if err != nil {
		return nil, fmt.Errorf("building %s %s: %w", r.Name, r.Version, err)
	}
	build := &release.Build{
		Recipe:       recipe,
		Source:       sourceURI(r.Source),
		Archive:      res.Source.SHA256,
		Toolchain:    res.Record.Toolchain,
		Env:          buildEnv(res.Record),
		BuilderID:    p.cfg.BaseURL + "/conveyer",
		InvocationID: invocation,
		Started:      started,
		Finished:     finished,
	}
	// Once built, the release is published even if the caller goes away:
	// an entry appended to the release log is always followed by its
	// files under /releases/.
	return p.publisher.Publish(context.WithoutCancel(ctx), r.Name, r.Version, artifacts, source, build)
}

// sourceURI names a recipe's source in the provenance, in SPDX's
// download-location form for git.
func sourceURI(s conveyer.Source) string {
	if s.Git != "" {
		return "git+" + s.Git + "@" + s.Commit
	}
	return "dir:" + s.Dir
}

// buildEnv is the environment of the build phase, as the provenance's
// internal parameters: the first build-phase command's, which every later
// one extends only by GOOS and GOARCH.
func buildEnv(rec conveyer.Record) map[string]string {
	env := map[string]string{}
	for _, c := range rec.Commands {
		if c.Phase != "build" {
			continue
		}
		for _, kv := range c.Env {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = v
			}
		}
		break
	}
	return env
}

// serveBuild is POST /v1/builds: the operator's token, a recipe as the
// body; the answer, once the release is witnessed, is the [Published]
// release.
func (p *releaseParts) serveBuild(w http.ResponseWriter, r *http.Request) {
	if !p.operator(r) {
		httpapi.Unauthorized(w, "building needs the operator's bearer token")
		return
	}
	body, ok := httpapi.ReadLimited(w, r, maxRecipe)
	if !ok {
		return
	}
	// A build takes minutes: the server's write deadline must not cut the
	// answer off.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	pub, err := p.build(r.Context(), body)
	switch {
	case err == nil:
		httpapi.JSON(w, pub)
	case errors.Is(err, conveyer.ErrSourceNotAllowed):
		httpapi.Fail(w, p.logger, err, "nothing was built (build from a URL, or add the directory to the platform's build source roots)")
	case errors.Is(err, publish.ErrExists):
		httpapi.Fail(w, p.logger, err, "nothing was published (bump the recipe's version)")
	case errors.Is(err, conveyer.ErrBuild), errors.Is(err, conveyer.ErrToolchain):
		// The build's own output: what a person fixes in the recipe or
		// the source.
		httpapi.Error(w, http.StatusUnprocessableEntity, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		httpapi.Fail(w, p.logger, backoff.WithRetryAfter(fault.Mark(fault.ErrUnavailable, err), 10*time.Second), "the release was built but not logged in time; nothing was published, retry")
	default:
		// Invalid recipes 400; the release log unavailable or busy
		// 503; anything else 500, logged, not told.
		httpapi.Fail(w, p.logger, err, "nothing was published")
	}
}
