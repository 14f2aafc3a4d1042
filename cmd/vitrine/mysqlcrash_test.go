package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/client"
	"github.com/transparency-dev/tessera/fsck"
	"golang.org/x/mod/sumdb/note"
	sumtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/vitrine-dev/vitrine/internal/logserver"
	"github.com/vitrine-dev/vitrine/internal/logstore/logstoretest"
	"github.com/vitrine-dev/vitrine/tlog"
)

// TestMySQLTwoWriters runs one witnessed log on MariaDB (or MySQL) served
// by two `vitrine log serve --storage mysql://…` processes at once, each
// taking appends from its own clients, and SIGKILLs one of them, in turn,
// in the middle of the appends, then starts it again. At the end every
// acknowledged (2xx) index must hold exactly the entry sent, every
// checkpoint served before a crash must be consistent with the final one,
// and the log must pass Tessera's fsck and x/mod's sumdb/tlog (tree hash
// from the entries, inclusion and consistency proofs over the served
// tiles).
func TestMySQLTwoWriters(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test builds and kills processes; skipped in -short mode")
	}
	twoWriters(t, logstoretest.NewDatabase(t).String(), "")
}

// TestS3TwoWriters is TestMySQLTwoWriters on Tessera's AWS driver: the
// log's resources in an S3 bucket (a gofakes3 process of the test's own,
// or $VITRINE_TEST_S3), its appends sequenced in MariaDB. An append is
// acknowledged once sequenced; the entries a killed writer sequenced are
// integrated by the other, or by itself once restarted. Where the server
// serves the bucket's objects without credentials, the bucket itself is
// checked as a tlog-tiles log too.
func TestS3TwoWriters(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test builds and kills processes; skipped in -short mode")
	}
	s3 := logstoretest.NewS3(t)
	s3.Location.Prefix = "logs/crash"
	public := ""
	if s3.Public != "" {
		public = s3.Public + "logs/crash/"
	}
	twoWriters(t, s3.Location.String(), public)
}

