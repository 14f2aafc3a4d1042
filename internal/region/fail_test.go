package region

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/custody"
)

// TestStoreFailureIs503 closes the region's store under it: ingest,
// verdicts and the aggregate exchange answer 503 with a Retry-After, through
// httpapi.Fail, and say what failed without the store's own words.
func TestStoreFailureIs503(t *testing.T) {
	tr := newTestRegion(t, Config{PeerToken: "peer-token"})
	tok := tr.token(t)
	if err := tr.cfg.Store.Close(); err != nil {
		t.Fatal(err)
	}
	do := func(method, path, token string, body []byte, header ...string) (int, string, string) {
		t.Helper()
		req, err := http.NewRequest(method, tr.srv.URL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
	}
	for _, c := range []struct {
		name, method, path, token string
		body                      []byte
		header                    []string
		want                      string
	}{
		{"ingest", http.MethodPost, "/v1/telemetry", tok, smallBatch("b1"), nil, "could not store the batch"},
		{"verdict", http.MethodGet, "/v1/verdicts/" + strings.Repeat("ab", 32), tok, nil, nil, "verdicts are unavailable"},
		{"verdicts", http.MethodPost, "/v1/verdicts", tok, []byte(`{"sha256":["` + strings.Repeat("ab", 32) + `"]}`), nil, "verdicts are unavailable"},
		{"aggregates", http.MethodGet, "/v1/aggregates?cursor=0", "peer-token", nil, []string{PeerHeader, "moscow"}, "aggregates are unavailable"},
	} {
		status, retry, body := do(c.method, c.path, c.token, c.body, c.header...)
		if status != http.StatusServiceUnavailable || retry == "" || !strings.Contains(body, c.want) || strings.Contains(body, "closed") {
			t.Errorf("%s with the store closed: %d, Retry-After %q, %s; want 503 with a Retry-After saying %q and not the store's error", c.name, status, retry, body, c.want)
		}
	}
}

// custodyDown wraps as the platform's remoteKey does when the custody
// process cannot be reached: with the custody client's error.
type custodyDown struct{ c *custody.Client }

func (d custodyDown) Wrap([]byte) ([]byte, error) {
	_, err := d.c.PublicKey(context.Background(), "zurich")
	return nil, err
}

// TestCustodyDownIs503: ingest with custody out of reach fails closed
// with a 503 and a Retry-After, not a 500 (found by a review: the custody
// client's transport errors had no kind).
func TestCustodyDownIs503(t *testing.T) {
	tr := newTestRegion(t, Config{})
	tok := tr.token(t)
	tr.cfg.Wrapper = custodyDown{custody.NewClient("http://127.0.0.1:1", "x", nil)}
	req, err := http.NewRequest(http.MethodPost, tr.srv.URL+"/v1/telemetry", bytes.NewReader(smallBatch("b1")))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || strings.Contains(string(b), "127.0.0.1") {
		t.Errorf("custody out of reach: ingest answered %d, Retry-After %q, %s; want 503 with a Retry-After, not naming custody's address", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
}
