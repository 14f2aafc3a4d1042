package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPolicyShowAndDiff starts `vitrine up` with the default policy, then
// again with a configuration whose version 2 moves BR to zurich, and reads
// both versions back from the policy log.
func TestPolicyShowAndDiff(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	data, addr := t.TempDir(), freeAddr(t)
	p := startUp(t, bin, data, addr)
	out, err := runVitrine(t, bin, "policy", "show", "--platform", p.base)
	if err != nil || !strings.Contains(out, "residency policy version 1") || !strings.Contains(out, "zurich") {
		t.Fatalf("policy show: %v\n%s", err, out)
	}
	out, err = runVitrine(t, bin, "policy", "diff", "--platform", p.base)
	if err != nil || !strings.Contains(out, "first in the policy log") {
		t.Fatalf("policy diff with one version: %v\n%s", err, out)
	}
	p.kill()

	// Version 2: zurich also serves BR.
	cfg := filepath.Join(t.TempDir(), "vitrine.json")
	zurich := []string{"AT", "AU", "BE", "BG", "BR", "CA", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GB", "GR", "HR", "HU", "IE", "IS", "IT", "JP", "KR", "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SG", "SI", "SK", "US"}
	doc := `{"residency": {"version": 2, "default": "moscow", "regions": [{"name": "zurich", "countries": ["` + strings.Join(zurich, `","`) + `"]}, {"name": "moscow"}]}}`
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := []string{"up", "--config", cfg, "--data", data, "--listen", addr}
	p = startUpArgs(t, bin, addr, cmd...)
	defer p.kill()
	out, err = runVitrine(t, bin, "policy", "diff", "--platform", p.base)
	if err != nil || !strings.Contains(out, "version 1 -> 2: 1 changes") || !strings.Contains(out, "country BR moscow -> zurich") {
		t.Fatalf("policy diff: %v\n%s", err, out)
	}
	out, err = runVitrine(t, bin, "policy", "show", "--platform", p.base, "--version", "1")
	if err != nil || !strings.Contains(out, "version 1") {
		t.Fatalf("policy show --version 1: %v\n%s", err, out)
	}
	// A changed policy under an old version number is refused.
	p.kill()
	bad := strings.Replace(doc, `"BR",`, ``, 1)
	os.WriteFile(cfg, []byte(bad), 0o644)
	out, err = runVitrine(t, bin, cmd...)
	if err == nil || !strings.Contains(out, "give the new policy a new version") {
		t.Fatalf("starting with a changed policy under version 2: %v\n%s", err, out)
	}
}
