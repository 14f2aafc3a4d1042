package platform

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/conveyer"
)

// TestBuildsInProgress: GET /v1/builds shows the operator each build in
// progress and the step it has reached (vitrine build prints it while it
// waits), forgets a build once it ends, and shows nothing to anyone else.
func TestBuildsInProgress(t *testing.T) {
	p := start(t, t.TempDir())
	defer stop(t, p)
	list := func() []BuildStatus {
		t.Helper()
		code, body := httpDo(t, http.MethodGet, p.URL()+BuildPath, p.operatorToken, nil)
		var ans BuildsAnswer
		if code != http.StatusOK || json.Unmarshal(body, &ans) != nil {
			t.Fatalf("GET %s: %d %s", BuildPath, code, body)
		}
		return ans.Builds
	}
	if b := list(); len(b) != 0 {
		t.Errorf("builds before any: %+v", b)
	}
	if code, _ := httpDo(t, http.MethodGet, p.URL()+BuildPath, "", nil); code != http.StatusUnauthorized {
		t.Errorf("GET %s without the operator token: %d, want 401", BuildPath, code)
	}

	r1 := &conveyer.Recipe{Name: "first", Version: "1"}
	r2 := &conveyer.Recipe{Name: "second", Version: "2"}
	end1 := p.rel.builds.begin(r1)
	end2 := p.rel.builds.begin(r2)
	p.rel.builds.step(r1, "downloading modules")
	b := list()
	if len(b) != 2 || b[0].Name != "first" || b[0].Step != "downloading modules" || b[1].Name != "second" || b[1].Step != "waiting for another build to finish" {
		t.Errorf("builds = %+v, want first downloading modules, second waiting", b)
	}
	end1()
	if b := list(); len(b) != 1 || b[0].Name != "second" {
		t.Errorf("after the first ended: %+v", b)
	}
	end2()
	if b := list(); len(b) != 0 {
		t.Errorf("after both ended: %+v", b)
	}
}
