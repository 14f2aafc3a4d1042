package gateway

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/principal"
)

// TestExpiredPrincipalDenied: a principal's token works until its expiry;
// from then on the gateway answers 401 "credential expired" and logs the
// attempt as denied for that reason.
func TestExpiredPrincipalDenied(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	reg, err := principal.Open(filepath.Join(t.TempDir(), "principals.json"), func(r string) bool { return r == testRegion }, principal.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := reg.Create(context.Background(), principal.Principal{
		ID: "analyst:brief", Role: principal.Analyst, Location: "CH", Regions: []string{testRegion}, Expires: clock().Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, "", func(cfg *Config) { cfg.Principals = reg })
	if r := e.do("GET", "/v1/records?sha256="+hash("a"), tok, justified); r.status != http.StatusOK {
		t.Fatalf("before expiry: %d %s", r.status, r.body)
	}
	now.Add(int64(time.Hour))
	r := e.do("GET", "/v1/records?sha256="+hash("a"), tok, justified)
	if r.status != http.StatusUnauthorized || !bytes.Contains(r.body, []byte("credential expired")) || !r.hasRcpt {
		t.Fatalf("at expiry: %d %s (receipt %v), want 401 credential expired with a receipt", r.status, r.body, r.hasRcpt)
	}
	if rec, raw := e.entry(r.receipt); rec.Outcome != "denied" || rec.Reason != "read: credential expired" || rec.Principal.ID != "" {
		t.Errorf("denied record %s", raw)
	}
}
