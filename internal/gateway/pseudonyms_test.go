package gateway

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/endpoint"
)

// remotePseudonyms stands for the supervisor's pseudonyms: it counts the
// asks, and fails while down.
type remotePseudonyms struct {
	key   endpoint.PseudonymKey
	asked atomic.Int32
	down  atomic.Bool
}

func (p *remotePseudonyms) Pseudonym(ctx context.Context, id string) (string, error) {
	p.asked.Add(1)
	if p.down.Load() {
		return "", errors.New("the supervisor is unreachable")
	}
	return p.key.Pseudonym(ctx, id)
}

// TestRemotePseudonyms: with pseudonyms from the supervisor, a request
// that is not authenticated never makes the gateway ask for one (its
// denial names the endpoint as withheld); an authenticated read by
// endpoint reads by the supervisor's pseudonym; and while the supervisor
// gives none, the read fails closed: 503, nothing logged, nothing
// released.
func TestRemotePseudonyms(t *testing.T) {
	ps := &remotePseudonyms{key: endpoint.PseudonymKey("0123456789abcdef0123456789abcdef")}
	e := newEnvWith(t, "", func(c *Config) { c.Pseudonyms = ps })
	id := e.ingest("DE", rec(hash("a"), 0, "/x"))
	path := "/v1/records?endpoint=" + id

	for range 3 {
		if r := e.do("GET", path, "", "CUSTOMER_INITIATED_SUPPORT; case 1"); r.status != 401 {
			t.Fatalf("no credential: %d %s", r.status, r.body)
		}
	}
	if n := ps.asked.Load(); n != 0 {
		t.Fatalf("requests without a credential made %d asks for pseudonyms", n)
	}
	entries, _ := e.glog.appended()
	if len(entries) == 0 || !strings.Contains(string(entries[0]), `"query":"endpoint=withheld`) || strings.Contains(string(entries[0]), id) {
		t.Errorf("the denial's entry: %s", entries)
	}

	r := e.do("GET", path, "analyst:jdoe", "CUSTOMER_INITIATED_SUPPORT; case 2")
	if r.status != 200 || r.answer.Count != 1 {
		t.Fatalf("an authenticated read by endpoint: %d %s", r.status, r.body)
	}
	rec, _ := e.entry(r.receipt)
	if want := "endpoint=" + endpoint.Pseudonym(ps.key, id); !strings.Contains(rec.Resource.Query, want) {
		t.Errorf("the read's query %q does not name %s", rec.Resource.Query, want)
	}

	ps.down.Store(true)
	before := e.glog.count()
	r = e.do("GET", path, "analyst:jdoe", "CUSTOMER_INITIATED_SUPPORT; case 3")
	if r.status != 503 || r.hasRcpt || strings.Contains(string(r.body), "/x") {
		t.Errorf("a read while the supervisor is down: %d %s", r.status, r.body)
	}
	if e.glog.count() != before {
		t.Error("a read without its pseudonym was logged")
	}
}
