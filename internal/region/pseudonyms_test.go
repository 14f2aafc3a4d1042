package region

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"
)

// noPseudonyms is a supervisor that gives no pseudonym.
type noPseudonyms struct{}

func (noPseudonyms) Pseudonym(context.Context, string) (string, error) {
	return "", errors.New("the supervisor is unreachable")
}

// TestIngestWithoutPseudonym: while the supervisor gives no pseudonym, a
// batch is refused with 503 and nothing is stored.
func TestIngestWithoutPseudonym(t *testing.T) {
	tr := newTestRegion(t, Config{Pseudonyms: noPseudonyms{}})
	req, err := http.NewRequest(http.MethodPost, tr.srv.URL+"/v1/telemetry", bytes.NewReader(smallBatch("b1")))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tr.token(t))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("ingest without a pseudonym: %d (Retry-After %q), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if n, err := tr.cfg.Store.CountRecords(context.Background()); err != nil || n != 0 {
		t.Errorf("the store holds %d records (%v), want none", n, err)
	}
}
