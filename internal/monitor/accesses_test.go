package monitor

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
	get := func(token string) (int, AccessesAnswer) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+"/v1/accesses", nil)
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
}
