package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/internal/logserver"
	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/tlog"
)

// TestMain gives the tests a configuration and cache directory of their
// own, so that what the commands keep there by default (pins, the agent,
// the rebuilder, monitor state) is neither the developer's nor left from
// an earlier run, and removes the binary that buildVitrine built.
func TestMain(m *testing.M) {
	home, err := os.MkdirTemp("", "vitrine-test-home")
	if err != nil {
		panic(err)
	}
	userCache, hadUserCache = os.LookupEnv("XDG_CACHE_HOME")
	// The go command's build cache defaults to $XDG_CACHE_HOME/go-build:
	// keep the developer's, or every run would build the binaries the
	// tests run (buildVitrine, the benchmarks' baselines) from nothing,
	// minutes on a busy machine.
	if os.Getenv("GOCACHE") == "" {
		if out, err := exec.Command("go", "env", "GOCACHE").Output(); err == nil {
			os.Setenv("GOCACHE", strings.TrimSpace(string(out)))
		}
	}
	os.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "config"))
	os.Setenv("XDG_CACHE_HOME", filepath.Join(home, "cache"))
	code := m.Run()
	for _, dir := range []string{builtDir, conformanceDir} {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
	os.RemoveAll(home)
	os.Exit(code)
}

// builtDir holds the binary buildVitrine built, if it did.
var builtDir string

// userCache is $XDG_CACHE_HOME as the tests found it, if hadUserCache.
var (
	userCache    string
	hadUserCache bool
)

