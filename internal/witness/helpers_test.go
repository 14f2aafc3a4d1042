package witness

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// testLog is a log held in memory: a Merkle tree built with x/mod's tlog
// and a signed-note key named after its origin.
type testLog struct {
	t      testing.TB
	origin string
	vkey   string
	signer note.Signer
	leaves int64
	stored []tlog.Hash
}

func newTestLog(t testing.TB, origin string, leaves int) *testLog {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	l := &testLog{t: t, origin: origin, vkey: vkey, signer: s}
	l.grow(leaves, "leaf")
	return l
}

func (l *testLog) key() LogKey { return LogKey{Origin: l.origin, VKey: l.vkey} }

func (l *testLog) hashes() tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, j := range idx {
			out[i] = l.stored[j]
		}
		return out, nil
	})
}

// grow appends n leaves whose contents start with prefix; logs grown with
// different prefixes fork.
func (l *testLog) grow(n int, prefix string) {
	l.t.Helper()
	for range n {
		h, err := tlog.StoredHashes(l.leaves, fmt.Appendf(nil, "%s %d", prefix, l.leaves), l.hashes())
		if err != nil {
			l.t.Fatal(err)
		}
		l.stored = append(l.stored, h...)
		l.leaves++
	}
}

func (l *testLog) root(size int64) []byte {
	l.t.Helper()
	if size == 0 {
		empty := sha256.Sum256(nil)
		return empty[:]
	}
	h, err := tlog.TreeHash(size, l.hashes())
	if err != nil {
		l.t.Fatal(err)
	}
	return h[:]
}

// checkpoint returns the log's signed checkpoint at size.
func (l *testLog) checkpoint(size int64) []byte {
	return l.sign(log.Checkpoint{Origin: l.origin, Size: uint64(size), Hash: l.root(size)}, l.signer)
}

func (l *testLog) sign(c log.Checkpoint, s note.Signer) []byte {
	l.t.Helper()
	b, err := note.Sign(&note.Note{Text: string(c.Marshal())}, s)
	if err != nil {
		l.t.Fatal(err)
	}
	return b
}

// proof returns the consistency proof from old to size.
func (l *testLog) proof(old, size int64) [][]byte {
	l.t.Helper()
	if old == 0 || old == size {
		return nil
	}
	p, err := tlog.ProveTree(size, old, l.hashes())
	if err != nil {
		l.t.Fatal(err)
	}
	out := make([][]byte, len(p))
	for i, h := range p {
		out[i] = h[:]
	}
	return out
}

// request returns a well-formed add-checkpoint body from old to size.
func (l *testLog) request(old, size int64) string {
	return addBody(uint64(old), l.proof(old, size), l.checkpoint(size))
}

func addBody(old uint64, proof [][]byte, cp []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "old %d\n", old)
	for _, h := range proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h) + "\n")
	}
	b.WriteString("\n")
	b.Write(cp)
	return b.String()
}

// openTestWitness opens a witness in a fresh directory trusting logs.
func openTestWitness(t testing.TB, dir string, logs ...LogKey) *Witness {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	w, err := Open(t.Context(), Config{Dir: dir, Name: "vitrine.test/witness", Logs: logs})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

type response struct {
	status      int
	contentType string
	body        string
}

// post sends body to the witness's add-checkpoint through its handler. It
// is safe to call from any goroutine.
func post(h http.Handler, body string) response {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/add-checkpoint", strings.NewReader(body)))
	return response{status: rec.Code, contentType: rec.Header().Get("Content-Type"), body: rec.Body.String()}
}

// mustPost posts body and fails the test unless the answer has status want.
func mustPost(t testing.TB, h http.Handler, body string, want int) response {
	t.Helper()
	r := post(h, body)
	if r.status != want {
		t.Fatalf("add-checkpoint = %d %q, want %d", r.status, r.body, want)
	}
	return r
}

// checkCosigned checks that sigs are cosignature lines by w over cp, each
// "— <name> <base64>\n", that verify with w's published key.
func checkCosigned(t testing.TB, w *Witness, cp []byte, sigs string) {
	t.Helper()
	if sigs == "" || !strings.HasSuffix(sigs, "\n") {
		t.Fatalf("cosignature lines %q are empty or unterminated", sigs)
	}
	for line := range strings.Lines(sigs) {
		if !strings.HasPrefix(line, "— "+w.Name()+" ") {
			t.Errorf("cosignature line %q does not start with %q", line, "— "+w.Name()+" ")
		}
	}
	v, err := fnote.NewVerifierForCosignatureV1(w.VKey())
	if err != nil {
		t.Fatalf("NewVerifierForCosignatureV1(VKey()): %v", err)
	}
	n, err := note.Open(append(append([]byte{}, cp...), sigs...), note.VerifierList(v))
	if err != nil {
		t.Fatalf("cosignature does not verify with VKey(): %v", err)
	}
	if got := len(n.Sigs); got != 1 {
		t.Fatalf("got %d verified cosignatures, want 1", got)
	}
	if ts, err := fnote.CoSigV1Timestamp(n.Sigs[0]); err != nil || ts.IsZero() {
		t.Errorf("cosignature timestamp = %v, %v; want a time", ts, err)
	}
}
