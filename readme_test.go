package vitrine_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The README is executable: TestREADME runs its walkthrough, block by
// block as a person pastes them, in a fresh clone of this repository, and
// checks what a person would look for in the output. It is the README's
// own text that runs, so the first page a newcomer reads cannot drift from
// the product (Tessera keeps a README_test.go for the same reason).

// readmeBlocks returns the ```sh blocks of README.md under the heading
// named section ("## Walkthrough"), up to the next "## " heading.
func readmeBlocks(t *testing.T, readme, section string) []string {
	t.Helper()
	start := strings.Index(readme, "\n"+section+"\n")
	if start < 0 {
		t.Fatalf("README.md has no %q section", section)
	}
	body := readme[start+len(section)+2:]
	if end := strings.Index(body, "\n## "); end >= 0 {
		body = body[:end]
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(body, -1) {
		blocks = append(blocks, m[1])
	}
	if len(blocks) == 0 {
		t.Fatalf("README.md's %q section has no sh blocks", section)
	}
	return blocks
}

// TestREADMEOpening checks the two commands the README opens with, which
// .ci/run and every newcomer rely on.
func TestREADMEOpening(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)^# Vitrine\n\n```sh\n(.*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatal("README.md does not open with a sh block under its title")
	}
	lines := strings.Split(strings.TrimSpace(string(m[1])), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "go run ./cmd/vitrine up ") || !strings.HasPrefix(lines[1], "go test -race -timeout 40m ./... ") {
		t.Errorf("README.md opens with %q, want the two commands: go run ./cmd/vitrine up, go test -race -timeout 40m ./... (cmd/vitrine takes 12 minutes under -race on two cores, past go test's default 10)", lines)
	}
}

// background marks a README line that runs until stopped: the harness
// starts it in the background and waits until it listens.
const background = "# runs until stopped"

// walkthroughScript turns the walkthrough's blocks into one bash script,
// as a person pastes them into one terminal (a second one for the
// commands that run until stopped). Addresses on the README's ports are
// moved to free ones, so that the test runs beside a platform a developer
// has running.
func walkthroughScript(blocks []string, ports map[string]string, logDir string) string {
	var b strings.Builder
	b.WriteString("set -euo pipefail\n")
	b.WriteString("trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n")
	// await URL: wait until something answers HTTP there.
	b.WriteString("await() { for _ in $(seq 1 600); do curl -s -o /dev/null \"$1\" && return 0; sleep 0.2; done; echo \"nothing listens at $1\" >&2; return 1; }\n")
	n := 0
	for _, block := range blocks {
		for from, to := range ports {
			block = strings.ReplaceAll(block, from, to)
		}
		for _, line := range strings.SplitAfter(block, "\n") {
			cmd, _, isBG := strings.Cut(line, background)
			if !isBG {
				b.WriteString(line)
				continue
			}
			n++
			cmd = strings.TrimSpace(cmd)
			listen := ports["127.0.0.1:8080"]
			if m := regexp.MustCompile(`--listen (\S+)`).FindStringSubmatch(cmd); m != nil {
				listen = m[1]
			} else {
				cmd += " --listen " + listen
			}
			out := filepath.Join(logDir, fmt.Sprintf("background-%d.log", n))
			fmt.Fprintf(&b, "echo '+ %s &'\n%s >%q 2>&1 &\nawait http://%s/\n", cmd, cmd, out, listen)
		}
	}
	return b.String()
}

// freePort returns a loopback address no one listens on.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// cloneForWalkthrough clones the repository into dir and brings over the
// working tree's uncommitted changes as one commit, so that the
// walkthrough runs on the code under test from a clean work tree with the
// history the recipes' commits are in.
func cloneForWalkthrough(t *testing.T, dir string) {
	t.Helper()
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not in a git work tree: %v", err)
	}
	src := strings.TrimSpace(string(root))
	git := func(dir string, stdin []byte, args ...string) []byte {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=readme test", "-c", "user.email=readme@test.invalid"}, args...)...)
		cmd.Dir, cmd.Stdin = dir, bytes.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %s: %v: %s", strings.Join(args, " "), err, stderr.String())
		}
		return out
	}
	git(src, nil, "clone", "--quiet", "--no-hardlinks", src, dir)
	if diff := git(src, nil, "diff", "HEAD", "--binary"); len(diff) > 0 {
		git(dir, diff, "apply", "--whitespace=nowarn", "-")
	}
	for _, f := range strings.Split(string(git(src, nil, "ls-files", "-z", "--others", "--exclude-standard")), "\x00") {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if len(git(dir, nil, "status", "--porcelain")) > 0 {
		git(dir, nil, "add", "-A")
		git(dir, nil, "commit", "--quiet", "-m", "the working tree under test")
	}
}

