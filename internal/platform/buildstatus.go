package platform

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vitrine-dev/vitrine/internal/conveyer"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
)

// BuildStatus is a build the platform has been asked for and not finished,
// as GET /v1/builds shows it to the operator who waits on it.
type BuildStatus struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Step is what the build is doing: "waiting for another build",
	// "downloading modules", "compiling vitrine_linux_arm64 with
	// go1.26.8", "signing and logging the release", …
	Step        string    `json:"step"`
	Started     time.Time `json:"started"`
	StepStarted time.Time `json:"step_started"`
}

// BuildsAnswer is the answer to GET /v1/builds.
type BuildsAnswer struct {
	Builds []BuildStatus `json:"builds"`
}

// buildTracker keeps the status of the builds in progress, keyed by name
// and version (one build of a release at a time reaches the conveyer).
// It is safe for concurrent use.
type buildTracker struct {
	mu     sync.Mutex
	builds map[string]*BuildStatus
}

func buildKey(name, version string) string { return name + "\x00" + version }

// begin records a build as waiting; the returned func forgets it.
func (t *buildTracker) begin(r *conveyer.Recipe) func() {
	now := time.Now().UTC()
	k := buildKey(r.Name, r.Version)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.builds == nil {
		t.builds = map[string]*BuildStatus{}
	}
	s := &BuildStatus{Name: r.Name, Version: r.Version, Step: "waiting for another build to finish", Started: now, StepStarted: now}
	t.builds[k] = s
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.builds[k] == s {
			delete(t.builds, k)
		}
	}
}

// step records the step a build has reached.
func (t *buildTracker) step(r *conveyer.Recipe, step string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.builds[buildKey(r.Name, r.Version)]; s != nil {
		s.Step, s.StepStarted = step, time.Now().UTC()
	}
}

// list returns the builds in progress, oldest first.
func (t *buildTracker) list() []BuildStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]BuildStatus, 0, len(t.builds))
	for _, s := range t.builds {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b BuildStatus) int {
		if c := a.Started.Compare(b.Started); c != 0 {
			return c
		}
		return strings.Compare(a.Name+a.Version, b.Name+b.Version)
	})
	return out
}

// serveBuilds answers GET /v1/builds (operator token): the builds in
// progress and the step each has reached.
func (p *releaseParts) serveBuilds(w http.ResponseWriter, r *http.Request) {
	if !p.operator(r) {
		httpapi.Unauthorized(w, "the builds in progress are shown to the operator's bearer token")
		return
	}
	httpapi.JSON(w, BuildsAnswer{Builds: p.builds.list()})
}
