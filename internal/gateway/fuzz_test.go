package gateway

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/store"
)

// FuzzParseQuery: any query string is parsed or refused without a panic; a
// parsed query is one the stores accept, and the logged form never holds
// an endpoint id.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		"sha256=" + strings.Repeat("a", 64),
		"endpoint=ep_aaaaaaaaaaaaaaaaaaaaaaaaaa&from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z&limit=5&after=9",
		"sha256=x&sha256=y", "limit=0", "after=-1", "%zz", "endpoint=ep_&x=1",
	} {
		f.Add(s)
	}
	key := endpoint.PseudonymKey("0123456789abcdef0123456789abcdef")
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, logged, err := parseQuery(context.Background(), v, key)
		if strings.Contains(logged, "ep_") && v.Get("endpoint") != "" && strings.Contains(logged, v.Get("endpoint")) && strings.HasPrefix(v.Get("endpoint"), "ep_") && err == nil {
			t.Fatalf("logged query %q holds the endpoint id", logged)
		}
		if err != nil {
			return
		}
		if _, err := store.CheckQuery(q.RecordQuery); err != nil || q.Limit < 1 || q.Limit > MaxLimit {
			t.Fatalf("parsed %q into %+v, which stores refuse: %v", raw, q, err)
		}
	})
}
