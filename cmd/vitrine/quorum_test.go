package main

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/internal/logserver"
	"github.com/vitrine-dev/vitrine/internal/logstore"
	"github.com/vitrine-dev/vitrine/internal/logstore/logstoretest"
	"github.com/vitrine-dev/vitrine/tlog"
)

// TestWitnessQuorumTwoOfThree runs one `vitrine log serve` whose witness
// policy needs the cosignatures of two of three `vitrine witness`
// processes, and SIGKILLs the witnesses one after the other. With one
// down, appends go on and checkpoints are published, each cosigned by the
// two that run. With two down, appends are still acknowledged but no
// checkpoint without the quorum is ever served. Once one is back (the one
// killed first, whose state is the oldest and which must have kept it),
// the checkpoint catches up and covers every acknowledged entry; and once
// the second is back and the third killed, the quorum is the two witnesses
// that were down. The log is then checked whole: every acknowledged index
// holds the entry sent, consistency with every checkpoint seen, Tessera's
// fsck, x/mod's sumdb/tlog, and `vitrine log verify` under the 2-of-3
// policy (and its refusal under a policy that needs all three). It runs on
// the journaled tiles and on Tessera's MySQL driver.
func TestWitnessQuorumTwoOfThree(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills processes; skipped in -short mode")
	}
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("journal", func(t *testing.T) { testWitnessQuorum(t, bin, logstore.Journal) })
	t.Run("mysql", func(t *testing.T) { testWitnessQuorum(t, bin, logstoretest.NewDatabase(t).String()) })
}

