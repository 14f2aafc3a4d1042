package principal

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

const operatorToken = "operator-secret-0123456789abcdef0123456789"

func isOperator(r *http.Request) bool {
	return r.Header.Get("Authorization") == "Bearer "+operatorToken
}

const jdoeBody = `{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":["zurich"]}`

// do sends a request to h and returns the status and the decoded JSON
// answer.
func do(t *testing.T, h http.Handler, method, path, auth string, body io.Reader) (int, map[string]string, http.Header) {
	t.Helper()
	req := httptest.NewRequest(method, path, body)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	var ans map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &ans); err != nil {
		t.Fatalf("%s %s: answer %q is not a JSON object of strings: %v", method, path, w.Body, err)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return w.Code, ans, w.Header()
}

func TestHandlerCreates(t *testing.T) {
	r, _ := openTest(t)
	h := r.Handler(isOperator, nil)
	code, ans, hdr := do(t, h, "POST", "/v1/principals", "Bearer "+operatorToken, strings.NewReader(jdoeBody))
	if code != http.StatusCreated {
		t.Fatalf("status %d (%v), want 201", code, ans)
	}
	if hdr.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q, want no-store for an answer that carries a token", hdr.Get("Cache-Control"))
	}
	tok := ans["token"]
	if len(ans) != 1 || !tokenRE.MatchString(tok) {
		t.Fatalf("answer %v, want {\"token\":\"vp1....\"}", ans)
	}
	p, err := r.Authenticate(request("Bearer " + tok))
	if err != nil || p.ID != "analyst:jdoe" || p.Location != "CH" {
		t.Errorf("Authenticate(new token) = %+v, %v", p, err)
	}
	code, ans, _ = do(t, h, "POST", "/v1/principals", "Bearer "+operatorToken, strings.NewReader(jdoeBody))
	if code != http.StatusConflict || !strings.Contains(ans["error"], "already exists") {
		t.Errorf("second creation: %d %v, want 409", code, ans)
	}
}

