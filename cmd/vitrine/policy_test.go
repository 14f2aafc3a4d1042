package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/residency"
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
	// The file names another address and data directory: the flags
	// given explicitly win.
	doc := `{"listen": "127.0.0.1:1", "data": "` + filepath.Join(t.TempDir(), "not-this") + `", "commitment_interval": "5m", "residency": {"version": 2, "default": "moscow", "regions": [{"name": "zurich", "countries": ["` + strings.Join(zurich, `","`) + `"]}, {"name": "moscow"}]}}`
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

// TestPolicyShowSkipsBadEntries: entries of the policy log that are no
// valid policy (appended before the platform closed its generic append)
// do not stop `policy show` or `policy diff`: each gets a warning naming its
// index and the last valid policy is shown. Asking for the version a bad
// entry claims names that entry.
func TestPolicyShowSkipsBadEntries(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := startNamed(t, "vitrine.local")
	// Version 2, well formed but signed by a key that is not the platform's.
	sk, _, err := note.GenerateKey(nil, "vitrine.local/policy")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(sk)
	if err != nil {
		t.Fatal(err)
	}
	v2 := residency.Default()
	v2.Version = 2
	forged, err := residency.Sign(v2, signer)
	if err != nil {
		t.Fatal(err)
	}
	malformed := []byte("vitrine residency policy v1\n{\"version\":3,\"default\":\n\n— vitrine.local/policy AAAAAAAA\n")
	var last uint64
	for _, e := range [][]byte{malformed, forged, []byte("not a policy")} {
		if last, err = p.Log("policy").Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Log("policy").AwaitWitnessed(ctx, last); err != nil {
		t.Fatal(err)
	}

	run := func(cmd func(context.Context, *env, []string) error, args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := cmd(ctx, &env{Stdout: &out, Stderr: &errOut, Logger: quiet}, append([]string{"--platform", p.URL()}, args...))
		return out.String(), errOut.String(), err
	}
	warned := func(t *testing.T, stderr string) {
		t.Helper()
		for _, w := range []string{"warning: skipping policy log entry 1:", "warning: skipping policy log entry 2:", "warning: skipping policy log entry 3:"} {
			if !strings.Contains(stderr, w) {
				t.Errorf("stderr lacks %q:\n%s", w, stderr)
			}
		}
	}
	out, stderr, err := run(runPolicyShow)
	if err != nil || !strings.Contains(out, "residency policy version 1 ") {
		t.Fatalf("policy show: %v\n%s%s", err, out, stderr)
	}
	warned(t, stderr)
	out, stderr, err = run(runPolicyDiff)
	if err != nil || !strings.Contains(out, "version 1 is the first in the policy log") {
		t.Fatalf("policy diff: %v\n%s%s", err, out, stderr)
	}
	warned(t, stderr)
	for _, v := range []string{"2", "3"} {
		_, _, err = run(runPolicyShow, "--version", v)
		if want := "policy log entry " + map[string]string{"2": "2", "3": "1"}[v] + " claims version " + v; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("policy show --version %s: %v, want an error containing %q", v, err, want)
		}
	}
}
