package witness

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
)

// failures is an http.RoundTripper that records the checkpoint size of every
// add-checkpoint request that got no answer, so that the test can wait for
// Tessera to have tried, and failed, to have a checkpoint witnessed.
type failures struct {
	base http.RoundTripper

	mu    sync.Mutex
	sizes []uint64
}

func (f *failures) RoundTrip(req *http.Request) (*http.Response, error) {
	var size uint64
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
		var c log.Checkpoint
		if _, cp, ok := bytes.Cut(b, []byte("\n\n")); ok {
			if _, err := c.Unmarshal(cp); err == nil {
				size = c.Size
			}
		}
	}
	resp, err := f.base.RoundTrip(req)
	if err != nil {
		f.mu.Lock()
		f.sizes = append(f.sizes, size)
		f.mu.Unlock()
	}
	return resp, err
}

// failedAtLeast returns how many unanswered requests carried a checkpoint of
// at least size.
func (f *failures) failedAtLeast(size uint64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, s := range f.sizes {
		if s >= size {
			n++
		}
	}
	return n
}

// TestTessera runs a Tessera POSIX log whose witness policy requires this
// witness, reached over HTTP: its published checkpoints carry the witness's
// cosignature, and while the witness is down it publishes none (fail closed).
func TestTessera(t *testing.T) {
	ctx := t.Context()
	const logOrigin = "vitrine.test/logs/tessera"
	skey, vkey, err := note.GenerateKey(rand.Reader, logOrigin)
	if err != nil {
		t.Fatal(err)
	}
	logSigner, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	logVerifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	w := openTestWitness(t, "", LogKey{Origin: logOrigin, VKey: vkey})
	witnessVerifier, err := fnote.NewVerifierForCosignatureV1(w.VKey())
	if err != nil {
		t.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.Handle("/witness/", http.StripPrefix("/witness", w.Handler()))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	policy := fmt.Sprintf("witness w %s %s/witness\nquorum w\n", w.VKey(), srv.URL)
	group, err := tessera.NewWitnessGroupFromPolicy([]byte(policy))
	if err != nil {
		t.Fatalf("NewWitnessGroupFromPolicy: %v", err)
	}
	fails := &failures{base: &http.Transport{}}
	driver, err := posix.New(ctx, posix.Config{Path: t.TempDir(), HTTPClient: &http.Client{Transport: fails}})
	if err != nil {
		t.Fatal(err)
	}
	appender, shutdown, reader, err := tessera.NewAppender(ctx, driver, tessera.NewAppendOptions().
		WithCheckpointSigner(logSigner).
		WithWitnesses(group, &tessera.WitnessOptions{FailOpen: false}).
		WithCheckpointInterval(100*time.Millisecond).
		WithBatching(1, 10*time.Millisecond))
	if err != nil {
		t.Fatalf("NewAppender: %v", err)
	}
	awaiter := tessera.NewPublicationAwaiter(ctx, reader.ReadCheckpoint, 20*time.Millisecond)

	// witnessed checks that cp carries the log's signature and the witness's
	// cosignature, and returns its size.
	witnessed := func(cp []byte) uint64 {
		t.Helper()
		n, err := note.Open(cp, note.VerifierList(logVerifier, witnessVerifier))
		if err != nil {
			t.Fatalf("published checkpoint does not verify: %v\n%s", err, cp)
		}
		if len(n.Sigs) != 2 {
			t.Fatalf("published checkpoint has %d verified signatures, want the log's and the witness's:\n%s", len(n.Sigs), cp)
		}
		var c log.Checkpoint
		if _, err := c.Unmarshal([]byte(n.Text)); err != nil {
			t.Fatal(err)
		}
		return c.Size
	}

	var cp []byte
	for i := range 3 {
		_, cp, err = awaiter.Await(ctx, appender.Add(ctx, tessera.NewEntry(fmt.Appendf(nil, "entry %d", i))))
		if err != nil {
			t.Fatalf("Await entry %d: %v", i, err)
		}
	}
	if got := witnessed(cp); got != 3 {
		t.Fatalf("published size = %d, want 3", got)
	}
	stored, err := w.Checkpoint(ctx, logOrigin)
	if err != nil {
		t.Fatalf("witness Checkpoint: %v", err)
	}
	if got := witnessed(stored); got != 3 {
		t.Errorf("witness's stored size = %d, want 3", got)
	}

	// Stop the witness. The next entry is sequenced, but no checkpoint that
	// commits to it may be published until the witness cosigns one.
	srv.Close()
	future := appender.Add(ctx, tessera.NewEntry([]byte("while the witness is down")))
	idx, err := future()
	if err != nil {
		t.Fatalf("sequencing while the witness is down: %v", err)
	}
	for fails.failedAtLeast(idx.Index+1) < 2 {
		select {
		case <-ctx.Done():
			t.Fatal("Tessera never tried to have the new checkpoint witnessed")
		case <-time.After(10 * time.Millisecond):
		}
	}
	// Tessera publishes nothing while it waits on a witness, so after its
	// second failed attempt the first attempt's outcome is on disk.
	cp, err = reader.ReadCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := witnessed(cp); got != 3 {
		t.Fatalf("published size with the witness down = %d, want 3", got)
	}

	// Bring the witness back at the same address: publication resumes.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("relistening on %s: %v", addr, err)
	}
	srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: mux}}
	srv.Start()
	defer srv.Close()
	_, cp, err = awaiter.Await(ctx, future)
	if err != nil {
		t.Fatalf("Await after the witness is back: %v", err)
	}
	if got := witnessed(cp); got != idx.Index+1 {
		t.Errorf("published size after the witness is back = %d, want %d", got, idx.Index+1)
	}
	if err := shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}
