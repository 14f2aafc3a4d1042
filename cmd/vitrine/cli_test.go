package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/platform"
)

func runVitrine(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

// flagLine is a flag's line in a command's --help: its name, then at most
// one word naming its argument.
var flagLine = regexp.MustCompile(`^  -[a-z0-9-]+( [a-zA-Z0-9]+)?$`)

func TestHelpAndUsage(t *testing.T) {
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	for name := range commands {
		args := append(strings.Fields(name), "--help")
		out, err := runVitrine(t, bin, args...)
		if err != nil {
			t.Errorf("vitrine %s --help: %v\n%s", name, err, out)
		}
		if !strings.Contains(out, "usage: vitrine "+name) {
			t.Errorf("vitrine %s --help does not show its usage:\n%s", name, out)
		}
		if commands[name].Summary == "" || !strings.Contains(out, commands[name].Summary) {
			t.Errorf("vitrine %s --help does not say what the command does:\n%s", name, out)
		}
		// A flag line is "-name" and at most one word for its
		// argument; a back-quoted phrase in a usage string would
		// become that word ("-token vitrine up").
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "  -") && !flagLine.MatchString(line) {
				t.Errorf("vitrine %s --help: flag line %q names its argument oddly", name, line)
			}
			// "value" is what package flag says of a flag.Var whose
			// usage names no argument: it tells a person nothing.
			if strings.HasPrefix(line, "  -") && strings.HasSuffix(line, " value") {
				t.Errorf("vitrine %s --help: flag line %q does not say what its argument is", name, line)
			}
		}
	}
	// A group lists its commands.
	for _, args := range [][]string{{"log"}, {"log", "--help"}, {"agent", "-h"}} {
		out, err := runVitrine(t, bin, args...)
		if err != nil || !strings.Contains(out, "log verify") == (args[0] == "log") || !strings.Contains(out, "usage: vitrine "+args[0]+" <command>") {
			t.Errorf("vitrine %s: err=%v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// No command at all: the list, and a status a script sees as a
	// mistake; "help" is asked for, so 0.
	var xe *exec.ExitError
	if out, err := runVitrine(t, bin); !errors.As(err, &xe) || xe.ExitCode() != 2 || !strings.Contains(out, "usage: vitrine <command>") {
		t.Errorf("vitrine with no command: %v\n%s", err, out)
	}
	if out, err := runVitrine(t, bin, "help"); err != nil || !strings.Contains(out, "usage: vitrine <command>") {
		t.Errorf("vitrine help: %v\n%s", err, out)
	}
	if out, err := runVitrine(t, bin, "frobnicate"); err == nil || !strings.Contains(out, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: err=%v\n%s", err, out)
	}
	if out, err := runVitrine(t, bin, "log", "serve", "--data", t.TempDir()); err == nil || !strings.Contains(out, "--origin") {
		t.Errorf("log serve without --origin: err=%v\n%s", err, out)
	}
	if out, err := runVitrine(t, bin, "up", "extra"); err == nil || !strings.Contains(out, "unexpected arguments") {
		t.Errorf("up with a stray argument: err=%v\n%s", err, out)
	}
}

// TestVerifyProveAndShutdown drives the commands an outsider uses against a
// running platform, tampers with the log and sees verification fail, then
// stops a `vitrine up` process with SIGTERM.
func TestVerifyProveAndShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The platform's logs take entries only from the components that own
	// them, so the entries are appended in process, as the publisher does.
	data := t.TempDir()
	plat, err := platform.Start(ctx, platform.Config{Data: data, Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		plat.Close(ctx)
	}()
	base := plat.URL()
	appendWitnessed := func(es ...[]byte) {
		t.Helper()
		var last uint64
		for _, e := range es {
			if last, err = plat.Log("release").Append(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := plat.Log("release").AwaitWitnessed(ctx, last); err != nil {
			t.Fatal(err)
		}
	}
	var entries [][]byte
	for i := 0; i < 300; i++ {
		entries = append(entries, []byte("release entry "+strings.Repeat("x", i%7)+string(rune('a'+i%26))))
	}
	appendWitnessed(entries...)
	state := filepath.Join(t.TempDir(), "state.json")
	out, err := runVitrine(t, bin, "log", "verify", "--platform", base, "--log", "release", "--state", state)
	if err != nil || !strings.Contains(out, "root ok") {
		t.Fatalf("log verify: %v\n%s", err, out)
	}
	// Again: now consistency with the saved state is checked.
	appendWitnessed([]byte("one more"))
	out, err = runVitrine(t, bin, "log", "verify", "--platform", base, "--log", "release", "--state", state)
	if err != nil || !strings.Contains(out, "consistency with size 300 seen before: ok") {
		t.Fatalf("second log verify: %v\n%s", err, out)
	}

	proof := filepath.Join(t.TempDir(), "e7.tlog-proof")
	if out, err := runVitrine(t, bin, "log", "prove", "--platform", base, "--log", "release", "--index", "7", "--out", proof); err != nil {
		t.Fatalf("log prove: %v\n%s", err, out)
	}
	entry := filepath.Join(t.TempDir(), "entry")
	os.WriteFile(entry, entries[7], 0o644)
	vkey := filepath.Join(data, "logs", "release", "log.vkey")
	policy := filepath.Join(t.TempDir(), "policy")
	d := discover(t, base)
	os.WriteFile(policy, []byte(d.WitnessPolicy), 0o644)
	if out, err := runVitrine(t, bin, "log", "verify-proof", "--vkey", vkey, "--policy", policy, "--entry", entry, proof); err != nil || !strings.Contains(out, "proof ok: entry 7") {
		t.Fatalf("verify-proof: %v\n%s", err, out)
	}
	os.WriteFile(entry, entries[8], 0o644)
	if out, err := runVitrine(t, bin, "log", "verify-proof", "--vkey", vkey, "--policy", policy, "--entry", entry, proof); err == nil || !strings.Contains(out, "inclusion proof does not verify") {
		t.Fatalf("verify-proof of the wrong entry: err=%v\n%s", err, out)
	}
	// A proof without the witness's cosignature fails the quorum.
	pb, _ := os.ReadFile(proof)
	var kept []string
	for _, line := range strings.SplitAfter(string(pb), "\n") {
		if !strings.HasPrefix(line, "— "+d.Witnesses[0].Name+" ") {
			kept = append(kept, line)
		}
	}
	os.WriteFile(proof, []byte(strings.Join(kept, "")), 0o644)
	os.WriteFile(entry, entries[7], 0o644)
	if out, err := runVitrine(t, bin, "log", "verify-proof", "--vkey", vkey, "--policy", policy, "--entry", entry, proof); err == nil || !strings.Contains(out, "quorum") {
		t.Fatalf("verify-proof without cosignature: err=%v\n%s", err, out)
	}

	// Tamper with a stored entry bundle: the whole-tree check must catch it.
	bundle := filepath.Join(data, "logs", "release", "storage", "tile", "entries", "000")
	raw, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	raw[10] ^= 1
	os.WriteFile(bundle, raw, 0o644)
	out, err = runVitrine(t, bin, "log", "verify", "--platform", base, "--log", "release", "--state", filepath.Join(t.TempDir(), "s.json"))
	if err == nil || !strings.Contains(out, "tile/entries/000") {
		t.Fatalf("log verify of a tampered log: err=%v\n%s", err, out)
	}

	// SIGTERM shuts `vitrine up` down cleanly.
	p := startUp(t, bin, t.TempDir(), freeAddr(t))
	defer p.kill()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil || !bytes.Contains(p.out.Bytes(), []byte("stopped cleanly")) {
			t.Fatalf("vitrine up after SIGTERM: %v\n%s", err, p.out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("vitrine up did not stop within 30s of SIGTERM")
	}
}

// TestStandaloneLogAndWitness runs `vitrine witness` and `vitrine log serve
// --witness-policy` as separate processes talking real HTTP.
func TestStandaloneLogAndWitness(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	logDir, witDir := t.TempDir(), t.TempDir()
	const origin = "example.com/standalone"
	// First start of the log creates its key; the witness needs it.
	logAddr, witAddr := freeAddr(t), freeAddr(t)
	logCmd := exec.Command(bin, "log", "serve", "--data", logDir, "--listen", logAddr, "--origin", origin)
	var logOut bytes.Buffer
	logCmd.Stdout, logCmd.Stderr = &logOut, &logOut
	if err := logCmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(logDir, "log.vkey"))
	logCmd.Process.Signal(syscall.SIGTERM)
	logCmd.Wait()

	logsFile := filepath.Join(t.TempDir(), "logs")
	vk, _ := os.ReadFile(filepath.Join(logDir, "log.vkey"))
	os.WriteFile(logsFile, vk, 0o644)
	wit := exec.Command(bin, "witness", "--data", witDir, "--listen", witAddr, "--name", "example.com/witness", "--logs", logsFile)
	var witOut bytes.Buffer
	wit.Stdout, wit.Stderr = &witOut, &witOut
	if err := wit.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { wit.Process.Kill(); wit.Wait() }()
	waitFile(t, filepath.Join(witDir, "witness.vkey"))
	wvk, _ := os.ReadFile(filepath.Join(witDir, "witness.vkey"))
	policy := filepath.Join(t.TempDir(), "policy")
	os.WriteFile(policy, []byte("witness w "+strings.TrimSpace(string(wvk))+" http://"+witAddr+"\nquorum w\n"), 0o644)

	logCmd = exec.Command(bin, "log", "serve", "--data", logDir, "--listen", logAddr, "--origin", origin, "--witness-policy", policy)
	logOut.Reset()
	logCmd.Stdout, logCmd.Stderr = &logOut, &logOut
	if err := logCmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { logCmd.Process.Kill(); logCmd.Wait() }()
	tok := waitFile(t, filepath.Join(logDir, "add.token"))
	base := "http://" + logAddr + "/"
	var idx uint64
	deadline := time.Now().Add(20 * time.Second)
	for {
		idx, err = postAdd(context.Background(), base, strings.TrimSpace(string(tok)), []byte("standalone entry"))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("add: %v\n%s", err, logOut.String())
	}
	time.Sleep(500 * time.Millisecond)
	out, err := runVitrine(t, bin, "log", "verify", "--url", base, "--vkey", filepath.Join(logDir, "log.vkey"), "--policy", policy, "--state", filepath.Join(t.TempDir(), "s.json"))
	if err != nil || !strings.Contains(out, "witness quorum ok (cosigned by w)") {
		t.Fatalf("log verify (entry %d): %v\n%s\nlog:\n%s\nwitness:\n%s", idx, err, out, logOut.String(), witOut.String())
	}
}

func waitFile(t *testing.T, p string) []byte {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(p); err == nil && len(b) > 0 {
			return b
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not appear", p)
	return nil
}

// TestAgentScanExitStatus: agent scan exits as clamscan does, so that
// scripts can tell "found" from "failed": 2 for a path that does not exist
// (it once scanned nothing and exited 0) or an agent that is not
// registered. 0 (clean) and 1 (found) are run by the README's walkthrough
// (TestREADME).
func TestAgentScanExitStatus(t *testing.T) {
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"agent", "scan", "--dir", dir, filepath.Join(dir, "no-such-directory")}, "no such file or directory"},
		{[]string{"agent", "scan", "--dir", filepath.Join(dir, "not-registered"), dir}, ""},
		{[]string{"agent", "scan", "--dir", dir}, "name at least one file"},
		{[]string{"agent", "scan", "--no-such-flag", dir}, "not defined"},
	} {
		out, err := runVitrine(t, bin, tc.args...)
		var xe *exec.ExitError
		if !errors.As(err, &xe) || xe.ExitCode() != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("vitrine %s: %v, want exit status 2 and %q\n%s", strings.Join(tc.args, " "), err, tc.want, out)
		}
	}
}
