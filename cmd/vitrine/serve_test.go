package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/config"
)

// TestRegionCustody: a region's process reaches custody where the
// platform's does. With a supervisor that is the member's custody at the
// supervisor, with the member token (once it was the platform's own
// /custody, which a platform with a supervisor does not serve: no read of
// personal fields and no ingest could work in an external region).
func TestRegionCustody(t *testing.T) {
	tok := filepath.Join(t.TempDir(), "member.token")
	if err := os.WriteFile(tok, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		c       config.Config
		url     string
		token   string
		wantErr string
	}{
		{"the platform's own", config.Config{}, "", "", ""},
		{"vitrine custody", config.Config{CustodyURL: "https://custody.example", CustodyToken: tok}, "https://custody.example", "s3cret", ""},
		{"the supervisor's", config.Config{Name: "acme.example", SupervisorURL: "https://sup.example/", CustodyToken: tok},
			"https://sup.example/members/acme.example/custody", "s3cret", ""},
		{"the supervisor's, default name", config.Config{SupervisorURL: "http://127.0.0.1:8443", CustodyToken: tok},
			"http://127.0.0.1:8443/members/vitrine.local/custody", "s3cret", ""},
		{"no member token", config.Config{SupervisorURL: "https://sup.example"}, "", "", "needs custody_token"},
		{"plain http elsewhere", config.Config{SupervisorURL: "http://sup.example", CustodyToken: tok}, "", "", "plain http"},
		{"both", config.Config{SupervisorURL: "https://sup.example", CustodyURL: "https://custody.example", CustodyToken: tok}, "", "", "leave custody_url out"},
	} {
		url, token, err := regionCustody(&tc.c)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.wantErr)
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case url != tc.url || token != tc.token:
			t.Errorf("%s: custody at %q with token %q, want %q with %q", tc.name, url, token, tc.url, tc.token)
		}
	}
}
