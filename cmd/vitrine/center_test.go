package main

import (
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/center"
	"github.com/vitrine-dev/vitrine/internal/platform"
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
		if len(o.Problems) != 0 || len(o.Logs) != len(platform.LogNames) || o.Policy == nil || o.Policy.Version != 1 || len(o.Monitors) != 1 {
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
	// vitrine report recomputes what the Center's report page shows (up
	// to the same sizes: the platform logs its own processing meanwhile).
	for try := 0; ; try++ {
		out, err := runVitrine(t, bin, "report", "--platform", up.base, "--data", t.TempDir())
		var rep center.Report
		if err != nil || json.Unmarshal([]byte(out), &rep) != nil {
			t.Fatalf("vitrine report: %v\n%s", err, out)
		}
		req, _ := http.NewRequest("GET", up.base+"/center/report", nil)
		req.Header.Set("Accept", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var page center.Report
		json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if !reflect.DeepEqual(rep.Logs, page.Logs) && try < 10 {
			continue
		}
		if len(rep.Logs) != 2 || !reflect.DeepEqual(rep.Logs, page.Logs) || !reflect.DeepEqual(rep.Totals, page.Totals) || !reflect.DeepEqual(rep.Months, page.Months) {
			t.Errorf("vitrine report: %+v %+v\nthe Center's report: %+v %+v", rep.Logs, rep.Totals, page.Logs, page.Totals)
		}
		break
	}

	resp, err := http.Get(up.base + "/")
	if err != nil {
		t.Fatal(err)
	}
	html, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(html), "<h1>Overview</h1>") || strings.Count(string(html), `data-verified="true"`) < 4 {
		t.Errorf("vitrine up's /: %s", html)
	}

	// Both Centers follow the access logs into their own index: the
	// entries both have indexed are the same.
	accesses := func(base string) center.AccessesPage {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"/center/accesses?log=access-zurich", nil)
		req.Header.Set("Accept", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p center.AccessesPage
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s/center/accesses: %d %v", base, resp.StatusCode, err)
		}
		return p
	}
	indexed := func(p center.AccessesPage) uint64 {
		for _, s := range p.Indexed {
			if s.Log == "access-zurich" && s.Problem == "" {
				return s.Indexed
			}
		}
		return 0
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		a, b := accesses(up.base), accesses(ctr.base)
		n := min(indexed(a), indexed(b))
		if n == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the access log is not indexed within a minute: %+v, %+v", a.Indexed, b.Indexed)
			}
			continue
		}
		in := func(p center.AccessesPage) map[uint64]center.EntrySummary {
			m := map[uint64]center.EntrySummary{}
			for _, e := range p.Entries {
				if e.Index < n {
					m[e.Index] = e.EntrySummary
				}
			}
			return m
		}
		if x, y := in(a), in(b); len(x) == 0 || !reflect.DeepEqual(x, y) {
			t.Errorf("the index in up: %+v\nthe index apart: %+v", x, y)
		}
		break
	}
}