// buildVitrine builds the command once per test binary run.
var buildVitrine = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "vitrine-bin")
	if err != nil {
		return "", err
	}
	builtDir = dir
	bin := filepath.Join(dir, "vitrine")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	// The go command keeps its build cache under $XDG_CACHE_HOME unless
	// GOCACHE says otherwise: under the tests' own, every run built the
	// command from nothing (minutes on a busy machine).
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "XDG_CACHE_HOME=") })
	if hadUserCache {
		cmd.Env = append(cmd.Env, "XDG_CACHE_HOME="+userCache)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// upProcess is a `vitrine up` child process.
type upProcess struct {
	cmd  *exec.Cmd
	base string
	out  *lockedBuffer
	args []string
}

// lockedBuffer is a process's output, which a test may read while the
// process writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

func startUp(t *testing.T, bin, data, addr string) *upProcess {
	t.Helper()
	return startUpArgs(t, bin, addr, "up", "--data", data, "--listen", addr)
}

// startUpArgs runs the command with args and waits until it serves the
// discovery document on addr.
func startUpArgs(t *testing.T, bin, addr string, args ...string) *upProcess {
	t.Helper()
	return startServing(t, bin, addr, "/.well-known/vitrine.json", http.StatusOK, args...)
}

// startServing runs the command with args and waits until GET path on addr
// answers status (any status if 0).
func startServing(t *testing.T, bin, addr, path string, status int, args ...string) *upProcess {
	t.Helper()
	p := startProcess(t, bin, addr, args...)
	waitServing(t, p, path, status, 20*time.Second)
	return p
}

// startProcess runs the command with args, to be reached on addr.
func startProcess(t *testing.T, bin, addr string, args ...string) *upProcess {
	t.Helper()
	out := new(lockedBuffer)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return &upProcess{cmd: cmd, base: "http://" + addr, out: out, args: args}
}

// waitServing waits up to wait until GET path on p answers status (any
// status if 0), and kills p if it does not.
func waitServing(t *testing.T, p *upProcess, path string, status int, wait time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(p.base + path)
		if err == nil {
			resp.Body.Close()
			if status == 0 || resp.StatusCode == status {
				return
			}
		}
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	t.Fatalf("vitrine %s did not come up:\n%s", strings.Join(p.args[:min(2, len(p.args))], " "), p.out.String())
}

func (p *upProcess) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// TestCrashSafety kills a witnessed `vitrine log serve` with SIGKILL at
// random moments during concurrent appends and checks, after every restart,
// that every acknowledged index holds exactly the entry that was sent, that
// the log verifies as a whole, and that it is consistent with every
// checkpoint published before the crash. The witness, `vitrine witness`,
// runs on, so that after a crash it has often cosigned more than the log
// last published. (The logs of `vitrine up` run the same code but take no
// generic appends: only their owners append to them.)
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test builds and kills processes; skipped in -short mode")
	}
	iterations := 100
	if s := os.Getenv("VITRINE_CRASH_ITERATIONS"); s != "" {
		iterations, _ = strconv.Atoi(s)
	}
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	addr := freeAddr(t)
	const origin = "example.com/crash"
	vkey, err := logserver.LoadOrCreateKey(data, origin)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	policyFile := startWitness(t, bin, vkey)
	pb, err := os.ReadFile(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := tlog.ParsePolicy(pb)
	if err != nil {
		t.Fatal(err)
	}
	logURL := "http://" + addr + "/"
	token := ""
	acked := map[uint64][]byte{} // index -> entry, across all runs
	var seenCheckpoints [][]byte // checkpoints observed since the last verified one
	observed := 0
	rng := rand.New(rand.NewPCG(1, 2)) // deterministic schedule of kill moments
	serve := func() *upProcess {
		// Serving at all, before its first checkpoint (404).
		return startServing(t, bin, addr, "/checkpoint", 0, "log", "serve", "--data", data, "--listen", addr, "--origin", origin, "--witness-policy", policyFile)
	}

	for it := 0; it < iterations; it++ {
		p := serve()
		if token == "" {
			b, err := os.ReadFile(filepath.Join(data, "add.token"))
			if err != nil {
				t.Fatal(err)
			}
			token = strings.TrimSpace(string(b))
		}
		// After a restart, everything acknowledged before must be there.
		// Consistency is transitive: once the restarted log is consistent
		// with every checkpoint seen so far, later runs need check only the
		// checkpoint verified now and those seen after it.
		if cp := checkLog(t, it, logURL, verifier, policy, acked, seenCheckpoints); cp != nil {
			seenCheckpoints = [][]byte{cp}
		}
		if it%10 == 0 {
			t.Logf("run %d: %d acknowledged entries so far", it, len(acked))
		}

		// Concurrent appends, killed at a random moment.
		ctx, cancel := context.WithCancel(context.Background())
		var mu sync.Mutex
		var wg sync.WaitGroup
		for c := 0; c < 8; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				for n := 0; ctx.Err() == nil; n++ {
					entry := []byte(fmt.Sprintf("crash-test run %d client %d entry %d", it, c, n))
					idx, err := postAdd(ctx, logURL, token, entry)
					if err != nil {
						continue
					}
					mu.Lock()
					if prev, ok := acked[idx]; ok && !bytes.Equal(prev, entry) {
						t.Errorf("index %d acknowledged twice: %q and %q", idx, prev, entry)
					}
					acked[idx] = entry
					mu.Unlock()
				}
			}(c)
		}
		wg.Add(1)
		go func() { // watch checkpoints as a monitor would
			defer wg.Done()
			for ctx.Err() == nil {
				if cp, err := get(ctx, logURL+"checkpoint"); err == nil {
					mu.Lock()
					if n := len(seenCheckpoints); n == 0 || !bytes.Equal(seenCheckpoints[n-1], cp) {
						seenCheckpoints = append(seenCheckpoints, cp)
						observed++
					}
					mu.Unlock()
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
		time.Sleep(time.Duration(20+rng.IntN(400)) * time.Millisecond)
		p.kill()
		cancel()
		wg.Wait()
	}
	p := serve()
	defer p.kill()
	checkLog(t, iterations, logURL, verifier, policy, acked, seenCheckpoints)
	t.Logf("%d crashes, %d acknowledged entries, %d distinct checkpoints observed before crashes", iterations, len(acked), observed)
}

// startWitness runs `vitrine witness` for the log whose verifier key is
// vkey until the test ends, and returns a witness policy file that names it.
func startWitness(t *testing.T, bin, vkey string) string {
	t.Helper()
	dir, addr := t.TempDir(), freeAddr(t)
	logs := filepath.Join(dir, "logs")
	if err := os.WriteFile(logs, []byte(vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "witness", "--data", filepath.Join(dir, "state"), "--listen", addr, "--name", "example.com/witness", "--logs", logs)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	wvk := strings.TrimSpace(string(waitFile(t, filepath.Join(dir, "state", "witness.vkey"))))
	policy := filepath.Join(dir, "policy")
	if err := os.WriteFile(policy, []byte("witness w "+wvk+" http://"+addr+"\nquorum w\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return policy
}

// checkLog checks the restarted log and returns the checkpoint it verified.
func checkLog(t *testing.T, it int, logURL string, v note.Verifier, policy *tlog.Policy, acked map[uint64][]byte, seen [][]byte) []byte {
	t.Helper()
	if logURL == "" {
		return nil
	}
	var maxIdx uint64
	for i := range acked {
		maxIdx = max(maxIdx, i+1)
	}
	u, _ := url.Parse(logURL)
	f, err := client.NewHTTPFetcher(u, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var cp *tlog.Checkpoint
	for {
		raw, err := f.ReadCheckpoint(ctx)
		if err == nil {
			if cp, err = policy.VerifyCheckpoint(raw, v); err != nil {
				t.Fatalf("restart %d: published checkpoint does not verify: %v", it, err)
			}
			if cp.Size >= maxIdx {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("restart %d: no witnessed checkpoint covers the %d acknowledged entries (last: %v, %v)", it, maxIdx, cp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := tlog.VerifyTree(ctx, f, cp.Size, cp.Hash); err != nil {
		t.Fatalf("restart %d: tree does not verify: %v", it, err)
	}
	for _, old := range seen {
		ocp, err := policy.VerifyCheckpoint(old, v)
		if err != nil {
			t.Fatalf("restart %d: a checkpoint served before the crash does not verify: %v", it, err)
		}
		if ocp.Size > cp.Size {
			t.Fatalf("restart %d: log shrank from %d to %d", it, ocp.Size, cp.Size)
		}
		proof, err := tlog.ConsistencyProof(ctx, f, ocp.Size, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.VerifyConsistency(ocp.Size, cp.Size, ocp.Hash, cp.Hash, proof); err != nil {
			t.Fatalf("restart %d: not consistent with checkpoint of size %d seen before the crash: %v", it, ocp.Size, err)
		}
	}
	// Every acknowledged index holds exactly the entry sent.
	bundles := map[uint64][][]byte{}
	for idx, want := range acked {
		bi := idx / 256
		entries, ok := bundles[bi]
		if !ok {
			b, err := client.GetEntryBundle(ctx, f.ReadEntryBundle, bi, cp.Size)
			if err != nil {
				t.Fatalf("restart %d: reading bundle %d: %v", it, bi, err)
			}
			entries = b.Entries
			bundles[bi] = entries
		}
		if got := entries[idx%256]; !bytes.Equal(got, want) {
			t.Fatalf("restart %d: index %d holds %q, want %q", it, idx, got, want)
		}
	}
	return cp.Raw
}

func discover(t *testing.T, base string) platform.Discovery {
	t.Helper()
	b, err := get(context.Background(), base+"/.well-known/vitrine.json")
	if err != nil {
		t.Fatal(err)
	}
	var d platform.Discovery
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func postAdd(ctx context.Context, logURL, token string, entry []byte) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, logURL+"add", bytes.NewReader(entry))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("%s: %s", resp.Status, b)
	}
	return strconv.ParseUint(string(b), 10, 64)
}
