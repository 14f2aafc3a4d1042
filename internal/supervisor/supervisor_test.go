package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/pseudonyms"
)

const (
	id1 = "ep_aaaaaaaaaaaaaaaaaaaaaaaaaa"
	id2 = "ep_baaaaaaaaaaaaaaaaaaaaaaaaa"
)

// openTest opens a supervisor of two members behind a test server.
func openTest(t *testing.T) (s *Supervisor, srv *httptest.Server, tokens []string, dir string) {
	t.Helper()
	a, ta := testMember(t, "acme.example", "http://127.0.0.1:1")
	b, tb := testMember(t, "bolt.example", "http://127.0.0.1:2")
	dir = t.TempDir()
	h := new(httpapi.Lazy)
	srv = httptest.NewServer(h)
	t.Cleanup(srv.Close)
	s, err := Open(context.Background(), Config{Dir: dir, Name: "supervisor.test", URL: srv.URL, Members: []Member{a, b}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	h.Set(s.Handler())
	return s, srv, []string{ta, tb}, dir
}

func do(t *testing.T, method, url, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestSupervisorRoutes: the description is public; a member's pseudonyms
// and custody take its own token (custody also the supervisor's), never
// another member's; bad requests are 4xx that name what is wrong; the
// pseudonyms are HMACs under a key per member, kept across restarts.
func TestSupervisorRoutes(t *testing.T) {
	s, srv, tokens, dir := openTest(t)
	code, b := do(t, "GET", srv.URL+"/v1/supervisor", "", "")
	var about About
	if code != 200 || json.Unmarshal(b, &about) != nil {
		t.Fatalf("GET /v1/supervisor: %d %s", code, b)
	}
	if len(about.Members) != 2 || about.Members[0].Pseudonyms != srv.URL+"/members/acme.example/pseudonyms" ||
		about.Witness.URL != srv.URL+"/witness/" || !strings.Contains(about.WitnessPolicy, srv.URL+"/witness") {
		t.Fatalf("the description: %+v", about)
	}

	acme := srv.URL + "/members/acme.example/pseudonyms"
	for _, tc := range []struct {
		name, token, body string
		code              int
		want              string
	}{
		{"no token", "", `{"ids":["` + id1 + `"]}`, 401, "member's bearer token"},
		{"another member's token", tokens[1], `{"ids":["` + id1 + `"]}`, 401, "member's bearer token"},
		{"the supervisor's token", s.Token(), `{"ids":["` + id1 + `"]}`, 401, "member's bearer token"},
		{"not JSON", tokens[0], `ids`, 400, "bad request"},
		{"an unknown field", tokens[0], `{"ids":["` + id1 + `"],"key":"x"}`, 400, "bad request"},
		{"no ids", tokens[0], `{"ids":[]}`, 400, "0 ids; ask for 1 to 1000"},
		{"too many ids", tokens[0], `{"ids":[` + strings.Repeat(`"`+id1+`",`, 1000) + `"` + id1 + `"]}`, 400, "1001 ids"},
		{"not an id", tokens[0], `{"ids":["` + id1 + `","ep_x"]}`, 400, "ids[1] is not an endpoint id"},
		{"too large", tokens[0], `{"ids":["` + strings.Repeat("a", 70<<10) + `"]}`, 413, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, b := do(t, "POST", acme, tc.token, tc.body)
			if code != tc.code || !strings.Contains(string(b), tc.want) {
				t.Errorf("%d %s, want %d naming %q", code, b, tc.code, tc.want)
			}
		})
	}
	code, b = do(t, "POST", acme, tokens[0], `{"ids":["`+id1+`","`+id2+`"]}`)
	var ans pseudonyms.Answer
	if code != 200 || json.Unmarshal(b, &ans) != nil || len(ans.Pseudonyms) != 2 {
		t.Fatalf("pseudonyms: %d %s", code, b)
	}
	key, err := os.ReadFile(filepath.Join(dir, "members", "acme.example", "pseudonym.key"))
	if err != nil {
		t.Fatal(err)
	}
	k := []byte(strings.TrimSpace(string(key)))
	if ans.Pseudonyms[0] != endpoint.Pseudonym(k, id1) || ans.Pseudonyms[1] != endpoint.Pseudonym(k, id2) {
		t.Errorf("pseudonyms %v are not HMACs under the member's key", ans.Pseudonyms)
	}
	// Another member's key makes other pseudonyms.
	_, b = do(t, "POST", srv.URL+"/members/bolt.example/pseudonyms", tokens[1], `{"ids":["`+id1+`"]}`)
	if strings.Contains(string(b), ans.Pseudonyms[0]) {
		t.Error("two members share a pseudonymisation key")
	}

	// Custody: the member's token and the supervisor's; not another's.
	counts := srv.URL + "/members/acme.example/custody/v1/counts"
	for _, tc := range []struct {
		token string
		code  int
	}{{tokens[0], 200}, {s.Token(), 200}, {tokens[1], 401}, {"", 401}} {
		if code, b := do(t, "GET", counts, tc.token, ""); code != tc.code {
			t.Errorf("custody counts with token %.8q: %d %s, want %d", tc.token, code, b, tc.code)
		}
	}
	// The supervisor's token reads counts, never unwraps.
	unwrap := srv.URL + "/members/acme.example/custody/v1/unwrap"
	if code, b := do(t, "POST", unwrap, s.Token(), `{}`); code != 401 {
		t.Errorf("an unwrap with the supervisor's token: %d %s, want 401", code, b)
	}
	if code, b := do(t, "POST", unwrap, tokens[0], `{}`); code == 401 || code == 403 {
		t.Errorf("an unwrap with the member's token: %d %s, want it past the token check", code, b)
	}
	if code, _ := do(t, "GET", srv.URL+"/members/acme.example/custody/v1/keys/zurich", "", ""); code != 200 {
		t.Errorf("custody's public key of zurich: %d", code)
	}
	if code, _ := do(t, "GET", srv.URL+"/members/nobody/pseudonyms", tokens[0], ""); code != 404 {
		t.Errorf("an unknown member: %d, want 404", code)
	}
}

// TestPseudonymsClient: the platform's client asks once per id and takes nothing from a supervisor
// that answers in the wrong form or not at all (nothing is kept, and the
// next ask asks again).
func TestPseudonymsClient(t *testing.T) {
	_, srv, tokens, dir := openTest(t)
	var asked atomic.Int32
	lie := atomic.Value{}
	lie.Store("")
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		switch lie.Load().(string) {
		case "form":
			fmt.Fprint(w, `{"pseudonyms":["`+id1+`"]}`)
			return
		case "count":
			fmt.Fprint(w, `{"pseudonyms":[]}`)
			return
		case "down":
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		r2, _ := http.NewRequest(r.Method, srv.URL+r.URL.Path, r.Body)
		r2.Header = r.Header
		resp, err := http.DefaultClient.Do(r2)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	defer front.Close()
	key, _ := os.ReadFile(filepath.Join(dir, "members", "acme.example", "pseudonym.key"))
	want := endpoint.Pseudonym([]byte(strings.TrimSpace(string(key))), id1)

	c := pseudonyms.NewClient(front.URL+"/members/acme.example/pseudonyms", tokens[0], http.DefaultClient, 0)
	ctx := context.Background()
	for _, l := range []string{"form", "count", "down"} {
		lie.Store(l)
		if got, err := c.Pseudonym(ctx, id1); err == nil || !errors.Is(err, pseudonyms.ErrUnavailable) {
			t.Errorf("a supervisor that lies (%s): %q, %v; want ErrUnavailable", l, got, err)
		}
	}
	lie.Store("")
	asked.Store(0)
	for range 3 {
		if got, err := c.Pseudonym(ctx, id1); err != nil || got != want {
			t.Fatalf("Pseudonym: %q, %v; want %q", got, err, want)
		}
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("three asks for one id made %d requests, want 1", n)
	}
	// A wrong token is refused, not taken for a pseudonym.
	bad := pseudonyms.NewClient(front.URL+"/members/acme.example/pseudonyms", tokens[1], http.DefaultClient, 0)
	if _, err := bad.Pseudonym(ctx, id2); !errors.Is(err, pseudonyms.ErrUnavailable) || !strings.Contains(err.Error(), "401") {
		t.Errorf("another member's token: %v", err)
	}
}

// FuzzPseudonyms: whatever the body, the pseudonyms route answers 200
// only with one pseudonym per id, each the member's HMAC, and otherwise a
// 4xx; it never fails or panics.
func FuzzPseudonyms(f *testing.F) {
	a, token := testMember(f, "acme.example", "http://127.0.0.1:1")
	dir := f.TempDir()
	s, err := Open(context.Background(), Config{Dir: dir, Name: "supervisor.test", URL: "http://127.0.0.1:1", Members: []Member{a}})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	h := s.Handler()
	key, _ := os.ReadFile(filepath.Join(dir, "members", "acme.example", "pseudonym.key"))
	k := []byte(strings.TrimSpace(string(key)))
	for _, b := range []string{`{"ids":["` + id1 + `"]}`, `{"ids":["` + id1 + `","` + id2 + `"]}`, `{"ids":[]}`, `{"ids":null}`, `[]`, `{"ids":["ep_"]}`} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body string) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "/members/acme.example/pseudonyms", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+token)
		h.ServeHTTP(w, r)
		if w.Code/100 != 2 {
			if w.Code/100 != 4 {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			return
		}
		var req pseudonyms.Request
		var ans pseudonyms.Answer
		if err := json.Unmarshal([]byte(body), &req); err != nil || json.Unmarshal(w.Body.Bytes(), &ans) != nil || len(ans.Pseudonyms) != len(req.IDs) {
			t.Fatalf("200 for %q: %s", body, w.Body)
		}
		for i, id := range req.IDs {
			if ans.Pseudonyms[i] != endpoint.Pseudonym(k, id) {
				t.Fatalf("pseudonym %d of %q: %s", i, id, ans.Pseudonyms[i])
			}
		}
	})
}
