package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	vclient "github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/gotest"
	"github.com/vitrine-dev/vitrine/internal/liar"
	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/tlog"
)

func startNamed(t *testing.T, name string) *platform.Platform {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := platform.Start(context.Background(), platform.Config{Data: t.TempDir(), Name: name, Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

func runCmd(ctx context.Context, cmd func(context.Context, *env, []string) error, args ...string) (string, error) {
	var out bytes.Buffer
	err := cmd(ctx, &env{Stdout: &out, Stderr: &out, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, args)
	return out.String(), err
}

// TestLogVerifyTwoPlatformsOneName: two platforms installed with the
// default name share every log origin; verifying both with one monitor
// state directory raised a false "trees are inconsistent". The state is
// now kept per origin and key, and a state file of another log is refused
// by its checkpoint's signature.
func TestLogVerifyTwoPlatformsOneName(t *testing.T) {
	ctx := context.Background()
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	a, b := startNamed(t, "vitrine.local"), startNamed(t, "vitrine.local")
	for round := range 2 {
		for _, p := range []*platform.Platform{a, b} {
			if out, err := runCmd(ctx, runLogVerify, "--platform", p.URL(), "--log", "policy"); err != nil {
				t.Fatalf("round %d, log verify of %s: %v\n%s", round, p.URL(), err, out)
			}
		}
	}
	// An explicit state file made for a is refused for b, naming why.
	state := t.TempDir() + "/a.json"
	if out, err := runCmd(ctx, runLogVerify, "--platform", a.URL(), "--log", "policy", "--state", state); err != nil {
		t.Fatal(err, out)
	}
	out, err := runCmd(ctx, runLogVerify, "--platform", b.URL(), "--log", "policy", "--state", state)
	if err == nil || !strings.Contains(err.Error(), "not this log's") {
		t.Errorf("log verify of b with a's state: %v, want it refused as another log's\n%s", err, out)
	}
}

// TestReadersRefuseLies runs every command that reads a platform's logs
// on an outsider's behalf against a server that answers honestly and then
// lies about one log: doctored entry bundles (on every read, or from the
// second read of a bundle on: the attack that beat a reader who checked
// the tree on a first read and took the entries from a second), doctored
// hash tiles, a doctored checkpoint. Each command either fails, naming the
// entries or the checkpoint, or, where it never needed what was doctored,
// prints exactly what it printed from the honest server; none ever prints
// the doctored entry.
func TestReadersRefuseLies(t *testing.T) {
	ctx := context.Background()
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	p, data := startPlatform(t)
	op := p.OperatorToken()

	// Something in every log: records in moscow, relocated to zurich
	// (policy version 2, relocation entries in both access logs), and a
	// custody-gated read in zurich (custody's counts).
	ep := registerEndpoint(t, p, "BR")
	sha := strings.Repeat("ab", 32)
	ep.ingest(t, "b1", testRecord(sha, "C:/eicar.com"), testRecord(sha, "C:/eicar.com"))
	code, b := request(t, "POST", p.URL()+"/v1/relocations", op, []byte(`{"country":"BR","to":"zurich"}`))
	if code != http.StatusAccepted {
		t.Fatalf("relocation: %d %s", code, b)
	}
	var job struct {
		ID    string `json:"id"`
		Step  string `json:"step"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(b, &job); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); job.Step != "done"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) || job.Error != "" {
			t.Fatalf("relocation: %+v", job)
		}
		_, b = request(t, "GET", p.URL()+"/v1/relocations/"+job.ID, op, nil)
		if err := json.Unmarshal(b, &job); err != nil {
			t.Fatal(err, string(b))
		}
	}
	code, b = request(t, "POST", p.URL()+"/v1/principals", op, []byte(`{"id":"analyst:ana","role":"analyst","location":"CH","regions":["zurich"]}`))
	if code != http.StatusCreated {
		t.Fatalf("principal: %d %s", code, b)
	}
	var ana struct{ Token string }
	if err := json.Unmarshal(b, &ana); err != nil {
		t.Fatal(err)
	}
	if code, b := request(t, "GET", p.URL()+"/regions/zurich/v1/records?sha256="+sha+"&personal=true", ana.Token, nil,
		"Vitrine-Justification", "RESPONSE_TO_PRODUCTION_ALERT; a test"); code != http.StatusOK || !strings.Contains(string(b), "eicar.com") {
		t.Fatalf("custody-gated read: %d %s", code, b)
	}
	waitQuiet(t, p, "policy", "access-zurich", "access-moscow", "release")
	custodyToken := filepath.Join(data, "custody.token")

	type reader struct {
		name string
		logs []string // the logs it reads
		run  func(base string) (string, error)
	}
	cmd := func(f func(context.Context, *env, []string) error, args ...string) func(string) (string, error) {
		return func(base string) (string, error) {
			var all []string
			for _, a := range args {
				all = append(all, strings.ReplaceAll(a, "BASE", base))
			}
			return runCmd(ctx, f, all...)
		}
	}
	readers := []reader{
		{"policy show", []string{"policy"}, cmd(runPolicyShow, "--platform", "BASE")},
		{"policy diff", []string{"policy"}, cmd(runPolicyDiff, "--platform", "BASE")},
		{"relocate verify", []string{"policy", "access-zurich", "access-moscow"}, cmd(runRelocateVerify, "--url", "BASE", "--job", job.ID)},
		{"custody reconcile", []string{"access-zurich"}, cmd(runCustodyReconcile, "--custody", p.URL()+"/custody", "--token", custodyToken, "--platform", "BASE")},
		{"log prove", []string{"access-zurich"}, cmd(runLogProve, "--platform", "BASE", "--log", "access-zurich", "--index", "1")},
	}
	for _, l := range []string{"policy", "access-zurich", "access-moscow"} {
		readers = append(readers, reader{"log verify", []string{l}, func(base string) (string, error) {
			state := filepath.Join(t.TempDir(), "state")
			out, err := runCmd(ctx, runLogVerify, "--platform", base, "--log", l, "--state", state)
			// What differs from run to run: the state file and the time.
			out = strings.ReplaceAll(out, state, "STATE")
			out = regexp.MustCompile(`(?m)^verified in .*$`).ReplaceAllString(out, "verified")
			return out, err
		}})
	}
	const evil = "EVIL-ENTRY"
	for _, r := range readers {
		honest, err := r.run(p.URL())
		if err != nil {
			t.Fatalf("%s, honest: %v\n%s", r.name, err, honest)
		}
		for _, log := range r.logs {
			for _, lie := range liar.Lies {
				px := liar.New(t, p.URL(), log, []byte(evil))
				if out, err := r.run(px.URL); err != nil || out != honest {
					t.Fatalf("%s through an honest proxy: %v\n%s", r.name, err, out)
				}
				px.Tell(lie)
				out, err := r.run(px.URL)
				switch {
				case strings.Contains(out, evil) || (err != nil && strings.Contains(err.Error(), evil)):
					t.Errorf("%s, %s of %s: the doctored entry came out: %v\n%s", r.name, lie, log, err, out)
				case err == nil && out != honest:
					t.Errorf("%s, %s of %s: no error, and not what the honest server gave:\n%s\nwant:\n%s", r.name, lie, log, out, honest)
				case err != nil && !regexp.MustCompile(`entr|checkpoint|tile`).MatchString(err.Error()):
					t.Errorf("%s, %s of %s: %v; want an error naming the entries or the checkpoint", r.name, lie, log, err)
				case err == nil && (lie == liar.Bundle || lie == liar.Checkpoint):
					t.Errorf("%s, %s of %s: no error", r.name, lie, log)
				}
			}
		}
	}
}

// waitQuiet waits until the checkpoints of the platform's logs have not
// changed for a second: everything appended is witnessed, and the answers
// of an honest server stay the same.
func waitQuiet(t *testing.T, p *platform.Platform, logs ...string) {
	t.Helper()
	gotest.WaitQuiet(t, func() []byte {
		var all []byte
		for _, l := range logs {
			b, _ := p.Log(l).Reader().ReadCheckpoint(context.Background())
			all = append(all, b...)
		}
		return all
	})
}

// TestLogVerifyCatchesFork: a platform whose data directory was copied and
// run twice, each copy taking different entries, is a real fork: two
// histories under the same log key, each cosigned by the witness (whose key
// went with the copy). Verifying one copy and then the other with one
// state raises the alarm, naming both checkpoints.
func TestLogVerifyCatchesFork(t *testing.T) {
	ctx := context.Background()
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func(data string) *platform.Platform {
		p, err := platform.Start(ctx, platform.Config{Data: data, Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close(context.Background()) })
		return p
	}
	dirA := t.TempDir()
	a := start(dirA)
	waitQuiet(t, a, "access-zurich")
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	dirB := t.TempDir()
	if err := os.CopyFS(dirB, os.DirFS(dirA)); err != nil {
		t.Fatal(err)
	}
	a, b := start(dirA), start(dirB)
	for _, x := range []struct {
		p  *platform.Platform
		id string
	}{{a, "analyst:on-a"}, {b, "analyst:on-b"}} {
		if code, body := request(t, "POST", x.p.URL()+"/v1/principals", x.p.OperatorToken(), []byte(`{"id":"`+x.id+`","role":"analyst","location":"CH","regions":["zurich"]}`)); code != http.StatusCreated {
			t.Fatalf("principal on %s: %d %s", x.p.URL(), code, body)
		}
		waitQuiet(t, x.p, "access-zurich")
	}
	state := filepath.Join(t.TempDir(), "state")
	if out, err := runCmd(ctx, runLogVerify, "--platform", a.URL(), "--log", "access-zurich", "--state", state); err != nil {
		t.Fatalf("log verify of a: %v\n%s", err, out)
	}
	cpA, _ := a.Log("access-zurich").Reader().ReadCheckpoint(ctx)
	cpB, _ := b.Log("access-zurich").Reader().ReadCheckpoint(ctx)
	out, err := runCmd(ctx, runLogVerify, "--platform", b.URL(), "--log", "access-zurich", "--state", state)
	var fork *vclient.ForkError
	if !errors.As(err, &fork) || !errors.Is(err, tlog.ErrInconsistent) {
		t.Fatalf("log verify of the fork: %v, want a ForkError\n%s", err, out)
	}
	if !bytes.Equal(fork.Seen, cpA) || !bytes.Equal(fork.Now, cpB) || !strings.Contains(err.Error(), string(cpA)) || !strings.Contains(err.Error(), string(cpB)) {
		t.Errorf("the alarm does not name both checkpoints:\n%v\nwant a's:\n%s\nand b's:\n%s", err, cpA, cpB)
	}
}
