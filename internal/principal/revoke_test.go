package principal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/access"
)

// memLog is the regions' access logs in memory, in one sequence, with
// fault injection: the log of a region in fail refuses every entry.
type memLog struct {
	mu      sync.Mutex
	regions []string // the region of each entry
	entries [][]byte
	fail    map[string]bool
}

func (l *memLog) Append(ctx context.Context, region string, entry []byte) error {
	_, err := l.appendTo(region, entry)
	return err
}

func (l *memLog) appendTo(region string, entry []byte) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail[region] {
		return 0, fmt.Errorf("injected: the access log of %s refuses entries", region)
	}
	l.regions = append(l.regions, region)
	l.entries = append(l.entries, slices.Clone(entry))
	return uint64(len(l.entries) - 1), nil
}

// gateway returns the append of a region's gateway, guarded by r.
func (l *memLog) gateway(r *Registry, region string) func([]byte) (uint64, error) {
	return func(entry []byte) (uint64, error) {
		return r.Admit(ctx, entry, func(_ context.Context, e []byte) (uint64, error) { return l.appendTo(region, e) })
	}
}

func (l *memLog) failing(regions ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fail = map[string]bool{}
	for _, r := range regions {
		l.fail[r] = true
	}
}

// grants returns the grant entries so far, parsed.
func (l *memLog) grants(t *testing.T) []*access.Grant {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var gs []*access.Grant
	for i, e := range l.entries {
		if access.EntryKind(e) != access.KindGrant {
			continue
		}
		g, err := access.ParseGrant(e)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if g.Region != l.regions[i] {
			t.Errorf("entry %d of the log of %s names region %s", i, l.regions[i], g.Region)
		}
		gs = append(gs, g)
	}
	return gs
}

