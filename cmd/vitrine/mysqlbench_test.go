package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/internal/loadgen"
	"github.com/vitrine-dev/vitrine/internal/logstore/logstoretest"
)

var (
	mysqlBenchDuration = flag.Duration("mysqlbench.duration", 10*time.Second, "BenchmarkMySQLAppends: how long each round measures")
	mysqlBenchWarmup   = flag.Duration("mysqlbench.warmup", 2*time.Second, "BenchmarkMySQLAppends: warm-up before each round")
)

// tesseraVersion is the Tessera module whose MySQL conformance server is
// the baseline: the one go.mod requires.
const tesseraVersion = "v1.0.4"

// conformanceDir holds the conformance server buildConformanceMySQL built,
// if it did.
var conformanceDir string

// buildConformanceMySQL builds Tessera's MySQL conformance server
// (tessera/cmd/conformance/mysql) from the module cache, outside this
// module, into a temporary directory (conformanceDir, which TestMain
// removes): it is a baseline to measure against, never part of the
// repository. It is built once for all the rounds of -count.
var buildConformanceMySQL = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "tessera-conformance")
	if err != nil {
		return "", err
	}
	conformanceDir = dir
	cmd := exec.Command("go", "install", "github.com/transparency-dev/tessera/cmd/conformance/mysql@"+tesseraVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building Tessera's MySQL conformance server: %v\n%s", err, out)
	}
	return filepath.Join(dir, "mysql"), nil
})

// BenchmarkMySQLAppends measures appends over HTTP to a log on the
// machine's MariaDB served by `vitrine log serve --storage mysql://…`, and
// to Tessera's own MySQL conformance server on the same MariaDB (each in a
// database of its own), with the same load generator (internal/loadgen,
// what `vitrine-bench appends` runs): 1 client and 256 clients, each with
// one POST /add of a 128-byte entry in flight. Each iteration is one
// round: both servers, each for -mysqlbench.warmup then
// -mysqlbench.duration; metrics are the rates and latency percentiles of
// the last round and the ratio of the rates (Vitrine's over Tessera's).
// Neither log is witnessed (the conformance server cannot be). See
// docs/performance.md (issue 17) for the command.
func BenchmarkMySQLAppends(b *testing.B) {
	bin, err := buildVitrine()
	if err != nil {
		b.Fatal(err)
	}
	tess, err := buildConformanceMySQL()
	if err != nil {
		b.Fatal(err)
	}

	// Vitrine.
	vloc := logstoretest.NewDatabase(b)
	vdata, vaddr := b.TempDir(), freeAddr(b)
	vp := startBench(b, bin, vaddr, "log", "serve", "--data", vdata, "--listen", vaddr, "--origin", "example.com/bench-mysql", "--storage", vloc.String())
	defer vp.kill()
	token, err := os.ReadFile(filepath.Join(vdata, "add.token"))
	if err != nil {
		b.Fatal(err)
	}

	// Tessera's conformance server, as shipped but for where it listens
	// and its database.
	tloc := logstoretest.NewDatabase(b)
	skey, _, err := note.GenerateKey(rand.Reader, "example.com/bench-tessera")
	if err != nil {
		b.Fatal(err)
	}
	keyFile := filepath.Join(b.TempDir(), "tessera.key")
	if err := os.WriteFile(keyFile, []byte(skey), 0o600); err != nil {
		b.Fatal(err)
	}
	pw, err := tloc.Password()
	if err != nil {
		b.Fatal(err)
	}
	if pw != "" {
		b.Fatal("the conformance server takes its password in --mysql_uri; run the benchmark against a server without one")
	}
	taddr := freeAddr(b)
	tp := startBench(b, tess, taddr, "--mysql_uri", fmt.Sprintf("%s@tcp(%s:%d)/%s", tloc.User, tloc.Host, tloc.Port, tloc.Database),
		"--init_schema_path", filepath.Join(moduleDir(b, "github.com/transparency-dev/tessera"), "storage", "mysql", "schema.sql"),
		"--private_key_path", keyFile, "--listen", taddr)
	defer tp.kill()

	targets := []struct{ name, url, token string }{
		{"vitrine", "http://" + vaddr, strings.TrimSpace(string(token))},
		{"tessera", "http://" + taddr, ""},
	}
	for _, clients := range []int{1, 256} {
		// Each round measures both servers, one after the other, the
		// first of them alternating between rounds: on a machine that
		// others share, their ratio within a round is steadier than
		// either rate.
		round := 0
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			res := map[string]loadgen.Result{}
			for range b.N {
				for i := range targets {
					tg := targets[(i+round)%len(targets)]
					ctx, cancel := context.WithTimeout(context.Background(), *mysqlBenchWarmup+*mysqlBenchDuration+time.Minute)
					r, err := loadgen.Run(ctx, loadgen.Config{URL: tg.url, Token: tg.token, Clients: clients, Duration: *mysqlBenchDuration, Warmup: *mysqlBenchWarmup})
					cancel()
					if err != nil {
						b.Fatal(err)
					}
					if r.Appends == 0 {
						b.Fatalf("%s: no append succeeded (%d errors, first: %s)", tg.name, r.Errors, r.FirstError)
					}
					res[tg.name] = r
				}
				round++
			}
			b.ReportMetric(0, "ns/op")
			for _, tg := range targets {
				r := res[tg.name]
				b.ReportMetric(r.PerSecond(), tg.name+"-appends/s")
				b.ReportMetric(float64(r.P50.Microseconds())/1000, tg.name+"-p50-ms")
				b.ReportMetric(float64(r.P99.Microseconds())/1000, tg.name+"-p99-ms")
				b.ReportMetric(float64(r.Errors), tg.name+"-errors")
			}
			b.ReportMetric(res["vitrine"].PerSecond()/res["tessera"].PerSecond(), "ratio")
		})
	}
}

// startBench runs a server and waits until GET /checkpoint answers at all.
func startBench(b *testing.B, bin, addr string, args ...string) *upProcess {
	b.Helper()
	out := new(lockedBuffer)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &upProcess{cmd: cmd, base: "http://" + addr, out: out, args: args}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := get(context.Background(), p.base+"/checkpoint"); err == nil || !strings.Contains(err.Error(), "connect") {
			return p
		}
	}
	p.kill()
	b.Fatalf("%s did not come up:\n%s", filepath.Base(bin), out.String())
	return nil
}

// moduleDir is where the module cache holds the module path that go.mod
// requires.
func moduleDir(b *testing.B, path string) string {
	b.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", path).Output()
	if err != nil {
		b.Fatalf("go list -m %s: %v", path, err)
	}
	return strings.TrimSpace(string(out))
}
