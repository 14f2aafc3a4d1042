package witness

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestHandlerRoutes checks methods, limits, mounting and the checkpoint read
// route through a real HTTP server.
func TestHandlerRoutes(t *testing.T) {
	l := newTestLog(t, origin, 5)
	w := openTestWitness(t, "", l.key())
	mux := http.NewServeMux()
	mux.Handle("/", w.Handler())
	mux.Handle("/witness/", http.StripPrefix("/witness", w.Handler()))
	mux.Handle("/slash/", http.StripPrefix("/slash/", w.Handler()))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	escaped := url.PathEscape(origin)
	tests := []struct {
		name      string
		method    string
		path      string
		body      string
		want      int
		wantAllow string
		wantBody  string // substring
	}{
		{name: "checkpoint before any", method: http.MethodGet, path: "/checkpoint/" + escaped, want: http.StatusNotFound, wantBody: "no checkpoint cosigned"},
		{name: "cosign at root", method: http.MethodPost, path: "/add-checkpoint", body: l.request(0, 3), want: http.StatusOK, wantBody: "— vitrine.test/witness "},
		{name: "cosign under /witness", method: http.MethodPost, path: "/witness/add-checkpoint", body: l.request(3, 4), want: http.StatusOK, wantBody: "— vitrine.test/witness "},
		{name: "cosign under /slash/", method: http.MethodPost, path: "/slash/add-checkpoint", body: l.request(4, 5), want: http.StatusOK, wantBody: "— vitrine.test/witness "},
		{name: "checkpoint escaped", method: http.MethodGet, path: "/witness/checkpoint/" + escaped, want: http.StatusOK, wantBody: "vitrine.test/logs/a\n5\n"},
		{name: "checkpoint unescaped", method: http.MethodGet, path: "/checkpoint/" + origin, want: http.StatusOK, wantBody: "— vitrine.test/witness "},
		{name: "checkpoint unknown", method: http.MethodGet, path: "/checkpoint/nope", want: http.StatusNotFound, wantBody: "no checkpoint cosigned"},
		{name: "GET add-checkpoint", method: http.MethodGet, path: "/add-checkpoint", want: http.StatusMethodNotAllowed, wantAllow: "POST", wantBody: "takes POST"},
		{name: "PUT add-checkpoint", method: http.MethodPut, path: "/witness/add-checkpoint", body: l.request(5, 5), want: http.StatusMethodNotAllowed, wantAllow: "POST"},
		{name: "POST checkpoint", method: http.MethodPost, path: "/checkpoint/" + escaped, want: http.StatusMethodNotAllowed, wantAllow: "GET, HEAD"},
		{name: "oversize body", method: http.MethodPost, path: "/add-checkpoint", body: "old 5\n" + strings.Repeat("A", maxBodyBytes), want: http.StatusRequestEntityTooLarge, wantBody: "larger than"},
		{name: "unknown path", method: http.MethodPost, path: "/add", body: l.request(5, 5), want: http.StatusNotFound, wantBody: "no such witness resource"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.want {
				t.Fatalf("%s %s = %d (%q), want %d", tt.method, tt.path, resp.StatusCode, body, tt.want)
			}
			if got := resp.Header.Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tt.wantAllow)
			}
			if !bytes.Contains(body, []byte(tt.wantBody)) {
				t.Errorf("body = %q, want it to contain %q", body, tt.wantBody)
			}
		})
	}
}
