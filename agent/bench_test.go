//go:build unix

package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/vitrine-dev/vitrine/agent"
	"github.com/vitrine-dev/vitrine/internal/platform"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/ruledb"
)

// The update benchmarks measure the CPU of one update with the network
// taken out: the update repository of a real platform is captured once,
// byte for byte as go-tuf fetched it, and served from memory by
// memRepo. Both benchmarks write what go-tuf writes (its metadata
// cache and the downloaded target) to a fresh directory per iteration.
//
// The repository holds three versions of a rule database of a few
// thousand signatures and two versions of a program of a few MB for two
// platforms; each sub-benchmark updates to the newest version of one of
// them.
const (
	benchSignatures = 4000    // per rule database version, grows by 200 a version
	benchProgram    = 4 << 20 // bytes per program
)

// benchTargets are the artifacts the sub-benchmarks update to, with the
// marker that keeps agent.Update to that release: the other release is
// already at its newest version.
var benchTargets = []struct {
	name   string // sub-benchmark
	path   string // TUF target path
	skip   string // release already current
	newest string // its version
}{
	{"ruledb", "sample-ruledb/3/sample", "tool", "1.0.1"},
	{"program", "tool/1.0.1/tool_linux_amd64", "sample-ruledb", "3"},
}

// benchRepo is the captured repository and what an agent registered with
// the platform keeps.
type benchRepo struct {
	files    map[string][]byte // by URL path, /updates/...; absent is 404
	trust    []byte            // trust.json
	identity []byte            // identity.json
	pinned   agent.Pinned
}

var (
	benchOnce sync.Once
	benchRp   *benchRepo
	benchErr  error
)

// captureRepo starts a platform, publishes the releases, registers an
// agent, records every file of /updates/ that an update fetches, and
// stops the platform. It runs once per process.
func captureRepo(b *testing.B) *benchRepo {
	b.Helper()
	benchOnce.Do(func() { benchRp, benchErr = capture() })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchRp
}

func capture() (*benchRepo, error) {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "vitrine-bench-update-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	p, err := platform.Start(ctx, platform.Config{Data: filepath.Join(tmp, "data"), Listen: "127.0.0.1:0",
		CheckpointInterval: 100 * time.Millisecond, TUFOfflineDir: filepath.Join(tmp, "offline"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		p.Close(cctx)
	}()

	seed := rand.NewChaCha8([32]byte{'v', 'i', 't', 'r', 'i', 'n', 'e'})
	rng := rand.New(seed)
	for v := uint64(1); v <= 3; v++ {
		var text strings.Builder
		for i := range benchSignatures + 200*int(v-1) {
			fmt.Fprintf(&text, "%016x%016x:%d:Bench.Sig-%d\n", rng.Uint64(), rng.Uint64(), 1000+i, i)
		}
		src, err := ruledb.Parse("bench.hdb", strings.NewReader(text.String()))
		if err != nil {
			return nil, err
		}
		db, err := ruledb.Compile([]*ruledb.Source{src}, v)
		if err != nil {
			return nil, err
		}
		if err := benchPublish(ctx, p, "sample-ruledb", strconv.FormatUint(v, 10), map[string][]byte{"sample": db}); err != nil {
			return nil, err
		}
	}
	for _, v := range []string{"1.0.0", "1.0.1"} {
		files := map[string][]byte{}
		for _, arch := range []string{"amd64", "arm64"} {
			prog := make([]byte, benchProgram)
			seed.Read(prog)
			files["tool_linux_"+arch] = prog
		}
		if err := benchPublish(ctx, p, "tool", v, files); err != nil {
			return nil, err
		}
	}

	dir := filepath.Join(tmp, "agent")
	a, err := agent.Register(ctx, dir, p.URL(), p.OperatorToken(), "DE", nil)
	if err != nil {
		return nil, err
	}
	rec := &recorder{files: map[string][]byte{}}
	a.HTTP = &http.Client{Transport: rec}
	a.GOOS, a.GOARCH = "linux", "amd64"
	done, err := a.Update(ctx)
	if err != nil {
		return nil, fmt.Errorf("capturing the repository: %w", err)
	}
	if len(done) != 2 {
		return nil, fmt.Errorf("capturing the repository: installed %+v, want the rule database and the program", done)
	}
	rp := &benchRepo{files: rec.files, pinned: a.Pinned()}
	if rp.trust, err = os.ReadFile(filepath.Join(dir, "trust.json")); err != nil {
		return nil, err
	}
	if rp.identity, err = os.ReadFile(filepath.Join(dir, "identity.json")); err != nil {
		return nil, err
	}
	return rp, nil
}

