package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/center"
)

// TestCenterProcess: `vitrine up` serves the Transparency Center at /, and
// `vitrine center` in a process of its own, reading the platform through
// its public routes only, shows the same overview.
func TestCenterProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two processes; skipped in -short mode")
	}
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	data, addr := t.TempDir(), freeAddr(t)
	up := startUpArgs(t, bin, addr, "up", "--data", data, "--listen", addr)
	defer stopUpCleanly(t, up)
	caddr := freeAddr(t)
	ctr := startServing(t, bin, caddr, "/", http.StatusOK, "center", "--platform", up.base, "--listen", caddr, "--data", t.TempDir())
	defer stopUpCleanly(t, ctr)

	overview := func(base string) center.Overview {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"/", nil)
		req.Header.Set("Accept", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var o center.Overview
		if err := json.NewDecoder(resp.Body).Decode(&o); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s/: %d %v", base, resp.StatusCode, err)
		}
		return o
	}
	inUp, apart := overview(up.base), overview(ctr.base)
	for _, o := range []center.Overview{inUp, apart} {
		if len(o.Problems) != 0 || len(o.Logs) != 4 || o.Policy == nil || o.Policy.Version != 1 || len(o.Monitors) != 1 {
			t.Fatalf("an overview: %+v", o)
		}
		for _, l := range o.Logs {
			if !l.Verified {
				t.Errorf("log %s not verified: %s", l.Name, l.Problem)
			}
		}
	}
	for i := range inUp.Logs {
		if a, b := inUp.Logs[i], apart.Logs[i]; a.Name != b.Name || a.Origin != b.Origin {
			t.Errorf("log %d: %s in up, %s apart", i, a.Name, b.Name)
		}
	}
	resp, err := http.Get(up.base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "<h1>Overview</h1>") || strings.Count(string(page), `data-verified="true"`) < 4 {
		t.Errorf("vitrine up's /: %s", page)
	}
}