func testWitnessQuorum(t *testing.T, bin, storage string) {
	start := time.Now()
	data := t.TempDir()
	const origin = "example.com/quorum"
	vkey, err := logserver.LoadOrCreateKey(data, origin)
	if err != nil {
		t.Fatal(err)
	}
	logV, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	logsFile := filepath.Join(t.TempDir(), "logs")
	if err := os.WriteFile(logsFile, []byte(vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ws := make([]*quorumWitness, 3)
	for i := range ws {
		ws[i] = &quorumWitness{
			policyName: fmt.Sprintf("w%d", i+1),
			keyName:    fmt.Sprintf("witness%d.example.com", i+1),
			dir:        t.TempDir(),
			addr:       freeAddr(t),
			logs:       logsFile,
		}
		ws[i].start(t, bin, ws[i].addr)
	}
	logAddr := freeAddr(t)
	logURL := "http://" + logAddr + "/"
	policyText := func(threshold string) []byte {
		var b strings.Builder
		fmt.Fprintf(&b, "# 2 of 3 independent witnesses\nlog %s %s\n", vkey, logURL)
		for _, w := range ws {
			fmt.Fprintf(&b, "witness %s %s http://%s\n", w.policyName, w.vkey, w.addr)
		}
		fmt.Fprintf(&b, "group witnesses %s w1 w2 w3\nquorum witnesses\n", threshold)
		return []byte(b.String())
	}
	policyFile := filepath.Join(t.TempDir(), "policy")
	if err := os.WriteFile(policyFile, policyText("2"), 0o644); err != nil {
		t.Fatal(err)
	}
	allFile := filepath.Join(t.TempDir(), "policy-all")
	if err := os.WriteFile(allFile, policyText("all"), 0o644); err != nil {
		t.Fatal(err)
	}
	policy, err := tlog.ParsePolicy(policyText("2"))
	if err != nil {
		t.Fatal(err)
	}

	logp := startServing(t, bin, logAddr, "/checkpoint", 0, "log", "serve", "--data", data, "--listen", logAddr, "--origin", origin, "--witness-policy", policyFile, "--storage", storage)
	t.Cleanup(logp.kill)
	tb, err := os.ReadFile(filepath.Join(data, "add.token"))
	if err != nil {
		t.Fatal(err)
	}
	q := &quorumRun{t: t, logURL: logURL, token: strings.TrimSpace(string(tb)), logV: logV, policy: policy, ws: ws, logp: logp, acked: map[uint64][]byte{}}
	fail := q.fatalf

	q.expect("all up", 20)
	// The state of w3, which it must keep across a SIGKILL.
	w3Before := ws[2].cosigned(t, vkey)

	// w3 down: the other two make the quorum.
	ws[2].p.kill()
	q.expect("w3 down", 20, "w1", "w2")

	// w2 down too: appends are acknowledged, the checkpoint stays.
	ws[1].p.kill()
	before, logged := q.size(), len(logp.out.String())
	outage := q.outage("w2 and w3 down", 3*time.Second)
	if outage.acked == 0 {
		fail("w2 and w3 down: no append was acknowledged (%d refused, first: %v); appends must stay durable without the quorum", outage.refused, outage.firstErr)
	}
	if outage.maxSize > outage.minIndex {
		fail("w2 and w3 down: a checkpoint of size %d was served, covering entry %d appended after the second witness died", outage.maxSize, outage.minIndex)
	}
	if outage.served == 0 {
		fail("w2 and w3 down: /checkpoint served nothing; it must keep serving the last witnessed checkpoint")
	}
	// The operator is told, on either storage.
	for deadline := time.Now().Add(30 * time.Second); !quorumWarned(logp.out.String()[logged:]); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			fail("w2 and w3 down: log serve warned of nothing")
		}
	}
	t.Logf("w2 and w3 down: %d appends acknowledged (indices %d to %d), %d refused; the served checkpoint stayed at size %d ≤ %d (%d reads)",
		outage.acked, before, q.size()-1, outage.refused, outage.maxSize, outage.minIndex, outage.served)

	// w3 back: first where the log cannot reach it, to see that it kept its
	// key and state, then where it can.
	vk := ws[2].vkey
	ws[2].start(t, bin, freeAddr(t))
	if ws[2].vkey != vk {
		t.Fatalf("w3 restarted with vkey %s, had %s", ws[2].vkey, vk)
	}
	if after := ws[2].cosigned(t, vkey); after.Size < w3Before.Size {
		t.Fatalf("w3 restarted with a cosigned checkpoint of size %d, had %d: its state was lost", after.Size, w3Before.Size)
	}
	ws[2].p.kill()
	ws[2].start(t, bin, ws[2].addr)
	q.expect("w3 back", 0, "w1", "w3")

	// An outsider's check, with the policy and without a quorum it needs.
	state := filepath.Join(t.TempDir(), "state.json")
	out, err := runVitrine(t, bin, "log", "verify", "--url", logURL, "--vkey", vkey, "--policy", policyFile, "--state", state)
	if err != nil || !strings.Contains(out, "witness quorum ok (cosigned by w1, w3)") {
		fail("log verify, 2 of 3, w2 down: %v\n%s", err, out)
	}
	out, err = runVitrine(t, bin, "log", "verify", "--url", logURL, "--vkey", vkey, "--policy", allFile, "--state", filepath.Join(t.TempDir(), "state.json"))
	if err == nil || !strings.Contains(out, "cosigned by w1, w3") {
		fail("log verify under a policy that needs all three, w2 down: %v, want a refusal naming w1 and w3\n%s", err, out)
	}

	// w2 back and w1 down: the two that were down make the quorum, w2
	// from the state it had when it was killed.
	ws[1].start(t, bin, ws[1].addr)
	ws[0].p.kill()
	q.expect("w1 down", 20, "w2", "w3")

	// All three up again.
	ws[0].start(t, bin, ws[0].addr)
	q.expect("all back", 20)

	cpRaw := checkLog(t, 0, logURL, logV, policy, q.acked, q.seen)
	cp, err := policy.VerifyCheckpoint(cpRaw, logV)
	if err != nil {
		t.Fatal(err)
	}
	q.cosigners(cp.Raw)
	verifyWithOthers(t, logURL, origin, logV, cp)
	out, err = runVitrine(t, bin, "log", "verify", "--url", logURL, "--vkey", vkey, "--policy", policyFile, "--state", state)
	if err != nil || !strings.Contains(out, "witness quorum ok") || !strings.Contains(out, "consistency with size") {
		fail("log verify, 2 of 3, all up: %v\n%s", err, out)
	}
	// What each witness last cosigned: the slowest is cancelled once two
	// have answered, and may lag.
	var sizes []string
	for _, w := range ws {
		sizes = append(sizes, fmt.Sprintf("%s %d", w.policyName, w.cosigned(t, vkey).Size))
	}
	t.Logf("%d entries acknowledged, final tree size %d, %d distinct checkpoints seen, all checked (%v); last cosigned: %s",
		len(q.acked), cp.Size, len(q.seen), time.Since(start).Round(time.Millisecond), strings.Join(sizes, ", "))
}

// quorumWarned reports whether a log's output has a warning that the
// witness quorum was not met.
func quorumWarned(out string) bool {
	for line := range strings.Lines(out) {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "witness policy was not satisfied") {
			return true
		}
	}
	return false
}

