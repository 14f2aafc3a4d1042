package principal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func knownRegion(r string) bool { return r == "zurich" || r == "moscow" }

var ctx = context.Background()

// openTest opens a registry in a fresh directory.
func openTest(t testing.TB) (*Registry, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "principals.json")
	r, err := Open(path, knownRegion)
	if err != nil {
		t.Fatal(err)
	}
	return r, path
}

func jdoe() Principal {
	return Principal{ID: "analyst:jdoe", Role: Analyst, Location: "CH", Regions: []string{"zurich"}}
}

// request returns a request with the given Authorization header values.
func request(auth ...string) *http.Request {
	req := httptest.NewRequest("GET", "/regions/zurich/v1/records", nil)
	for _, a := range auth {
		req.Header.Add("Authorization", a)
	}
	return req
}

func mustCreate(t testing.TB, r *Registry, p Principal) string {
	t.Helper()
	tok, err := r.Create(ctx, p)
	if err != nil {
		t.Fatalf("Create(%+v) = %v", p, err)
	}
	return tok
}

var tokenRE = regexp.MustCompile(`^vp1\.[A-Za-z0-9_-]{43}$`)

func TestCreateGetAuthenticate(t *testing.T) {
	r, _ := openTest(t)
	before := time.Now().Add(-time.Second)
	tok := mustCreate(t, r, jdoe())
	if !tokenRE.MatchString(tok) || !wellFormedToken(tok) {
		t.Errorf("token %q is not vp1. and 43 base64url characters", tok)
	}
	p, ok := r.Get("analyst:jdoe")
	if !ok {
		t.Fatal("Get after Create found nothing")
	}
	want := jdoe()
	if p.ID != want.ID || p.Role != want.Role || p.Location != want.Location || !slices.Equal(p.Regions, want.Regions) {
		t.Errorf("Get = %+v, want %+v", p, want)
	}
	if p.Created.Before(before) || p.Created.After(time.Now()) {
		t.Errorf("Created = %v, want about now", p.Created)
	}
	if !p.MayActIn("zurich") || p.MayActIn("moscow") || p.MayActIn("") {
		t.Errorf("MayActIn wrong for regions %v", p.Regions)
	}
	got, err := r.Authenticate(request("Bearer " + tok))
	if err != nil {
		t.Fatalf("Authenticate = %v", err)
	}
	if got.ID != p.ID || !got.Created.Equal(p.Created) {
		t.Errorf("Authenticate = %+v, want %+v", got, p)
	}
	if _, err := r.Authenticate(request("bearer   " + tok + " ")); err != nil {
		t.Errorf("lower-case scheme and extra spaces: %v", err)
	}

	// What Get returns is a copy.
	p.Regions[0] = "moscow"
	if again, _ := r.Get("analyst:jdoe"); again.Regions[0] != "zurich" {
		t.Error("changing the result of Get changed the registry")
	}
	if _, ok := r.Get("analyst:nobody"); ok {
		t.Error("Get found a principal that does not exist")
	}

	// A second principal gets another token, which authenticates it alone.
	tok2 := mustCreate(t, r, Principal{ID: "processor:verdicts", Role: Processor, Location: "DE", Regions: []string{"moscow", "zurich"}})
	if tok2 == tok {
		t.Fatal("two principals got the same token")
	}
	if got, err := r.Authenticate(request("Bearer " + tok2)); err != nil || got.ID != "processor:verdicts" {
		t.Errorf("Authenticate(second token) = %+v, %v", got, err)
	}
}