// TestREADME runs the README's walkthrough in a fresh clone with a fresh
// home directory: it builds both shipped recipes and rebuilds them, so it
// takes minutes.
func TestREADME(t *testing.T) {
	if testing.Short() {
		t.Skip("the walkthrough builds and rebuilds Vitrine (minutes)")
	}
	for _, tool := range []string{"bash", "git", "curl", "base64", "sha256sum", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the walkthrough needs %s, which is not installed (.ci/run installs it)", tool)
		}
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(t, string(readme), "## Walkthrough")

	tmp := t.TempDir()
	repo := filepath.Join(tmp, "repo")
	cloneForWalkthrough(t, repo)
	home := filepath.Join(tmp, "home")
	logDir := filepath.Join(tmp, "logs")
	scratch := filepath.Join(tmp, "tmp") // mktemp -d, and the rebuilder's work
	// Module caches are read-only: make the tree writable before
	// t.TempDir removes it (cleanups run last-registered first).
	t.Cleanup(func() {
		_ = filepath.WalkDir(tmp, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o700)
			}
			return nil
		})
	})
	for _, d := range []string{home, logDir, scratch} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	platform, rebuilder := freePort(t), freePort(t)
	script := walkthroughScript(blocks, map[string]string{"127.0.0.1:8080": platform, "127.0.0.1:8090": rebuilder}, logDir)

	// A fresh home (the agent's, rebuilder's and monitor's state), but
	// the machine's Go caches: the walkthrough's go build need not
	// recompile the world.
	goenv, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE", "GOPATH", "GOENV").Output()
	if err != nil {
		t.Fatal(err)
	}
	g := strings.Fields(string(goenv))
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "HOME", "TMPDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "VITRINE_URL", "GOCACHE", "GOMODCACHE", "GOPATH", "GOENV":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+home, "TMPDIR="+scratch, "VITRINE_URL=http://"+platform,
		"GOCACHE="+g[0], "GOMODCACHE="+g[1], "GOPATH="+g[2], "GOENV="+g[3])

	ctx, cancel := context.WithTimeout(context.Background(), 35*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir, cmd.Env = repo, env
	// Its own process group: on a timeout, everything it started stops.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	runErr := cmd.Run()
	t.Logf("walkthrough ran in %s", time.Since(start).Round(time.Second))
	if runErr != nil {
		bg, _ := filepath.Glob(filepath.Join(logDir, "*.log"))
		for _, f := range bg {
			b, _ := os.ReadFile(f)
			t.Logf("%s:\n%s", filepath.Base(f), tail(b, 4000))
		}
		t.Fatalf("the walkthrough failed: %v\n%s", runErr, tail(out.Bytes(), 12000))
	}
	got := out.String()

	// What a person checks in the output, in the order the README shows it.
	eicar := "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
	for _, want := range []string{
		"witness quorum ok",
		"root ok",
		"sample-ruledb 1: release-log entry 0, in a witnessed checkpoint",
		"vitrine 0.1.0: release-log entry 1, in a witnessed checkpoint",
		`"url": "vitrine/0.1.0/"`,
		`"path": "artifacts/vitrine_linux_arm64"`,
		"is vitrine_linux_amd64 of vitrine 0.1.0: provenance signed by the release key",
		"proof ok: entry 0 is in",
		"registered endpoint",
		"installed sample-ruledb 1",
		"installed vitrine 0.1.0",
		"scanned 1 file in",
		"0 infected",
		"eicar.com: Vitrine.Test.EICAR",
		"1 infected",
		"detections to region moscow",
		"agent scan exited 1",
		"Vitrine-Access-Receipt",
		eicar,
		"OK: the logs account for every record of the relocation",
		"after revocation: 401",
		"reproduced: sample-ruledb 1 (release-log entry 0)",
		"reproduced: vitrine 0.1.0 (release-log entry 1)",
	} {
		_, after, found := strings.Cut(got, want)
		if !found {
			t.Errorf("the walkthrough's output lacks %q (after what came before it)", want)
			continue
		}
		got = after
	}
	if t.Failed() {
		t.Logf("output:\n%s", tail(out.Bytes(), 12000))
	}

	// Nothing new in the working tree.
	status, err := exec.Command("git", "-C", repo, "status", "--porcelain", "--untracked-files=all").Output()
	if err != nil {
		t.Fatal(err)
	}
	if len(status) > 0 {
		t.Errorf("after the walkthrough, git status shows:\n%s", status)
	}
	// The TUF root keys went under the configuration directory, and
	// nowhere in the repository.
	if keys, _ := filepath.Glob(filepath.Join(home, ".config", "vitrine", "tuf-offline", "*", "root-*.key")); len(keys) == 0 {
		t.Errorf("no TUF root keys under %s/.config/vitrine/tuf-offline", home)
	}
	// The platform's data directory is private.
	if fi, err := os.Stat(filepath.Join(repo, "vitrine-data")); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o700 {
		t.Errorf("vitrine-data has mode %v, want 0700", fi.Mode().Perm())
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