func TestHandlerRejects(t *testing.T) {
	big := `{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":["zurich"],"x":"` + strings.Repeat("a", MaxRequestSize) + `"}`
	for _, tc := range []struct {
		name, method, path, auth, body string
		chunked                        bool
		status                         int
		want                           string
	}{
		{"no operator token", "POST", "/v1/principals", "", jdoeBody, false, 401, "operator's bearer token"},
		{"wrong operator token", "POST", "/v1/principals", "Bearer nope", jdoeBody, false, 401, "operator's bearer token"},
		{"GET", "GET", "/v1/principals", "Bearer " + operatorToken, "", false, 405, "use POST"},
		{"other path", "POST", "/v1/principalsx", "Bearer " + operatorToken, jdoeBody, false, 404, "no such route"},
		{"POST to a principal", "POST", "/v1/principals/analyst:jdoe", "Bearer " + operatorToken, jdoeBody, false, 405, "use DELETE"},
		{"bad expiry", "POST", "/v1/principals", "Bearer " + operatorToken, `{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":["zurich"],"expires":"next year"}`, false, 400, `expires "next year" is neither`},
		{"negative expiry", "POST", "/v1/principals", "Bearer " + operatorToken, `{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":["zurich"],"expires":"-1h"}`, false, 400, "positive duration"},
		{"past expiry", "POST", "/v1/principals", "Bearer " + operatorToken, `{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":["zurich"],"expires":"2020-01-01T00:00:00Z"}`, false, 400, "is not in the future"},
		{"expiry as number", "POST", "/v1/principals", "Bearer " + operatorToken, `{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":["zurich"],"expires":720}`, false, 400, `"expires" must be a string`},
		{"too large", "POST", "/v1/principals", "Bearer " + operatorToken, big, false, 413, "larger than 65536 bytes"},
		{"too large, chunked", "POST", "/v1/principals", "Bearer " + operatorToken, big, true, 413, "larger than 65536 bytes"},
		{"empty body", "POST", "/v1/principals", "Bearer " + operatorToken, "", false, 400, "request body: empty"},
		{"not JSON", "POST", "/v1/principals", "Bearer " + operatorToken, "id=analyst:jdoe", false, 400, "invalid JSON"},
		{"not an object", "POST", "/v1/principals", "Bearer " + operatorToken, `["analyst:jdoe"]`, false, 400, "want a JSON object"},
		{"unknown key", "POST", "/v1/principals", "Bearer " + operatorToken, `{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":["zurich"],"admin":true}`, false, 400, `unknown key "admin"`},
		{"key in other case", "POST", "/v1/principals", "Bearer " + operatorToken, `{"ID":"analyst:jdoe","role":"analyst","location":"CH","regions":["zurich"]}`, false, 400, `unknown key "ID"`},
		{"duplicate key", "POST", "/v1/principals", "Bearer " + operatorToken, `{"id":"analyst:jdoe","id":"operator:jdoe","role":"analyst","location":"CH","regions":["zurich"]}`, false, 400, `key "id" appears twice`},
		{"missing key", "POST", "/v1/principals", "Bearer " + operatorToken, `{"id":"analyst:jdoe","role":"analyst","regions":["zurich"]}`, false, 400, `key "location" is missing`},
		{"trailing data", "POST", "/v1/principals", "Bearer " + operatorToken, jdoeBody + `{}`, false, 400, "data after the JSON object"},
		{"truncated", "POST", "/v1/principals", "Bearer " + operatorToken, jdoeBody[:30], false, 400, "unexpected end of JSON"},
		{"regions as string", "POST", "/v1/principals", "Bearer " + operatorToken, `{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":"zurich"}`, false, 400, `"regions" must be an array of strings, not a string`},
		{"region as number", "POST", "/v1/principals", "Bearer " + operatorToken, `{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":[1]}`, false, 400, "element 0 is a number"},
		{"role as null", "POST", "/v1/principals", "Bearer " + operatorToken, `{"id":"analyst:jdoe","role":null,"location":"CH","regions":["zurich"]}`, false, 400, `"role" must be a string, not null`},
		{"invalid role", "POST", "/v1/principals", "Bearer " + operatorToken, `{"id":"root:jdoe","role":"root","location":"CH","regions":["zurich"]}`, false, 400, `role "root" is not one of`},
		{"unknown region", "POST", "/v1/principals", "Bearer " + operatorToken, `{"id":"analyst:jdoe","role":"analyst","location":"CH","regions":["paris"]}`, false, 400, `region "paris" is not a known region`},
		{"bad country", "POST", "/v1/principals", "Bearer " + operatorToken, `{"id":"analyst:jdoe","role":"analyst","location":"Switzerland","regions":["zurich"]}`, false, 400, "ISO 3166-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, path := openTest(t)
			var body io.Reader = strings.NewReader(tc.body)
			if tc.chunked {
				body = io.MultiReader(body) // hides the length: ContentLength -1
			}
			code, ans, hdr := do(t, r.Handler(isOperator, nil), tc.method, tc.path, tc.auth, body)
			if code != tc.status || !strings.Contains(ans["error"], tc.want) {
				t.Errorf("%d %q, want %d and an error containing %q", code, ans["error"], tc.status, tc.want)
			}
			if code == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a bearer challenge")
			}
			r2, err := Open(path, knownRegion)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := r2.Get("analyst:jdoe"); ok {
				t.Error("a refused request stored a principal")
			}
		})
	}
}

func TestHandlerStoreFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "principals.json")
	r, err := Open(path, knownRegion)
	if err != nil {
		t.Fatal(err)
	}
	breakDir(t, filepath.Dir(path))
	code, ans, hdr := do(t, r.Handler(isOperator, nil), "POST", "/v1/principals", "Bearer "+operatorToken, bytes.NewReader([]byte(jdoeBody)))
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || !strings.Contains(ans["error"], "nothing was stored") {
		t.Errorf("%d %v, want 503 with Retry-After", code, ans)
	}
	if _, ok := r.Get("analyst:jdoe"); ok {
		t.Error("a principal that was not stored is in the registry")
	}
}

func TestParseCreateRequest(t *testing.T) {
	p, err := parseCreateRequest([]byte(` {"regions":["zurich","moscow"],"location":"CH","role":"analyst","id":"analyst:jdoe"} ` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != "analyst:jdoe" || p.Role != Analyst || p.Location != "CH" || len(p.Regions) != 2 || p.Regions[1] != "moscow" {
		t.Errorf("parseCreateRequest = %+v", p)
	}
	p, err = parseCreateRequest([]byte(`{"id":"a","role":"b","location":"c","regions":[]}`))
	if err != nil || p.Regions == nil || len(p.Regions) != 0 {
		t.Errorf("empty regions: %+v, %v; want a shape the registry then refuses", p, err)
	}
	if _, err := parseCreateRequest([]byte(`{"id":1}`)); err == nil || !strings.HasPrefix(err.Error(), "request body: ") || errors.Is(err, ErrInvalid) {
		t.Errorf("wrong type: %v", err)
	}
}