func TestCreateDuplicate(t *testing.T) {
	r, path := openTest(t)
	tok := mustCreate(t, r, jdoe())
	file, _ := os.ReadFile(path)
	other := jdoe()
	other.Location = "DE"
	if _, err := r.Create(ctx, other); !errors.Is(err, ErrExists) {
		t.Fatalf("Create(existing id) = %v, want ErrExists", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, file) {
		t.Error("a refused Create changed the registry file")
	}
	if p, err := r.Authenticate(request("Bearer " + tok)); err != nil || p.Location != "CH" {
		t.Errorf("after a refused duplicate, Authenticate = %+v, %v", p, err)
	}
}

func TestCreateInvalid(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Principal)
		want   string
	}{
		{"unknown role", func(p *Principal) { p.Role, p.ID = "admin", "admin:jdoe" }, `role "admin" is not one of operator, analyst, processor, supervisor, auditor, endpoint`},
		{"empty role", func(p *Principal) { p.Role = "" }, `role "" is not one of`},
		{"id without role", func(p *Principal) { p.ID = "jdoe" }, `id "jdoe" must be "analyst:" followed by a name`},
		{"id of another role", func(p *Principal) { p.ID = "operator:jdoe" }, `must be "analyst:"`},
		{"empty id", func(p *Principal) { p.ID = "" }, `id "" must be`},
		{"empty name", func(p *Principal) { p.ID = "analyst:" }, "the name after"},
		{"upper-case name", func(p *Principal) { p.ID = "analyst:JDoe" }, "the name after"},
		{"name starting with a dot", func(p *Principal) { p.ID = "analyst:.jdoe" }, "the name after"},
		{"name with a space", func(p *Principal) { p.ID = "analyst:j doe" }, "the name after"},
		{"name with a colon", func(p *Principal) { p.ID = "analyst:j:doe" }, "the name after"},
		{"name too long", func(p *Principal) { p.ID = "analyst:" + strings.Repeat("a", 65) }, "up to 63"},
		{"unknown country", func(p *Principal) { p.Location = "XX" }, `location "XX" is not an ISO 3166-1 alpha-2`},
		{"lower-case country", func(p *Principal) { p.Location = "ch" }, `location "ch"`},
		{"no location", func(p *Principal) { p.Location = "" }, `location ""`},
		{"no regions", func(p *Principal) { p.Regions = nil }, "no regions"},
		{"empty regions", func(p *Principal) { p.Regions = []string{} }, "no regions"},
		{"unknown region", func(p *Principal) { p.Regions = []string{"zurich", "paris"} }, `region "paris" is not a known region`},
		{"duplicate region", func(p *Principal) { p.Regions = []string{"zurich", "moscow", "zurich"} }, `region "zurich" is listed twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, path := openTest(t)
			file, _ := os.ReadFile(path)
			p := jdoe()
			tc.change(&p)
			tok, err := r.Create(ctx, p)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Create(%+v) = %q, %v; want ErrInvalid", p, tok, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Create(%+v) = %q, want it to contain %q", p, err, tc.want)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, file) {
				t.Error("a refused Create changed the registry file")
			}
			if _, ok := r.Get(p.ID); ok {
				t.Error("a refused principal is in the registry")
			}
		})
	}
	for _, ok := range []Principal{
		{ID: "analyst:" + strings.Repeat("a", 64), Role: Analyst, Location: "CH", Regions: []string{"zurich"}},
		{ID: "endpoint:0", Role: Endpoint, Location: "RU", Regions: []string{"moscow"}},
		{ID: "supervisor:acme-audit_2.x", Role: Supervisor, Location: "US", Regions: []string{"moscow", "zurich"}},
		{ID: "auditor:a", Role: Auditor, Location: "JP", Regions: []string{"zurich"}},
		{ID: "operator:ops", Role: Operator, Location: "CH", Regions: []string{"zurich"}},
	} {
		r, _ := openTest(t)
		if _, err := r.Create(ctx, ok); err != nil {
			t.Errorf("Create(%+v) = %v", ok, err)
		}
	}
}

func TestPersistence(t *testing.T) {
	r, path := openTest(t)
	tok := mustCreate(t, r, jdoe())
	tok2 := mustCreate(t, r, Principal{ID: "processor:verdicts", Role: Processor, Location: "DE", Regions: []string{"moscow", "zurich"}})
	orig, _ := r.Get("analyst:jdoe")

	r2, err := Open(path, knownRegion)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := r2.Get("analyst:jdoe")
	if !ok || p.Role != Analyst || p.Location != "CH" || !slices.Equal(p.Regions, []string{"zurich"}) || !p.Created.Equal(orig.Created) {
		t.Fatalf("after reopening, Get = %+v, %v; want %+v", p, ok, orig)
	}
	for tok, id := range map[string]string{tok: "analyst:jdoe", tok2: "processor:verdicts"} {
		if got, err := r2.Authenticate(request("Bearer " + tok)); err != nil || got.ID != id {
			t.Errorf("after reopening, Authenticate = %+v, %v; want %s", got, err, id)
		}
	}
	if _, err := r2.Create(ctx, jdoe()); !errors.Is(err, ErrExists) {
		t.Errorf("after reopening, Create(existing) = %v, want ErrExists", err)
	}
	tok3 := mustCreate(t, r2, Principal{ID: "auditor:alice", Role: Auditor, Location: "FR", Regions: []string{"zurich"}})
	r3, err := Open(path, knownRegion)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{tok, tok2, tok3} {
		if _, err := r3.Authenticate(request("Bearer " + tok)); err != nil {
			t.Errorf("after a second reopening: %v", err)
		}
	}
}

func TestFileHoldsNoToken(t *testing.T) {
	r, path := openTest(t)
	tok := mustCreate(t, r, jdoe())
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if secret := strings.TrimPrefix(tok, "vp1."); bytes.Contains(file, []byte(secret)) {
		t.Errorf("the registry file holds the token in clear:\n%s", file)
	}
	h := sha256.Sum256([]byte(tok))
	if !bytes.Contains(file, []byte(hex.EncodeToString(h[:]))) {
		t.Errorf("the registry file does not hold the token's SHA-256:\n%s", file)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("registry file mode %v, want 0600", st.Mode().Perm())
	}
}

func TestOpenCreatesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "principals.json")
	if _, err := Open(path, knownRegion); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("Open did not create the file: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("new registry file mode %v, want 0600", st.Mode().Perm())
	}
	if _, err := Open(path, knownRegion); err != nil {
		t.Errorf("reopening an empty registry: %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "p.json"), nil); err == nil {
		t.Error("Open without knownRegion succeeded")
	}
}

func TestOpenRejectsBadFile(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	entry := func(id, hash string) string {
		return fmt.Sprintf(`{"id":%q,"role":"analyst","location":"CH","regions":["zurich"],"created":"2026-11-22T10:00:00Z","token_sha256":%q}`, id, hash)
	}
	for _, tc := range []struct{ name, file, want string }{
		{"not JSON", `{`, "unexpected EOF"},
		{"unknown field", `{"version":1,"principals":[],"tokens":[]}`, "unknown field"},
		{"wrong version", `{"version":2,"principals":[]}`, "version 2"},
		{"trailing data", `{"version":1,"principals":[]} {}`, "data after"},
		{"invalid principal", `{"version":1,"principals":[` + entry("analyst:JDOE", hash) + `]}`, "invalid principal"},
		{"duplicate id", `{"version":1,"principals":[` + entry("analyst:jdoe", hash) + `,` + entry("analyst:jdoe", strings.Repeat("cd", 32)) + `]}`, "listed twice"},
		{"shared token", `{"version":1,"principals":[` + entry("analyst:jdoe", hash) + `,` + entry("analyst:alice", hash) + `]}`, "token of another principal"},
		{"bad hash", `{"version":1,"principals":[` + entry("analyst:jdoe", "vp1.secret") + `]}`, "token_sha256"},
		{"upper-case hash", `{"version":1,"principals":[` + entry("analyst:jdoe", strings.ToUpper(hash)) + `]}`, "token_sha256"},
		{"no creation time", `{"version":1,"principals":[` + strings.Replace(entry("analyst:jdoe", hash), `"2026-11-22T10:00:00Z"`, `"0001-01-01T00:00:00Z"`, 1) + `]}`, "no creation time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "principals.json")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(path, knownRegion)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestAuthenticateRejects(t *testing.T) {
	r, _ := openTest(t)
	tok := mustCreate(t, r, jdoe())
	other, _ := openTest(t)
	foreign := mustCreate(t, other, jdoe())
	unknown, _ := newToken()
	// The last character of a 32-byte base64url string carries 4 bits;
	// "B" sets one of the 2 unused ones, so the encoding is not canonical.
	noncanonical := unknown[:len(unknown)-1] + "B"
	if wellFormedToken(noncanonical) {
		t.Fatal("test token is canonical")
	}
	for _, tc := range []struct {
		name string
		auth []string
		want error
	}{
		{"absent", nil, ErrNoCredential},
		{"empty", []string{""}, ErrNoCredential},
		{"blank", []string{"   "}, ErrNoCredential},
		{"basic", []string{"Basic YWxhZGRpbjpvcGVuc2VzYW1l"}, ErrBadCredential},
		{"scheme only", []string{"Bearer"}, ErrBadCredential},
		{"scheme and space", []string{"Bearer "}, ErrBadCredential},
		{"bare token", []string{tok}, ErrBadCredential},
		{"truncated", []string{"Bearer " + tok[:len(tok)-1]}, ErrBadCredential},
		{"extended", []string{"Bearer " + tok + "A"}, ErrBadCredential},
		{"other version", []string{"Bearer vp2." + tok[4:]}, ErrBadCredential},
		{"non-canonical", []string{"Bearer " + noncanonical}, ErrBadCredential},
		{"padded", []string{"Bearer " + tok + "="}, ErrBadCredential},
		{"unknown", []string{"Bearer " + unknown}, ErrBadCredential},
		{"other registry", []string{"Bearer " + foreign}, ErrBadCredential},
		{"two headers", []string{"Bearer " + tok, "Bearer " + tok}, ErrBadCredential},
		{"token with space", []string{"Bearer " + tok[:10] + " " + tok[10:]}, ErrBadCredential},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := r.Authenticate(request(tc.auth...))
			if !errors.Is(err, tc.want) || p != nil {
				t.Fatalf("Authenticate = %+v, %v; want %v", p, err, tc.want)
			}
			if errors.Is(err, ErrNoCredential) && errors.Is(err, ErrBadCredential) {
				t.Errorf("%v matches both sentinels", err)
			}
			for _, secret := range []string{tok[4:], foreign[4:], unknown[4:]} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q contains a token", err)
				}
			}
		})
	}
}

func TestConcurrentCreate(t *testing.T) {
	r, path := openTest(t)
	const n = 40
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		tokens = map[string]string{} // id → token
		wins   int
	)
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("analyst:user%d", i)
			tok, err := r.Create(ctx, Principal{ID: id, Role: Analyst, Location: "CH", Regions: []string{"zurich"}})
			if err != nil {
				t.Errorf("Create(%s) = %v", id, err)
				return
			}
			mu.Lock()
			tokens[id] = tok
			mu.Unlock()
		}()
		go func() { // everyone races for the same id; one wins
			defer wg.Done()
			_, err := r.Create(ctx, Principal{ID: "operator:root", Role: Operator, Location: "CH", Regions: []string{"zurich"}})
			switch {
			case err == nil:
				mu.Lock()
				wins++
				mu.Unlock()
			case !errors.Is(err, ErrExists):
				t.Errorf("Create(operator:root) = %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d Create calls for one id succeeded, want 1", wins)
	}
	r2, err := Open(path, knownRegion)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r2.Get("operator:root"); !ok {
		t.Error("operator:root lost")
	}
	for id, tok := range tokens {
		if p, err := r2.Authenticate(request("Bearer " + tok)); err != nil || p.ID != id {
			t.Errorf("after reopening, token of %s: %+v, %v", id, p, err)
		}
	}
	if len(tokens) != n {
		t.Errorf("%d principals created, want %d", len(tokens), n)
	}
}

// TestCreateStoreFailure checks that a Create whose file cannot be written
// fails and leaves nothing behind.
func TestCreateStoreFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "principals.json")
	r, err := Open(path, knownRegion)
	if err != nil {
		t.Fatal(err)
	}
	breakDir(t, filepath.Dir(path))
	tok, err := r.Create(ctx, jdoe())
	if err == nil || errors.Is(err, ErrInvalid) || errors.Is(err, ErrExists) {
		t.Fatalf("Create with an unwritable file = %q, %v; want a storage error", tok, err)
	}
	if _, ok := r.Get("analyst:jdoe"); ok {
		t.Error("a principal that was not stored is in the registry")
	}
}

// breakDir replaces dir by a file, so that nothing can be written in it.
func breakDir(t *testing.T, dir string) {
	t.Helper()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
}
