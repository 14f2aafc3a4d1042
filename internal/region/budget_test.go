package region

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/telemetry"
)

// TestIngestBodyBudget: with a budget of 32 MiB, concurrent big bodies
// (slow, whole, sent in chunks, several from one endpoint), small batches
// and verdict requests never make the region hold more than the budget;
// small batches are stored throughout; and once all are answered the
// region holds nothing.
func TestIngestBodyBudget(t *testing.T) {
	const total = 32 << 20
	budget := httpapi.NewBodyBudget(total, telemetry.MaxBatchBytes)
	tr := newTestRegion(t, Config{Bodies: budget})
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()

	answers := make(chan answer, 100)
	slow := map[string]*slowBody{}
	defer func() {
		for _, b := range slow {
			b.stop()
		}
	}()
	n := 0
	send := func(path, name, tok string, body io.Reader, length int64) {
		n++
		tr.post(hc, path, name, tok, body, length, answers)
	}
	tokA := tr.token(t)
	for i := range 6 {
		name, tok := fmt.Sprintf("slow%d", i), tokA
		if i%2 == 1 {
			tok = tr.token(t)
		}
		slow[name] = newSlowBody()
		send("/v1/telemetry", name, tok, slow[name].pr, telemetry.MaxBatchBytes)
	}
	for i := range 4 {
		// Big bodies sent at once: junk, refused by the parser.
		send("/v1/telemetry", fmt.Sprintf("whole%d", i), tr.token(t), bytes.NewReader(bytes.Repeat([]byte("x"), 8<<20)), 8<<20)
		// Without a declared length.
		send("/v1/telemetry", fmt.Sprintf("chunked%d", i), tr.token(t), io.MultiReader(bytes.NewReader(bytes.Repeat([]byte(" "), 3<<20)), strings.NewReader("{}")), -1)
		q := []byte(`{"sha256":["` + strings.Repeat("ab", 32) + `"]}`)
		send("/v1/verdicts", fmt.Sprintf("verdicts%d", i), tr.token(t), bytes.NewReader(q), int64(len(q)))
	}
	for i := range 20 {
		b := smallBatch(fmt.Sprintf("s-%d", i))
		send("/v1/telemetry", fmt.Sprintf("small%d", i), tr.token(t), bytes.NewReader(b), int64(len(b)))
	}
	// Every request but the slow ones the region reads is answered while
	// those hang.
	got := 0
	for others := n - len(slow); others > 0; got++ {
		a := waitFor(t, answers, "the requests other than the slow ones")
		if slow[a.name] == nil {
			others--
		}
		switch {
		case a.err != nil:
			t.Errorf("%s: %v", a.name, a.err)
		case (strings.HasPrefix(a.name, "small") || strings.HasPrefix(a.name, "verdicts")) && a.status != http.StatusOK:
			t.Errorf("%s: %d %s; want 200: small requests have a quarter of the budget that big bodies cannot take", a.name, a.status, a.body)
		case a.status == http.StatusServiceUnavailable || a.status == http.StatusTooManyRequests:
			if a.retry == "" || !a.closed {
				t.Errorf("%s: %d without Retry-After or without closing the connection", a.name, a.status)
			}
		}
	}
	if in := budget.InUse(); in == 0 {
		t.Errorf("while slow bodies are being read, the budget holds nothing")
	}
	for _, b := range slow {
		b.stop()
	}
	for ; got < n; got++ {
		waitFor(t, answers, "the slow bodies whose senders gave up")
	}
	tr.handlers.Wait()
	if peak := budget.Peak(); peak > total || peak < telemetry.MaxBatchBytes {
		t.Errorf("the region held at most %d bytes of bodies at once; want at least one full batch and at most the budget, %d", peak, total)
	}
	if in := budget.InUse(); in != 0 {
		t.Errorf("after every request was answered, %d bytes are still reserved; want 0", in)
	}
}