// twoWriters runs the two-writer crash test on the log store at storage;
// bucket, if not "", is a base URL serving the store's objects as a
// tlog-tiles log, checked as the served log is.
func twoWriters(t *testing.T, storage, bucket string) {
	iterations := 6
	if s := os.Getenv("VITRINE_CRASH_ITERATIONS"); s != "" {
		iterations, _ = strconv.Atoi(s)
	}
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	const origin = "example.com/mysql-crash"
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
	start := time.Now()
	addrs := [2]string{freeAddr(t), freeAddr(t)}
	serve := func(i int) *upProcess {
		return startServing(t, bin, addrs[i], "/checkpoint", 0, "log", "serve", "--data", data, "--listen", addrs[i],
			"--origin", origin, "--witness-policy", policyFile, "--storage", storage)
	}
	var procs [2]*upProcess
	procs[0] = serve(0) // the first start makes add.token; then the second
	procs[1] = serve(1)
	defer func() {
		for _, p := range procs {
			p.kill()
		}
	}()
	tb, err := os.ReadFile(filepath.Join(data, "add.token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tb))
	urls := [2]string{"http://" + addrs[0] + "/", "http://" + addrs[1] + "/"}

	acked := map[uint64][]byte{}
	var seen [][]byte
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(3, 4))
	var refused, answered [2]int // appends refused with an HTTP status, and acknowledged, per writer
	var firstRefusal string
	for it := range iterations {
		victim := it % 2
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for c := range 8 {
			wg.Go(func() {
				target := c % 2
				for n := 0; ctx.Err() == nil; n++ {
					entry := fmt.Appendf(nil, "two-writer run %d client %d entry %d", it, c, n)
					idx, err := postAdd(ctx, urls[target], token, entry)
					mu.Lock()
					if err != nil {
						// A writer being killed or restarted does not
						// answer; one that answers with an error status
						// is counted.
						if ctx.Err() == nil && !strings.Contains(err.Error(), "connect") && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
							refused[target]++
							if firstRefusal == "" {
								firstRefusal = err.Error()
							}
						}
						mu.Unlock()
						time.Sleep(5 * time.Millisecond)
						continue
					}
					if prev, ok := acked[idx]; ok && !bytes.Equal(prev, entry) {
						t.Errorf("index %d acknowledged twice: %q and %q", idx, prev, entry)
					}
					acked[idx] = entry
					answered[target]++
					mu.Unlock()
				}
			})
		}
		wg.Go(func() { // a monitor, reading checkpoints from both
			for ctx.Err() == nil {
				for _, u := range urls {
					if cp, err := get(ctx, u+"checkpoint"); err == nil {
						mu.Lock()
						if n := len(seen); n == 0 || !bytes.Equal(seen[n-1], cp) {
							seen = append(seen, cp)
						}
						mu.Unlock()
					}
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
		time.Sleep(time.Duration(300+rng.IntN(900)) * time.Millisecond)
		procs[victim].kill()
		time.Sleep(time.Duration(200+rng.IntN(400)) * time.Millisecond) // the survivor goes on alone
		cancel()
		wg.Wait()
		procs[victim] = serve(victim)
		mu.Lock()
		t.Logf("run %d (%v): killed writer %d; %d acknowledged entries so far", it, time.Since(start).Round(time.Millisecond), victim, len(acked))
		mu.Unlock()
	}
	if len(acked) < 100 {
		t.Fatalf("only %d appends were acknowledged: the writers did not take load", len(acked))
	}
	if answered[0] == 0 || answered[1] == 0 {
		t.Fatalf("acknowledged appends per writer %v: the log did not have two writers", answered)
	}

	t.Logf("appends done after %v", time.Since(start).Round(time.Millisecond))
	cpRaw := checkLog(t, iterations, urls[0], verifier, policy, acked, seen)
	cp, err := policy.VerifyCheckpoint(cpRaw, verifier)
	if err != nil {
		t.Fatal(err)
	}
	// The other writer serves the same log.
	if _, err := tlog.VerifyTree(context.Background(), fetcher(t, urls[1]), cp.Size, cp.Hash); err != nil {
		t.Fatalf("the log as served by writer 1: %v", err)
	}
	t.Logf("checked after %v", time.Since(start).Round(time.Millisecond))
	verifyWithOthers(t, urls[0], origin, verifier, cp)
	if bucket != "" {
		// The bucket may hold a newer checkpoint than cp: check the
		// bucket's own, and that cp's tree is a prefix of it.
		raw, err := get(context.Background(), bucket+"checkpoint")
		if err != nil {
			t.Fatal(err)
		}
		bcp, err := policy.VerifyCheckpoint(raw, verifier)
		if err != nil {
			t.Fatalf("the bucket's checkpoint: %v", err)
		}
		if bcp.Size < cp.Size {
			t.Fatalf("the bucket's checkpoint (size %d) is older than the served one (%d)", bcp.Size, cp.Size)
		}
		verifyWithOthers(t, bucket, origin, verifier, bcp)
		proof, err := tlog.ConsistencyProof(context.Background(), fetcher(t, bucket), cp.Size, bcp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.VerifyConsistency(cp.Size, bcp.Size, cp.Hash, bcp.Hash, proof); err != nil {
			t.Fatalf("the served checkpoint and the bucket's are not consistent: %v", err)
		}
		t.Logf("the bucket, read without the log server, passes too at size %d", bcp.Size)
	}
	t.Logf("%d kills, %d acknowledged entries (per writer %v), tree size %d, %d distinct checkpoints seen, appends refused with an error status per writer %v (first: %q)",
		iterations, len(acked), answered, cp.Size, len(seen), refused, firstRefusal)
}

func fetcher(t *testing.T, logURL string) *client.HTTPFetcher {
	t.Helper()
	u, err := url.Parse(logURL)
	if err != nil {
		t.Fatal(err)
	}
	f, err := client.NewHTTPFetcher(u, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// verifyWithOthers checks the log at checkpoint cp with code we did not
// write: Tessera's fsck, and x/mod's sumdb/tlog, which recomputes the tree
// hash from every entry and checks inclusion and consistency proofs built
// from the served tiles.
func verifyWithOthers(t *testing.T, logURL, origin string, v note.Verifier, cp *tlog.Checkpoint) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := fetcher(t, logURL)
	if err := fsck.New(origin, v, f, leafHashes, fsck.Opts{N: 4}).Check(ctx); err != nil {
		t.Fatalf("tessera fsck: %v", err)
	}
	n := int64(cp.Size)
	var entries [][]byte
	for bi := uint64(0); bi*256 < cp.Size; bi++ {
		b, err := client.GetEntryBundle(ctx, f.ReadEntryBundle, bi, cp.Size)
		if err != nil {
			t.Fatalf("bundle %d: %v", bi, err)
		}
		entries = append(entries, b.Entries...)
	}
	if int64(len(entries)) != n {
		t.Fatalf("the bundles hold %d entries, the checkpoint %d", len(entries), n)
	}
	var hashes []sumtlog.Hash
	mem := sumtlog.HashReaderFunc(func(idx []int64) ([]sumtlog.Hash, error) {
		out := make([]sumtlog.Hash, len(idx))
		for k, x := range idx {
			out[k] = hashes[x]
		}
		return out, nil
	})
	for i, e := range entries {
		h, err := sumtlog.StoredHashes(int64(i), e, mem)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, h...)
	}
	root, err := sumtlog.TreeHash(n, mem)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(root[:], cp.Hash) {
		t.Fatalf("checkpoint root %x, x/mod's tlog computes %x from the entries", cp.Hash, root)
	}
	tiles := sumtlog.TileHashReader(sumtlog.Tree{N: n, Hash: root}, httpTiles{f})
	for _, idx := range []int64{0, n / 3, n / 2, n - 1} {
		p, err := sumtlog.ProveRecord(n, idx, tiles)
		if err != nil {
			t.Fatalf("x/mod ProveRecord(%d): %v", idx, err)
		}
		if err := sumtlog.CheckRecord(p, n, root, idx, sumtlog.RecordHash(entries[idx])); err != nil {
			t.Fatalf("x/mod CheckRecord(%d): %v", idx, err)
		}
	}
	for _, old := range []int64{1, n / 2, n - 1} {
		tp, err := sumtlog.ProveTree(n, old, tiles)
		if err != nil {
			t.Fatalf("x/mod ProveTree(%d): %v", old, err)
		}
		oldHash, err := sumtlog.TreeHash(old, mem)
		if err != nil {
			t.Fatal(err)
		}
		if err := sumtlog.CheckTree(tp, n, root, old, oldHash); err != nil {
			t.Fatalf("x/mod CheckTree(%d -> %d): %v", old, n, err)
		}
	}
}

// httpTiles serves a tlog-tiles log's hash tiles to x/mod's sumdb/tlog,
// whose tiles (8 levels high, concatenated hashes) are the same.
type httpTiles struct{ f *client.HTTPFetcher }

func (httpTiles) Height() int { return 8 }

func (r httpTiles) ReadTiles(tiles []sumtlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		p := uint8(0)
		if t.W < 256 {
			p = uint8(t.W)
		}
		b, err := r.f.ReadTile(context.Background(), uint64(t.L), uint64(t.N), p)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (httpTiles) SaveTiles([]sumtlog.Tile, [][]byte) {}

// leafHashes turns an entry bundle into RFC 6962 leaf hashes, for fsck.
func leafHashes(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, fmt.Errorf("truncated bundle")
		}
		n := int(b[0])<<8 | int(b[1])
		if len(b) < 2+n {
			return nil, fmt.Errorf("truncated entry")
		}
		h := sha256.Sum256(append([]byte{0}, b[2:2+n]...))
		out = append(out, h[:])
		b = b[2+n:]
	}
	return out, nil
}

// TestLogServeStorageFlag: bad --storage values are refused before anything
// is opened, saying what to fix and never echoing a password.
func TestLogServeStorageFlag(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ storage, want string }{
		{"mysql://root:hunter2@127.0.0.1:3306/test", "password_file"},
		{"mysql://127.0.0.1:3306/test", "no user"},
		{"postgres://u@h:5432/d", `want "journal", mysql://USER@HOST:PORT/DB or s3://`},
		{"mysql://root@127.0.0.1:3306/test?password_file=relative", "absolute"},
		{"s3://AKIAEXAMPLE:hunter2@logs?mysql=root@127.0.0.1:3306/test", "credentials_file"},
		{"s3://logs?mysql=root:hunter2@127.0.0.1:3306/test", "password_file"},
		{"s3://logs?endpoint=http://127.0.0.1:9000", "no mysql="},
		{"s3://logs?mysql=root@127.0.0.1:3306/test&endpoint=ftp://h", "endpoint="},
	} {
		out, err := runCmd(ctx, runLogServe, "--data", t.TempDir(), "--origin", "example.com/x", "--listen", "127.0.0.1:0", "--storage", tc.storage)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--storage %s: %v, want an error saying %q\n%s", tc.storage, err, tc.want, out)
		}
		if err != nil && strings.Contains(err.Error()+out, "hunter2") {
			t.Errorf("--storage %s: the password shows: %v %s", tc.storage, err, out)
		}
	}
	// A password file that cannot be read.
	loc := logstoretest.NewDatabase(t)
	loc.PasswordFile = filepath.Join(t.TempDir(), "missing")
	if _, err := runCmd(ctx, runLogServe, "--data", t.TempDir(), "--origin", "example.com/x", "--listen", "127.0.0.1:0", "--storage", loc.String()); err == nil || !strings.Contains(err.Error(), "password file") {
		t.Errorf("missing password file: %v", err)
	}
	// Below the driver's minimum checkpoint interval.
	loc.PasswordFile = ""
	if _, err := runCmd(ctx, runLogServe, "--data", t.TempDir(), "--origin", "example.com/x", "--listen", "127.0.0.1:0", "--storage", loc.String(), "--checkpoint-interval", "200ms"); err == nil || !strings.Contains(err.Error(), "minimum 1s") {
		t.Errorf("--checkpoint-interval 200ms on MySQL: %v, want a refusal naming the minimum", err)
	}
}