func benchPublish(ctx context.Context, p *platform.Platform, name, version string, files map[string][]byte) error {
	src := []byte("source of " + name + " " + version)
	_, err := p.Publish(ctx, name, version, files, src, &release.Build{
		Recipe: json.RawMessage(`{"name":"` + name + `"}`), Source: "dir:.", Archive: strings.TrimPrefix(release.Digest(src), "sha256:"),
		Toolchain: "go1.26.8", Env: map[string]string{"CGO_ENABLED": "0"}, BuilderID: p.URL() + "/conveyer", InvocationID: name + version,
		Started: time.Now().Add(-time.Minute), Finished: time.Now(),
	})
	return err
}

// recorder fetches over the network and keeps every answer of
// /updates/, 404s included (go-tuf probes for the next root).
type recorder struct {
	mu    sync.Mutex
	files map[string][]byte
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK && strings.HasPrefix(req.URL.Path, "/updates/") {
		r.mu.Lock()
		r.files[req.URL.Path] = body
		r.mu.Unlock()
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// memRepo answers GETs from the captured files, whatever the host, and
// 404 for any other path.
type memRepo map[string][]byte

func (m memRepo) RoundTrip(req *http.Request) (*http.Response, error) {
	resp := &http.Response{Status: "404 Not Found", StatusCode: http.StatusNotFound, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: http.NoBody, Request: req}
	if b, ok := m[req.URL.Path]; ok && req.Method == http.MethodGet {
		resp.Status, resp.StatusCode = "200 OK", http.StatusOK
		resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
		resp.ContentLength = int64(len(b))
		resp.Body = io.NopCloser(bytes.NewReader(b))
	}
	return resp, nil
}

// bareUpdate is go-tuf's client alone: a refresh from the root in
// dir/tuf (or the pinned one), then one target downloaded and checked
// against the targets metadata, into dir/downloads.
func bareUpdate(rp *benchRepo, hc *http.Client, dir, target string) error {
	mdDir := filepath.Join(dir, "tuf")
	root, err := os.ReadFile(filepath.Join(mdDir, "root.json"))
	if errors.Is(err, os.ErrNotExist) {
		root = rp.pinned.TUFRoot
	} else if err != nil {
		return err
	}
	cfg, err := config.New(rp.pinned.UpdatesURL, root)
	if err != nil {
		return err
	}
	cfg.LocalMetadataDir = mdDir
	cfg.LocalTargetsDir = filepath.Join(dir, "downloads")
	if err := cfg.SetDefaultFetcherHTTPClient(hc); err != nil {
		return err
	}
	up, err := updater.New(cfg)
	if err != nil {
		return err
	}
	if err := up.Refresh(); err != nil {
		return err
	}
	tf, err := up.GetTargetInfo(target)
	if err != nil {
		return err
	}
	_, _, err = up.DownloadTarget(tf, filepath.Join(cfg.LocalTargetsDir, strings.ReplaceAll(target, "/", "_")), "")
	return err
}

// newAgentDir makes an agent directory as registration leaves it, with
// the release skip installed at version newest and the release to
// update blocked from installing unless install is set: its
// installed/<name> is a regular file, so agent.Update runs every check
// and then fails to create the version's directory, before writing a
// file. block is that release's name.
func newAgentDir(rp *benchRepo, dir, skip, newest, block string, install bool) error {
	if err := os.MkdirAll(filepath.Join(dir, "installed", skip), 0o700); err != nil {
		return err
	}
	if err := os.Symlink(newest, filepath.Join(dir, "installed", skip, "current")); err != nil {
		return err
	}
	if !install {
		if err := os.WriteFile(filepath.Join(dir, "installed", block), nil, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "trust.json"), rp.trust, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "identity.json"), rp.identity, 0o600)
}

// verifyOnce is one agent.Update that stops where the install would
// start: it must fail at creating the version's directory, with every
// check passed.
func verifyOnce(ctx context.Context, a *agent.Agent, release string) error {
	done, err := a.Update(ctx)
	if len(done) != 0 || err == nil || !errors.Is(err, syscall.ENOTDIR) || !strings.HasPrefix(err.Error(), "installing "+release+" ") {
		return fmt.Errorf("update = %+v, %v; want every check passed and the install blocked", done, err)
	}
	return nil
}

// cost accumulates the wall and CPU time (user and system, of the whole
// process, so the garbage collector's work counts) of measured calls.
type cost struct {
	wall, cpu time.Duration
	n         int
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (c *cost) measure(f func() error) error {
	c0, t0 := cpuTime(), time.Now()
	err := f()
	c.wall += time.Since(t0)
	c.cpu += cpuTime() - c0
	c.n++
	return err
}

func (c *cost) ms() float64    { return float64(c.wall) / float64(c.n) / 1e6 }
func (c *cost) cpuMs() float64 { return float64(c.cpu) / float64(c.n) / 1e6 }

// iterDirs hands out a fresh directory per iteration (fresh) or the same
// one every time (current), removing the previous fresh one.
type iterDirs struct {
	base  string
	fresh bool
	prev  string
	i     int
}

func (d *iterDirs) next() (dir string, isNew bool, err error) {
	if !d.fresh && d.prev != "" {
		return d.prev, false, nil
	}
	if d.prev != "" {
		if err := os.RemoveAll(d.prev); err != nil {
			return "", false, err
		}
	}
	d.i++
	d.prev = filepath.Join(d.base, strconv.Itoa(d.i))
	return d.prev, true, os.MkdirAll(d.prev, 0o700)
}

// benchModes are the agent states: "fresh" starts from the pinned root
// with no local metadata each iteration (an endpoint's first update);
// "current" keeps the TUF metadata of the previous iteration, so the
// refresh finds the repository unchanged (a routine update check that
// then fetches and checks one release).
var benchModes = []string{"fresh", "current"}

// BenchmarkBareTUFRefresh is go-tuf's updater alone: Refresh,
// GetTargetInfo and DownloadTarget of one artifact.
func BenchmarkBareTUFRefresh(b *testing.B) {
	rp := captureRepo(b)
	hc := &http.Client{Transport: memRepo(rp.files)}
	for _, mode := range benchModes {
		for _, tg := range benchTargets {
			b.Run(mode+"/"+tg.name, func(b *testing.B) {
				dirs := &iterDirs{base: b.TempDir(), fresh: mode == "fresh"}
				var bare cost
				b.ReportAllocs()
				b.StopTimer()
				for range b.N {
					dir, isNew, err := dirs.next()
					if err == nil && isNew && !dirs.fresh {
						err = bareUpdate(rp, hc, dir, tg.path) // brings the metadata up to date
					}
					if err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					err = bare.measure(func() error { return bareUpdate(rp, hc, dir, tg.path) })
					b.StopTimer()
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(bare.ms(), "ms/op")
				b.ReportMetric(bare.cpuMs(), "cpu-ms/op")
			})
		}
	}
}

// BenchmarkAgentVerifyUpdate is agent.Update for one release up to the
// install: go-tuf's refresh and download as in BenchmarkBareTUFRefresh,
// plus provenance.json and release.json downloaded through TUF, the DSSE
// provenance, the release-log entry, and the tlog-proof's inclusion
// under a checkpoint signed by the log and cosigned under the witness
// policy. Each iteration also runs bareUpdate once, alternating which
// goes first, and reports the ratio (x-bare, x-bare-cpu), so that the
// load of the shared machine weighs on both alike. ns/op is the agent
// alone.
func BenchmarkAgentVerifyUpdate(b *testing.B) {
	benchmarkAgentUpdate(b, false)
}

// BenchmarkAgentUpdateWithInstall is BenchmarkAgentVerifyUpdate with the
// install: the files written and synced into a new version directory and
// the current link swapped.
func BenchmarkAgentUpdateWithInstall(b *testing.B) {
	benchmarkAgentUpdate(b, true)
}

func benchmarkAgentUpdate(b *testing.B, install bool) {
	ctx := context.Background()
	rp := captureRepo(b)
	hc := &http.Client{Transport: memRepo(rp.files)}
	for _, mode := range benchModes {
		for _, tg := range benchTargets {
			b.Run(mode+"/"+tg.name, func(b *testing.B) {
				if install && mode == "current" {
					b.Skip("an install makes the next update a no-op; only fresh agents install every iteration")
				}
				release := strings.SplitN(tg.path, "/", 2)[0]
				agentDirs := &iterDirs{base: b.TempDir(), fresh: mode == "fresh"}
				bareDirs := &iterDirs{base: b.TempDir(), fresh: mode == "fresh"}
				var ag, bare cost
				b.ReportAllocs()
				b.StopTimer()
				for i := range b.N {
					dir, isNew, err := agentDirs.next()
					if err == nil && isNew {
						err = newAgentDir(rp, dir, tg.skip, tg.newest, release, install)
					}
					if err != nil {
						b.Fatal(err)
					}
					a, err := agent.Open(dir)
					if err != nil {
						b.Fatal(err)
					}
					a.HTTP = hc
					a.GOOS, a.GOARCH = "linux", "amd64"
					bdir, bNew, err := bareDirs.next()
					if err == nil && bNew && !bareDirs.fresh {
						err = bareUpdate(rp, hc, bdir, tg.path)
					}
					if err == nil && isNew && !agentDirs.fresh {
						err = verifyOnce(ctx, a, release)
					}
					if err != nil {
						b.Fatal(err)
					}
					runAgent := func() error {
						b.StartTimer()
						defer b.StopTimer()
						return ag.measure(func() error {
							if install {
								done, err := a.Update(ctx)
								if err == nil && len(done) != 1 {
									err = fmt.Errorf("installed %+v, want %s", done, release)
								}
								return err
							}
							return verifyOnce(ctx, a, release)
						})
					}
					runBare := func() error { return bare.measure(func() error { return bareUpdate(rp, hc, bdir, tg.path) }) }
					first, second := runAgent, runBare
					if i%2 == 1 {
						first, second = runBare, runAgent
					}
					if err := first(); err != nil {
						b.Fatal(err)
					}
					if err := second(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(ag.ms(), "ms/op")
				b.ReportMetric(ag.cpuMs(), "cpu-ms/op")
				b.ReportMetric(bare.ms(), "bare-ms/op")
				b.ReportMetric(bare.cpuMs(), "bare-cpu-ms/op")
				b.ReportMetric(float64(ag.wall)/float64(bare.wall), "x-bare")
				b.ReportMetric(float64(ag.cpu)/float64(bare.cpu), "x-bare-cpu")
			})
		}
	}
}

// BenchmarkArtifactSHA256 is the floor under verifying a program update:
// one SHA-256 of a benchProgram-byte artifact, which the TUF download
// check needs whatever else is saved.
func BenchmarkArtifactSHA256(b *testing.B) {
	prog := make([]byte, benchProgram)
	b.SetBytes(int64(len(prog)))
	for b.Loop() {
		sha256.Sum256(prog)
	}
}
