package region

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/custody"
	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/store"
	_ "github.com/vitrine-dev/vitrine/internal/store/sqlite"
	"github.com/vitrine-dev/vitrine/residency"
	"github.com/vitrine-dev/vitrine/telemetry"
)

// testRegion is zurich with a SQLite store, served over HTTP, and an
// issuer of its endpoints' tokens.
type testRegion struct {
	*Region
	srv    *httptest.Server
	issuer *endpoint.Issuer
	// reading gets the X-Test-Request header of each request whose body
	// the region starts to read.
	reading chan string
	// handlers counts the requests being handled.
	handlers sync.WaitGroup
}

// newTestRegion starts zurich with cfg, whose Name, Store, Wrapper, Tokens
// and Policy it fills in, and Pseudonyms if it has none.
func newTestRegion(t *testing.T, cfg Config) *testRegion {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(t.Context(), "sqlite:"+filepath.Join(dir, "telemetry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	issuer, err := endpoint.LoadOrCreateIssuer(filepath.Join(dir, "endpoint.key"), filepath.Join(dir, "endpoint.vkey"), "test/endpoints")
	if err != nil {
		t.Fatal(err)
	}
	wrapper, err := custody.WrapOnlyKey("zurich")
	if err != nil {
		t.Fatal(err)
	}
	pol := residency.Default()
	cfg.Name, cfg.Store, cfg.Wrapper, cfg.Tokens = "zurich", st, wrapper, issuer.Verifier()
	if cfg.Pseudonyms == nil {
		cfg.Pseudonyms = endpoint.PseudonymKey("test pseudonym key")
	}
	cfg.Policy = func() *residency.Policy { return pol }
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	tr := &testRegion{Region: New(cfg), issuer: issuer, reading: make(chan string, 100)}
	h := tr.Handler()
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		tr.handlers.Add(1)
		defer tr.handlers.Done()
		if name := req.Header.Get("X-Test-Request"); name != "" {
			// On a copy of the request, as the platform's StripPrefix
			// does: the server looks at its own request's body to
			// decide how to close a connection.
			req = req.WithContext(req.Context())
			req.Body = &firstRead{ReadCloser: req.Body, name: name, c: tr.reading}
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(tr.srv.Close)
	return tr
}

// firstRead sends name on c at its first Read.
type firstRead struct {
	io.ReadCloser
	name string
	c    chan<- string
	once sync.Once
}

func (f *firstRead) Read(p []byte) (int, error) {
	f.once.Do(func() { f.c <- f.name })
	return f.ReadCloser.Read(p)
}

// token registers an endpoint in DE (served by zurich) and returns its token.
func (tr *testRegion) token(t *testing.T) string {
	t.Helper()
	_, tok, err := tr.issuer.Register("DE", "zurich")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// answer is what a client got for a request.
type answer struct {
	name   string
	status int
	retry  string
	closed bool // the server closes the connection
	body   string
	err    error
}

// slowBody is a request body of declared length that sends its first
// 64 KiB, then 4 KiB every 20 ms up to 1 MiB, and then nothing more until
// stop is called, which ends it with an error.
type slowBody struct {
	pr   *io.PipeReader
	pw   *io.PipeWriter
	done chan struct{}
	once sync.Once
}

func newSlowBody() *slowBody {
	pr, pw := io.Pipe()
	s := &slowBody{pr: pr, pw: pw, done: make(chan struct{})}
	go func() {
		chunk := bytes.Repeat([]byte(" "), 64<<10)
		if _, err := pw.Write(chunk); err != nil {
			return
		}
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for sent := len(chunk); sent < 1<<20; sent += 4 << 10 {
			select {
			case <-s.done:
				return
			case <-t.C:
			}
			if _, err := pw.Write(chunk[:4<<10]); err != nil {
				return
			}
		}
	}()
	return s
}

func (s *slowBody) stop() {
	s.once.Do(func() {
		close(s.done)
		s.pw.CloseWithError(errors.New("test: the sender gave up"))
	})
}

// post sends a request to the region's path in the background and sends
// its answer on out.
func (tr *testRegion) post(hc *http.Client, path, name, token string, body io.Reader, length int64, out chan<- answer) {
	go func() {
		req, err := http.NewRequest(http.MethodPost, tr.srv.URL+path, body)
		if err != nil {
			out <- answer{name: name, err: err}
			return
		}
		req.ContentLength = length
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("X-Test-Request", name)
		resp, err := hc.Do(req)
		if err != nil {
			out <- answer{name: name, err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out <- answer{name: name, status: resp.StatusCode, retry: resp.Header.Get("Retry-After"), closed: resp.Close, body: string(b)}
	}()
}

// smallBatch is a valid batch of two records.
func smallBatch(id string) []byte {
	rec := func(sha, path string) string {
		return `{"time":"` + time.Now().UTC().Add(-time.Minute).Format(time.RFC3339) + `","kind":"file","sha256":"` + sha + `","size":1234,"detection":"","url":"","path":"` + path + `","product":"vitrine-agent/1.0.0","ruledb":42}`
	}
	return []byte(`{"batch_id":"` + id + `","records":[` + rec(strings.Repeat("ab", 32), "/bin/a") + `,` + rec(strings.Repeat("cd", 32), "/bin/b") + `]}`)
}

// heapInUse returns the heap's bytes in use after a collection.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// waitFor receives one value from c, failing the test if none comes within
// a minute: long enough for a loaded machine, and only ever reached when
// the server does not answer at all.
func waitFor[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(time.Minute):
		t.Fatalf("%s: nothing after a minute", what)
		panic("unreachable")
	}
}

// collect receives n answers, or those that come within a minute.
func collect(c <-chan answer, n int) []answer {
	var out []answer
	timeout := time.After(time.Minute)
	for len(out) < n {
		select {
		case a := <-c:
			out = append(out, a)
		case <-timeout:
			return out
		}
	}
	return out
}

// TestIngestSlowBodies is the regression test of a memory exhaustion: the
// region held every body whole, allocated at its declared length as soon
// as the request came in, so that endpoints sending 16 MiB bodies slowly
// made it hold 16 MiB per connection. Now, with the default budget (64 MiB
// in all, a full batch per endpoint, bodies over 1 MiB in three quarters of
// it), large bodies beyond the budget are refused at once with 503, a
// second one from the same endpoint with 429, both with Retry-After and
// without reading the body; the heap grows by no more than the budget
// while they hang; and other endpoints' batches are still stored.
func TestIngestSlowBodies(t *testing.T) {
	tr := newTestRegion(t, Config{})
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	const big = telemetry.MaxBatchBytes
	var bodies []*slowBody
	defer func() {
		for _, b := range bodies {
			b.stop()
		}
	}()
	slow := func() *slowBody {
		b := newSlowBody()
		bodies = append(bodies, b)
		return b
	}

	base := heapInUse()
	answers := make(chan answer, 100)

	// The first big body is read: it is within the budget.
	tokA := tr.token(t)
	tr.post(hc, "/v1/telemetry", "A1", tokA, slow().pr, big, answers)
	if got := waitFor(t, tr.reading, "the first big body"); got != "A1" {
		t.Fatalf("the region reads %s, want A1", got)
	}

	// A second one from the same endpoint is refused with 429, and of
	// seven more endpoints' big bodies, two fit beside A1 in the three
	// quarters of 64 MiB open to large bodies: five are refused with 503.
	// Refused bodies are not read.
	tr.post(hc, "/v1/telemetry", "A2", tokA, slow().pr, big, answers)
	for i := range 7 {
		tr.post(hc, "/v1/telemetry", fmt.Sprintf("B%d", i), tr.token(t), slow().pr, big, answers)
	}
	refused := collect(answers, 6)
	if len(refused) < 6 {
		t.Errorf("while the big bodies were being sent, %d of 6 requests beyond the budget were answered in a minute; want all 6 answered without reading their bodies", len(refused))
	}
	var n429, n503 int
	for _, a := range refused {
		switch {
		case a.retry == "" || !a.closed || !strings.Contains(a.body, "nothing was stored"):
			t.Errorf("big body beyond the budget: %+v; want Retry-After, a message that nothing was stored, and the connection closed", a)
		case a.name == "A2" && a.status == http.StatusTooManyRequests:
			n429++
		case a.name != "A2" && a.status == http.StatusServiceUnavailable:
			n503++
		default:
			t.Errorf("big body beyond the budget: %+v; want 429 for A2, 503 for the others", a)
		}
	}
	if n429 != 1 || n503 != 5 {
		t.Errorf("refused: %d with 429, %d with 503; want 1 (A2) and 5", n429, n503)
	}
	for range 2 {
		waitFor(t, tr.reading, "the big bodies within the budget")
	}
	// Three 16 MiB bodies are held; allow 16 MiB for everything else.
	if grown := heapInUse() - base; grown > 64<<20 {
		t.Errorf("with 9 big bodies being sent, the heap grew by %d MiB; want at most 64 MiB", grown>>20)
	}

	// Another endpoint's ordinary batch is stored meanwhile.
	tr.post(hc, "/v1/telemetry", "C", tr.token(t), bytes.NewReader(smallBatch("c-1")), int64(len(smallBatch("c-1"))), answers)
	if a := waitFor(t, answers, "a small batch while the big bodies hang"); a.name != "C" || a.status != http.StatusOK {
		t.Errorf("small batch of another endpoint: %+v; want C answered 200", a)
	}

	// The senders give up; every request is answered and nothing stays
	// held.
	for _, b := range bodies {
		b.stop()
	}
	for range len(bodies) - len(refused) {
		a := waitFor(t, answers, "the big bodies whose senders gave up")
		if a.err == nil && a.status != http.StatusBadRequest {
			t.Errorf("big body whose sender gave up: %+v; want a transport error or 400", a)
		}
	}
	hc.CloseIdleConnections()
	tr.handlers.Wait()
	if grown := heapInUse() - base; grown > 16<<20 {
		t.Errorf("after every request was answered, the heap is %d MiB larger than before; want at most 16 MiB", grown>>20)
	}
}
