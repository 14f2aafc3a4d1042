package custody

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/keys"
)

const testToken = "0123456789abcdef0123456789abcdef"

func serve(t *testing.T, s *Service) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(s.Handler(func(r *http.Request) bool { return keys.BearerEqual(r, testToken) }))
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHTTP(t *testing.T) {
	e := newEnv(t)
	srv := serve(t, e.svc)
	c := NewClient(srv.URL+"/", testToken, srv.Client())
	ctx := t.Context()

	// Public keys need no token and round-trip through their text.
	for _, r := range testRegions {
		k, err := NewClient(srv.URL, "", nil).PublicKey(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := e.svc.PublicKey(r)
		if k.String() != want.String() {
			t.Errorf("PublicKey(%s) over HTTP differs", r)
		}
	}
	if _, err := c.PublicKey(ctx, "paris"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("PublicKey(paris) = %v, want a 404", err)
	}

	dataKeys, wrapped := e.wrap("zurich", 2)
	entry := record("zurich", "read", "granted", wrapped)
	idx, proofs := e.prove("zurich", entry)
	req := &UnwrapRequest{Region: "zurich", Entry: entry, Proof: proofs[0], Keys: wrapped}
	resp, err := c.Unwrap(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for i := range dataKeys {
		if !bytes.Equal(resp.Keys[i], dataKeys[i]) {
			t.Errorf("key %d over HTTP = %x, want %x", i, resp.Keys[i], dataKeys[i])
		}
	}

	// Refusals are 403 and come back as ErrRefused with the reason.
	refused := *req
	refused.Entry = record("zurich", "read", "denied", wrapped)
	if _, err := c.Unwrap(ctx, &refused); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("refused unwrap over HTTP = %v, want ErrRefused saying the proof does not verify", err)
	}
	noKeys := *req
	noKeys.Keys = nil
	if _, err := c.Unwrap(ctx, &noKeys); !errors.Is(err, ErrMalformed) {
		t.Errorf("unwrap of no keys over HTTP = %v, want ErrMalformed", err)
	}
	if _, err := NewClient(srv.URL, "wrong", nil).Unwrap(ctx, req); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("unwrap with a wrong token = %v, want 401", err)
	}

	good, _ := json.Marshal(req)
	tests := []struct {
		name, token, body string
		want              int
	}{
		{"no token", "", string(good), http.StatusUnauthorized},
		{"not json", testToken, "region=zurich", http.StatusBadRequest},
		{"unknown member", testToken, `{"region":"zurich","keys":["AA=="],"extra":1}`, http.StatusBadRequest},
		{"bad base64", testToken, `{"region":"zurich","keys":["!"]}`, http.StatusBadRequest},
		{"two objects", testToken, string(good) + string(good), http.StatusBadRequest},
		{"no keys", testToken, `{"region":"zurich","keys":[]}`, http.StatusBadRequest},
		{"no proof", testToken, `{"region":"zurich","keys":["AA=="]}`, http.StatusForbidden},
		{"unknown region", testToken, `{"region":"paris","keys":["AA=="]}`, http.StatusForbidden},
		{"too large", testToken, `{"region":"` + strings.Repeat("a", maxRequestBody) + `"}`, http.StatusRequestEntityTooLarge},
		{"good", testToken, string(good), http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(t, srv.URL+"/v1/unwrap", tc.token, tc.body)
			if code != tc.want {
				t.Fatalf("status %d, want %d: %s", code, tc.want, body)
			}
			if code != http.StatusOK {
				var e struct{ Error string }
				if json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
					t.Errorf("error answer %q is not {\"error\": ...}", body)
				}
			}
		})
	}

	// Counts: token required; the two good unwraps of two keys each.
	hreq, _ := http.NewRequest("GET", srv.URL+"/v1/counts", nil)
	if r, err := http.DefaultClient.Do(hreq); err != nil || r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("counts without a token: %v %v", r.StatusCode, err)
	}
	hreq.Header.Set("Authorization", "Bearer "+testToken)
	r, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var counts map[string]map[string]int64
	if err := json.NewDecoder(r.Body).Decode(&counts); err != nil {
		t.Fatal(err)
	}
	if got := counts["zurich"][strconv.FormatUint(idx[0], 10)]; got != 4 || len(counts) != 1 {
		t.Errorf("GET /v1/counts = %v, want zurich %d: 4", counts, idx[0])
	}
}

func TestHTTPUnavailable(t *testing.T) {
	e := newEnv(t)
	srv := serve(t, e.svc)
	_, wrapped := e.wrap("moscow", 1)
	entry := record("moscow", "read", "granted", wrapped)
	_, proofs := e.prove("moscow", entry)
	e.svc.Close()
	_, err := NewClient(srv.URL, testToken, nil).Unwrap(context.Background(), &UnwrapRequest{Region: "moscow", Entry: entry, Proof: proofs[0], Keys: wrapped})
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("unwrap with the count store closed = %v, want ErrUnavailable (503)", err)
	}
}
