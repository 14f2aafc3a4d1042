package monitor

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/access"
)

// TestAccesses: an endpoint that shows its own token gets every access
// entry that names it, each grounded in its log; another endpoint gets
// none of them; a token the platform did not sign gets nothing.
func TestAccesses(t *testing.T) {
	tp := startPlatform(t)
	ctx := context.Background()
	key, err := os.ReadFile(filepath.Join(tp.data, "pseudonym.key"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(ctx, Config{Dir: t.TempDir(), Platforms: []string{tp.URL()}, PseudonymKeys: map[string][]byte{tp.URL(): []byte(strings.TrimSpace(string(key)))}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tp.read(t, "CUSTOMER_INITIATED_SUPPORT; case 1")
	tp.read(t, "THIRD_PARTY_DATA_REQUEST; court order 4")
	passUntil(t, m, "third-party-request", 1)
	var other struct{ Token string }
	tp.call(t, "POST", tp.URL()+"/v1/endpoints", tp.OperatorToken(), `{"country":"DE"}`, "", &other)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	get := func(token string) (int, AccessesAnswer) { return listAccesses(t, srv.URL, "", token) }
	code, ans := get(tp.endpoint)
	if code != 200 || len(ans.Accesses) != 2 {
		t.Fatalf("the endpoint's accesses: %d %+v", code, ans)
	}
	for _, a := range ans.Accesses {
		r, err := access.Parse([]byte(a.Entry))
		if err != nil || len(r.Subjects) != 1 || r.Subjects[0] != ans.Pseudonym {
			t.Errorf("an access that does not name the endpoint: %v %+v", err, r)
		}
		i := a.Index
		checkGrounded(t, tp.Platform, Alert{Rule: "access", Log: a.Log, Index: &i, Entry: a.Entry, Proof: a.Proof})
	}
	if !strings.Contains(ans.Accesses[1].Entry, "court order 4") {
		t.Errorf("the second access: %s", ans.Accesses[1].Entry)
	}
	if code, ans := get(other.Token); code != 200 || len(ans.Accesses) != 0 || ans.Endpoint == "" {
		t.Errorf("another endpoint: %d %+v, want none", code, ans)
	}
	for _, bad := range []string{"", "garbage", tp.endpoint[:len(tp.endpoint)-4] + "AAAA"} {
		if code, _ := get(bad); code != http.StatusUnauthorized {
			t.Errorf("token %q: %d, want 401", bad, code)
		}
	}
	// An endpoint asks at most AccessesPerMinute times a minute; another
	// is not held back by it.
	n := 0
	for code, _ := get(tp.endpoint); code == 200; code, _ = get(tp.endpoint) {
		if n++; n > AccessesPerMinute {
			t.Fatalf("%d asks in a minute answered", n)
		}
	}
	req, _ := http.NewRequest("GET", srv.URL+"/v1/accesses", nil)
	req.Header.Set("Authorization", "Bearer "+tp.endpoint)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("an ask over the limit: %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if n != AccessesPerMinute-1 { // one ask came before the loop
		t.Errorf("%d asks answered before the limit, want %d", n+1, AccessesPerMinute)
	}
	if code, _ := get(other.Token); code != 200 {
		t.Errorf("another endpoint while the first is held back: %d", code)
	}
}

// TestTwoVendors: one monitor supervises two vendors' platforms (here both
// named vitrine.local, so that their logs share origins and differ by key):
// each vendor's alerts name its platform and are grounded in its own logs,
// and an endpoint of one vendor lists the accesses to its data there and
// is refused by the other.
func TestTwoVendors(t *testing.T) {
	a, b := startPlatform(t), startPlatform(t)
	ctx := context.Background()
	keys := map[string][]byte{}
	for _, tp := range []*testPlatform{a, b} {
		k, err := os.ReadFile(filepath.Join(tp.data, "pseudonym.key"))
		if err != nil {
			t.Fatal(err)
		}
		keys[tp.URL()] = []byte(strings.TrimSpace(string(k)))
	}
	m, err := New(ctx, Config{Dir: t.TempDir(), Platforms: []string{a.URL(), b.URL()}, PseudonymKeys: keys})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	a.read(t, "THIRD_PARTY_DATA_REQUEST; order for vendor a")
	b.read(t, "THIRD_PARTY_DATA_REQUEST; order for vendor b")
	b.read(t, "CUSTOMER_INITIATED_SUPPORT; case at vendor b")
	got := passUntil(t, m, "third-party-request", 2)
	for _, al := range got {
		tp := map[string]*testPlatform{a.URL(): a, b.URL(): b}[al.Platform]
		if tp == nil {
			t.Fatalf("an alert of no vendor: %+v", al)
		}
		if want := "vendor " + map[string]string{a.URL(): "a", b.URL(): "b"}[al.Platform]; !strings.Contains(al.Entry, want) {
			t.Errorf("the alert of %s holds %s", al.Platform, al.Entry)
		}
		checkGrounded(t, tp.Platform, al)
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	list := func(platform, token string) (int, AccessesAnswer) { return listAccesses(t, srv.URL, platform, token) }
	if code, ans := list(a.URL(), a.endpoint); code != 200 || len(ans.Accesses) != 1 || !strings.Contains(ans.Accesses[0].Entry, "vendor a") {
		t.Errorf("a's endpoint at a: %d %+v", code, ans)
	}
	if code, ans := list(b.URL(), b.endpoint); code != 200 || len(ans.Accesses) != 2 {
		t.Errorf("b's endpoint at b: %d %+v", code, ans)
	}
	if code, _ := list(b.URL(), a.endpoint); code != http.StatusUnauthorized {
		t.Errorf("a's endpoint at b: %d, want 401", code)
	}
}

// listAccesses asks the monitor at srv for the accesses of the endpoint
// whose token this is, at platform ("": the only one).
func listAccesses(t *testing.T, srv, platform, token string) (int, AccessesAnswer) {
	t.Helper()
	req, _ := http.NewRequest("GET", srv+"/v1/accesses?platform="+url.QueryEscape(platform), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans AccessesAnswer
	json.NewDecoder(resp.Body).Decode(&ans)
	return resp.StatusCode, ans
}
