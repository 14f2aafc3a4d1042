package cli

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/metrics"
)

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9100": true, "127.3.2.1:9100": true, "[::1]:9100": true, "localhost:9100": true,
		":9100": false, "0.0.0.0:9100": false, "192.0.2.1:9100": false, "example.com:9100": false, "nonsense": false,
	} {
		if got := Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// The metrics listener is open on loopback; on any other address it
// wants the bearer token it made.
func TestServeMetrics(t *testing.T) {
	get := func(u, token string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", u, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	serve := func(addr, tokenFile string) string {
		t.Helper()
		var out bytes.Buffer
		e := &Env{Stdout: &out, Stderr: io.Discard, Logger: slog.New(slog.DiscardHandler)}
		if err := ServeMetrics(t.Context(), e, addr, metrics.New(), nil, tokenFile); err != nil {
			t.Fatal(err)
		}
		line := strings.TrimSpace(out.String())
		u, _, _ := strings.Cut(strings.TrimPrefix(line, "metrics at "), ",")
		return u
	}
	dir := t.TempDir()
	open := serve("127.0.0.1:0", filepath.Join(dir, "loopback.token"))
	if code := get(open, ""); code != http.StatusOK {
		t.Errorf("loopback metrics without a token: %d, want 200", code)
	}
	tokenFile := filepath.Join(dir, "metrics.token")
	closed := serve("0.0.0.0:0", tokenFile)
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatalf("no token made for a listener off loopback: %v", err)
	}
	if code := get(closed, ""); code != http.StatusUnauthorized {
		t.Errorf("metrics off loopback without a token: %d, want 401", code)
	}
	if code := get(closed, "wrong"); code != http.StatusUnauthorized {
		t.Errorf("metrics off loopback with a wrong token: %d, want 401", code)
	}
	if code := get(closed, strings.TrimSpace(string(token))); code != http.StatusOK {
		t.Errorf("metrics off loopback with the token: %d, want 200", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "loopback.token")); err == nil {
		t.Error("a token was made for a loopback listener")
	}
}