// quorumWitness is one `vitrine witness` process of the quorum test.
type quorumWitness struct {
	policyName, keyName string
	dir, addr, logs     string
	vkey                string // from its banner
	p                   *upProcess
}

// start runs the witness on addr and waits for its banner, from which it
// takes the witness's verifier key.
func (w *quorumWitness) start(t *testing.T, bin, addr string) {
	t.Helper()
	w.p = startServing(t, bin, addr, "/checkpoint/x", 0, "witness", "--data", w.dir, "--listen", addr, "--name", w.keyName, "--logs", w.logs)
	t.Cleanup(w.p.kill)
	banner := fmt.Sprintf("witness %s at http://%s/add-checkpoint for 1 log\n  vkey ", w.keyName, addr)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out := w.p.out.String()
		if _, rest, ok := strings.Cut(out, banner); ok {
			if vkey, _, ok := strings.Cut(rest, "\n"); ok {
				w.vkey = vkey
				return
			}
		}
		if time.Now().After(deadline) {
			w.p.kill()
			t.Fatalf("witness %s printed no banner %q:\n%s", w.policyName, banner, out)
		}
	}
}

// cosigned returns the latest checkpoint the witness cosigned for the log
// whose verifier key is logVKey, as the witness serves it, verified under
// the log's key and the witness's.
func (w *quorumWitness) cosigned(t *testing.T, logVKey string) *tlog.Checkpoint {
	t.Helper()
	logV, err := note.NewVerifier(logVKey)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := get(context.Background(), w.p.base+"/checkpoint/"+url.PathEscape(logV.Name()))
	if err != nil {
		t.Fatalf("witness %s: %v", w.policyName, err)
	}
	p, err := tlog.ParsePolicy([]byte("witness " + w.policyName + " " + w.vkey + "\nquorum " + w.policyName + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := p.VerifyCheckpoint(raw, logV)
	if err != nil {
		t.Fatalf("witness %s serves a checkpoint that it or the log did not sign: %v\n%s", w.policyName, err, raw)
	}
	return cp
}

func verifierOf(t *testing.T, cosignerVKey string) note.Verifier {
	t.Helper()
	v, err := fnote.NewVerifierForCosignatureV1(cosignerVKey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// quorumRun is the appends and checkpoints of the quorum test.
type quorumRun struct {
	t             *testing.T
	logURL, token string
	logV          note.Verifier
	policy        *tlog.Policy
	ws            []*quorumWitness
	logp          *upProcess

	mu    sync.Mutex
	acked map[uint64][]byte // index -> entry
	seen  [][]byte          // distinct checkpoints served, in order
	n     int
}

// fatalf ends the test with the log's output.
func (q *quorumRun) fatalf(format string, args ...any) {
	q.t.Helper()
	q.t.Fatalf(format+"\nlog serve:\n%s", append(args, q.logp.out.String())...)
}

// expect appends n entries and waits for a checkpoint that covers every
// entry acknowledged so far, cosigned by exactly the witnesses want (by
// any two if want is empty).
func (q *quorumRun) expect(phase string, n int, want ...string) *tlog.Checkpoint {
	q.t.Helper()
	q.appendN(phase, n)
	cp := q.awaitCovering(phase, q.size())
	if got := q.cosigners(cp.Raw); len(want) > 0 && !slices.Equal(got, want) {
		q.fatalf("%s: checkpoint of size %d cosigned by %v, want %v", phase, cp.Size, got, want)
	}
	q.t.Logf("%s: checkpoint of size %d, covering every acknowledged entry, cosigned by %v", phase, cp.Size, cp.Cosigners)
	return cp
}

// size is the tree size that covers every acknowledged entry.
func (q *quorumRun) size() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	var s uint64
	for i := range q.acked {
		s = max(s, i+1)
	}
	return s
}

// add appends one entry and records it once acknowledged.
func (q *quorumRun) add(ctx context.Context, phase string) (uint64, error) {
	q.mu.Lock()
	q.n++
	entry := fmt.Appendf(nil, "quorum test, %s, entry %d", phase, q.n)
	q.mu.Unlock()
	idx, err := postAdd(ctx, q.logURL, q.token, entry)
	if err != nil {
		return 0, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if prev, ok := q.acked[idx]; ok {
		q.t.Errorf("index %d acknowledged twice: %q and %q", idx, prev, entry)
	}
	q.acked[idx] = entry
	return idx, nil
}

func (q *quorumRun) appendN(phase string, n int) {
	q.t.Helper()
	for range n {
		if _, err := q.add(context.Background(), phase); err != nil {
			q.t.Fatalf("%s: append: %v", phase, err)
		}
	}
}

// read returns the served checkpoint, verified under the policy and, on
// its own, with x/mod's note and the witnesses' cosignature verifiers; it
// fails the test if it does not verify.
func (q *quorumRun) read(ctx context.Context, phase string) (*tlog.Checkpoint, error) {
	raw, err := get(ctx, q.logURL+"checkpoint")
	if err != nil {
		return nil, err
	}
	cp, err := q.policy.VerifyCheckpoint(raw, q.logV)
	if err != nil {
		q.t.Fatalf("%s: served checkpoint does not meet the 2-of-3 policy: %v\n%s", phase, err, raw)
	}
	if got := q.cosigners(raw); !slices.Equal(got, cp.Cosigners) {
		q.t.Fatalf("%s: tlog says the checkpoint is cosigned by %v, x/mod's note with the cosignature verifiers by %v", phase, cp.Cosigners, got)
	}
	q.mu.Lock()
	if n := len(q.seen); n == 0 || !bytes.Equal(q.seen[n-1], raw) {
		q.seen = append(q.seen, raw)
	}
	q.mu.Unlock()
	return cp, nil
}

// cosigners checks the checkpoint with code other than tlog's, x/mod's
// note.Open and formats' cosignature/v1 verifiers: the log's signature and
// at least two valid cosignatures of the policy's witnesses. It returns
// their policy names, in policy order.
func (q *quorumRun) cosigners(raw []byte) []string {
	q.t.Helper()
	vs := []note.Verifier{q.logV}
	for _, w := range q.ws {
		vs = append(vs, verifierOf(q.t, w.vkey))
	}
	n, err := note.Open(raw, note.VerifierList(vs...))
	if err != nil {
		q.t.Fatalf("x/mod note.Open of the served checkpoint: %v\n%s", err, raw)
	}
	var names []string
	logSigned := false
	for i, v := range vs {
		for _, s := range n.Sigs {
			if s.Name == v.Name() && s.Hash == v.KeyHash() {
				if i == 0 {
					logSigned = true
				} else {
					names = append(names, q.ws[i-1].policyName)
				}
			}
		}
	}
	if !logSigned || len(names) < 2 {
		q.t.Fatalf("checkpoint verified by x/mod's note: log signature %v, cosigned by %v; want the log's and at least two witnesses'\n%s", logSigned, names, raw)
	}
	return names
}

// awaitCovering waits until the served checkpoint covers size entries.
func (q *quorumRun) awaitCovering(phase string, size uint64) *tlog.Checkpoint {
	q.t.Helper()
	// The publisher backs off up to 30s after failures.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var last *tlog.Checkpoint
	for {
		cp, err := q.read(ctx, phase)
		if err == nil {
			if cp.Size >= size {
				return cp
			}
			last = cp
		}
		if ctx.Err() != nil {
			q.t.Fatalf("%s: no checkpoint covers the %d acknowledged entries (last served: %+v, %v)", phase, size, last, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// outageResult is what happened while the quorum could not be met.
type outageResult struct {
	acked, refused int
	firstErr       error
	minIndex       uint64 // the smallest index acknowledged during the outage
	maxSize        uint64 // the largest checkpoint served during the outage
	served         int    // checkpoint reads answered
}

// outage appends from four clients for d and reads the checkpoint all the
// while, as a monitor would.
func (q *quorumRun) outage(phase string, d time.Duration) outageResult {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	r := outageResult{minIndex: ^uint64(0)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				idx, err := q.add(ctx, phase)
				mu.Lock()
				switch {
				case err == nil:
					r.acked++
					r.minIndex = min(r.minIndex, idx)
				case ctx.Err() == nil:
					r.refused++
					if r.firstErr == nil {
						r.firstErr = err
					}
				}
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	for ctx.Err() == nil {
		if cp, err := q.read(ctx, phase); err == nil {
			mu.Lock()
			r.served++
			r.maxSize = max(r.maxSize, cp.Size)
			mu.Unlock()
		}
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	// Once more after the last append.
	if cp, err := q.read(context.Background(), phase); err == nil {
		r.served++
		r.maxSize = max(r.maxSize, cp.Size)
	}
	return r
}