func (l *memLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

// clock is a settable clock.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := new(clock)
	c.ns.Store(t.UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// openLogged opens a registry in a fresh directory that logs to a new
// memLog and reads the time from a new clock.
func openLogged(t *testing.T) (*Registry, string, *memLog, *clock) {
	t.Helper()
	l := new(memLog)
	c := newClock(time.Date(2026, 11, 22, 10, 0, 0, 123_456_789, time.UTC))
	path := filepath.Join(t.TempDir(), "principals.json")
	r, err := Open(path, knownRegion, WithLog(l), WithClock(c.now))
	if err != nil {
		t.Fatal(err)
	}
	return r, path, l, c
}

func both() Principal {
	p := jdoe()
	p.Regions = []string{"zurich", "moscow"}
	return p
}

func tokenDigest(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return "sha256:" + hex.EncodeToString(h[:])
}

// accessRecord returns the granted read of p in region at t, encoded.
func accessRecord(t *testing.T, p Principal, region string, at time.Time) []byte {
	t.Helper()
	r := &access.Record{
		Time: at, Region: region, Action: "read",
		Principal:     access.Principal{ID: p.ID, Role: string(p.Role), Location: p.Location},
		Resource:      access.Resource{Dataset: "telemetry", Digest: access.Digest(nil)},
		Justification: access.Justification{Code: "CUSTOMER_INITIATED_SUPPORT", Detail: "case 1"},
		Subjects:      []string{}, Request: "req-1", Outcome: "granted",
	}
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRevokeTakesEffectAtOnce: a revoked principal's token stops working
// in the registry that revoked it, in its file and after reopening it; a
// new principal may take the id, with a new token.
func TestRevokeTakesEffectAtOnce(t *testing.T) {
	r, path, _, _ := openLogged(t)
	tok := mustCreate(t, r, both())
	other := mustCreate(t, r, Principal{ID: "supervisor:sv", Role: Supervisor, Location: "DE", Regions: []string{"zurich"}})
	if _, err := r.Authenticate(request("Bearer " + tok)); err != nil {
		t.Fatal(err)
	}
	if err := r.Revoke(ctx, "analyst:jdoe"); err != nil {
		t.Fatalf("Revoke = %v", err)
	}
	if p, err := r.Authenticate(request("Bearer " + tok)); !errors.Is(err, ErrBadCredential) || errors.Is(err, ErrExpired) {
		t.Errorf("Authenticate(revoked token) = %+v, %v; want ErrBadCredential", p, err)
	}
	if _, ok := r.Get("analyst:jdoe"); ok {
		t.Error("Get finds a revoked principal")
	}
	if file, _ := os.ReadFile(path); bytes.Contains(file, []byte("analyst:jdoe")) {
		t.Errorf("the registry file still holds the revoked principal:\n%s", file)
	}
	r2, err := Open(path, knownRegion)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Authenticate(request("Bearer " + tok)); err == nil {
		t.Error("after reopening, the revoked token authenticates")
	}
	if _, err := r2.Authenticate(request("Bearer " + other)); err != nil {
		t.Errorf("after reopening, another principal's token: %v", err)
	}
	if err := r.Revoke(ctx, "analyst:jdoe"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revoke(revoked) = %v, want ErrNotFound", err)
	}
	again := mustCreate(t, r, jdoe())
	if _, err := r.Authenticate(request("Bearer " + tok)); err == nil {
		t.Error("the old token authenticates the new principal of the same id")
	}
	if p, err := r.Authenticate(request("Bearer " + again)); err != nil || p.ID != "analyst:jdoe" {
		t.Errorf("the new principal's token: %+v, %v", p, err)
	}
}

// TestGrantsAreLogged: a creation is a grant entry in the log of each of
// the principal's regions, and a revocation a revoke entry, naming the
// token by its hash and never in clear.
func TestGrantsAreLogged(t *testing.T) {
	r, _, l, c := openLogged(t)
	p := both()
	p.Expires = c.now().Add(720 * time.Hour)
	tok := mustCreate(t, r, p)
	created, _ := r.Get(p.ID)
	c.advance(time.Minute)
	if err := r.Revoke(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	gs := l.grants(t)
	if len(gs) != 4 || l.len() != 4 {
		t.Fatalf("%d entries, %d grants; want 2 grants and 2 revocations", l.len(), len(gs))
	}
	for i, g := range gs {
		want := &access.Grant{
			Time: created.Created, Region: []string{"moscow", "zurich"}[i%2], Action: access.GrantAction,
			Principal: access.Principal{ID: "analyst:jdoe", Role: "analyst", Location: "CH"},
			Regions:   []string{"moscow", "zurich"}, Token: tokenDigest(tok),
			Expires: p.Expires.Truncate(time.Millisecond),
		}
		if i >= 2 {
			want.Action, want.Time = access.RevokeAction, c.now().Truncate(time.Millisecond)
		}
		if fmt.Sprint(g) != fmt.Sprint(want) {
			t.Errorf("entry %d = %+v, want %+v", i, g, want)
		}
	}
	for i, e := range l.entries {
		if bytes.Contains(e, []byte(strings.TrimPrefix(tok, "vp1."))) {
			t.Errorf("entry %d holds the token: %s", i, e)
		}
	}
}

// TestCreateLogUnavailable: a grant that a log does not take stores
// nothing, and the token never works.
func TestCreateLogUnavailable(t *testing.T) {
	for _, failing := range [][]string{{"moscow", "zurich"}, {"zurich"}} {
		t.Run(strings.Join(failing, ","), func(t *testing.T) {
			r, path, l, _ := openLogged(t)
			before, _ := os.ReadFile(path)
			l.failing(failing...)
			tok, err := r.Create(ctx, both())
			if !errors.Is(err, ErrLogUnavailable) || tok != "" {
				t.Fatalf("Create = %q, %v; want ErrLogUnavailable", tok, err)
			}
			if _, ok := r.Get("analyst:jdoe"); ok {
				t.Error("a principal whose grant was not logged is in the registry")
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
				t.Errorf("the registry file changed:\n%s", after)
			}
		})
	}
}

// TestRevokeLogUnavailable: a revocation that no log takes changes
// nothing; one that some logs took holds all the same.
func TestRevokeLogUnavailable(t *testing.T) {
	r, path, l, _ := openLogged(t)
	tok := mustCreate(t, r, both())
	before, _ := os.ReadFile(path)
	n := l.len()
	l.failing("moscow", "zurich")
	if err := r.Revoke(ctx, "analyst:jdoe"); !errors.Is(err, ErrLogUnavailable) || !strings.Contains(err.Error(), "nothing changed") {
		t.Fatalf("Revoke with the logs down = %v; want ErrLogUnavailable and nothing changed", err)
	}
	if _, err := r.Authenticate(request("Bearer " + tok)); err != nil {
		t.Errorf("after a revocation that was not logged, Authenticate = %v", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
		t.Errorf("the registry file changed:\n%s", after)
	}
	if l.len() != n {
		t.Errorf("the logs grew from %d to %d entries", n, l.len())
	}

	// moscow takes the revocation, zurich does not: it holds.
	l.failing("zurich")
	err := r.Revoke(ctx, "analyst:jdoe")
	if !errors.Is(err, ErrLogUnavailable) || !strings.Contains(err.Error(), "is revoked") {
		t.Fatalf("Revoke with zurich's log down = %v; want ErrLogUnavailable saying it is revoked", err)
	}
	if _, err := r.Authenticate(request("Bearer " + tok)); err == nil {
		t.Error("a revocation in moscow's log did not take effect")
	}
	r2, err := Open(path, knownRegion)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r2.Get("analyst:jdoe"); ok {
		t.Error("the revocation is not durable")
	}
}

// TestRevokeStoreFailure: a revocation that cannot be stored is not
// logged and changes nothing.
func TestRevokeStoreFailure(t *testing.T) {
	l := new(memLog)
	path := filepath.Join(t.TempDir(), "sub", "principals.json")
	r, err := Open(path, knownRegion, WithLog(l))
	if err != nil {
		t.Fatal(err)
	}
	tok := mustCreate(t, r, jdoe())
	n := l.len()
	breakDir(t, filepath.Dir(path))
	if err := r.Revoke(ctx, "analyst:jdoe"); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("Revoke with an unwritable file = %v; want a storage error", err)
	}
	if _, err := r.Authenticate(request("Bearer " + tok)); err != nil {
		t.Errorf("after a failed revocation, Authenticate = %v", err)
	}
	if l.len() != n {
		t.Errorf("a revocation that was not stored was logged")
	}
}

// TestExpiry: a principal's token works until its expiry and is refused
// with ErrExpired from then on, also after reopening.
func TestExpiry(t *testing.T) {
	r, path, _, c := openLogged(t)
	p := jdoe()
	p.Expires = c.now().Add(time.Hour)
	tok := mustCreate(t, r, p)
	if _, err := r.Authenticate(request("Bearer " + tok)); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	c.advance(time.Hour)
	_, err := r.Authenticate(request("Bearer " + tok))
	if !errors.Is(err, ErrExpired) || !errors.Is(err, ErrBadCredential) || errors.Is(err, ErrNoCredential) {
		t.Errorf("at expiry, Authenticate = %v; want ErrExpired and ErrBadCredential", err)
	}
	r2, err := Open(path, knownRegion, WithClock(c.now))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Authenticate(request("Bearer " + tok)); !errors.Is(err, ErrExpired) {
		t.Errorf("after reopening, Authenticate = %v; want ErrExpired", err)
	}
	past := Principal{ID: "analyst:late", Role: Analyst, Location: "CH", Regions: []string{"zurich"}, Expires: c.now()}
	if _, err := r.Create(ctx, past); !errors.Is(err, ErrInvalid) {
		t.Errorf("Create with an expiry that is not in the future = %v, want ErrInvalid", err)
	}
}

// TestAdmit: the gateway's appends of granted access records pass only
// for principals that hold a valid credential at that moment.
func TestAdmit(t *testing.T) {
	r, _, l, c := openLogged(t)
	p := jdoe()
	p.Expires = c.now().Add(time.Hour)
	mustCreate(t, r, p)
	created, _ := r.Get(p.ID)
	zurich := l.gateway(r, "zurich")
	at := c.now().Add(time.Second)
	if _, err := zurich(accessRecord(t, p, "zurich", at)); err != nil {
		t.Fatalf("a valid principal's access: %v", err)
	}
	other := p
	other.Location = "DE"
	for name, entry := range map[string][]byte{
		"before the grant": accessRecord(t, p, "zurich", created.Created.Add(-time.Millisecond)),
		"at expiry":        accessRecord(t, p, "zurich", p.Expires),
		"other location":   accessRecord(t, other, "zurich", at),
		"unknown":          accessRecord(t, Principal{ID: "analyst:eve", Role: Analyst, Location: "CH"}, "zurich", at),
	} {
		if _, err := zurich(entry); !errors.Is(err, ErrBadCredential) {
			t.Errorf("%s: Admit = %v, want ErrBadCredential", name, err)
		}
	}
	n := l.len()
	c.advance(time.Hour)
	if _, err := zurich(accessRecord(t, p, "zurich", at)); !errors.Is(err, ErrExpired) {
		t.Errorf("after expiry: %v, want ErrExpired", err)
	}
	if l.len() != n {
		t.Errorf("refused records reached the log")
	}
	// Entries that are not granted records pass.
	den := &access.Record{Time: c.now(), Region: "zurich", Action: "denied", Resource: access.Resource{Dataset: "telemetry", Digest: access.Digest(nil)},
		Subjects: []string{}, Request: "req-2", Outcome: "denied", Reason: "read: bad credential"}
	b, err := den.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range [][]byte{b, []byte(`{"v":1,"kind":"commitment"}`)} {
		if _, err := zurich(e); err != nil {
			t.Errorf("Admit(%s) = %v", e, err)
		}
	}
}

// TestAdmitOrdersRevocation: however a revocation races the principal's
// accesses, the log holds none of its granted access records after the
// revocation, and its accesses after it are refused.
func TestAdmitOrdersRevocation(t *testing.T) {
	r, _, l, c := openLogged(t)
	p := jdoe()
	mustCreate(t, r, p)
	zurich := l.gateway(r, "zurich")
	entry := accessRecord(t, p, "zurich", c.now())
	var wg sync.WaitGroup
	var refused atomic.Int64
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := zurich(entry); err != nil {
					refused.Add(1)
				}
			}
		})
	}
	for l.len() < 50 {
		time.Sleep(time.Millisecond)
	}
	if err := r.Revoke(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	for refused.Load() < 20 {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	revoked := false
	for i, e := range l.entries {
		switch access.EntryKind(e) {
		case access.KindGrant:
			g, _ := access.ParseGrant(e)
			revoked = g.Action == access.RevokeAction
		case access.KindAccess:
			if revoked {
				t.Fatalf("entry %d, a granted access, follows the revocation", i)
			}
		}
	}
	if !revoked {
		t.Fatal("the log holds no revocation")
	}
}

// TestHandlerRevokes: DELETE /v1/principals/<id> with the operator's
// token revokes at once; without it, or for an unknown id, nothing
// changes; with the logs down it answers 503 and nothing changes.
func TestHandlerRevokes(t *testing.T) {
	r, _, l, _ := openLogged(t)
	h := r.Handler(isOperator, nil)
	tok := mustCreate(t, r, jdoe())
	for _, tc := range []struct {
		name, path, auth string
		status           int
		want             string
	}{
		{"no operator token", "/v1/principals/analyst:jdoe", "Bearer " + tok, 401, "operator's bearer token"},
		{"unknown", "/v1/principals/analyst:eve", "Bearer " + operatorToken, 404, `no principal "analyst:eve"`},
		{"no id", "/v1/principals/", "Bearer " + operatorToken, 404, "no such route"},
	} {
		code, ans, _ := do(t, h, "DELETE", tc.path, tc.auth, nil)
		if code != tc.status || !strings.Contains(ans["error"], tc.want) {
			t.Errorf("%s: %d %v, want %d and %q", tc.name, code, ans, tc.status, tc.want)
		}
	}
	l.failing("zurich")
	code, ans, hdr := do(t, h, "DELETE", "/v1/principals/analyst:jdoe", "Bearer "+operatorToken, nil)
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || !strings.Contains(ans["error"], "nothing changed") {
		t.Errorf("with the log down: %d %v, want 503 saying nothing changed", code, ans)
	}
	if _, err := r.Authenticate(request("Bearer " + tok)); err != nil {
		t.Fatalf("refused revocations revoked: %v", err)
	}
	l.failing()
	code, ans, _ = do(t, h, "DELETE", "/v1/principals/analyst:jdoe", "Bearer "+operatorToken, nil)
	if code != http.StatusOK || ans["revoked"] != "analyst:jdoe" {
		t.Fatalf("revoke: %d %v", code, ans)
	}
	if _, err := r.Authenticate(request("Bearer " + tok)); err == nil {
		t.Error("after DELETE, the token still authenticates")
	}
}

// TestHandlerExpiry: a creation request's expires is a time or a duration
// from now, and without one the principal expires after DefaultLifetime.
func TestHandlerExpiry(t *testing.T) {
	r, _, _, c := openLogged(t)
	h := r.Handler(isOperator, nil)
	for _, tc := range []struct {
		name, expires string
		want          time.Time
	}{
		{"analyst:default", "", c.now().Add(DefaultLifetime)},
		{"analyst:duration", `,"expires":"720h"`, c.now().Add(720 * time.Hour)},
		{"analyst:time", `,"expires":"2027-01-31T12:00:00+01:00"`, time.Date(2027, 1, 31, 11, 0, 0, 0, time.UTC)},
	} {
		body := `{"id":"` + tc.name + `","role":"analyst","location":"CH","regions":["zurich"]` + tc.expires + `}`
		code, ans, _ := do(t, h, "POST", "/v1/principals", "Bearer "+operatorToken, strings.NewReader(body))
		if code != http.StatusCreated {
			t.Fatalf("%s: %d %v", tc.name, code, ans)
		}
		p, _ := r.Get(tc.name)
		if want := tc.want.Truncate(time.Millisecond); !p.Expires.Equal(want) {
			t.Errorf("%s: expires %v, want %v", tc.name, p.Expires, want)
		}
	}
}
