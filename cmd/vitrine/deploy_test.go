package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/config"
)

// TestDeployUnits checks the systemd units and the configuration under
// deploy/ against the binary: every ExecStart names a command that exists
// with flags it takes, and the configuration loads.
func TestDeployUnits(t *testing.T) {
	bin, err := buildVitrine()
	if err != nil {
		t.Fatal(err)
	}
	units, err := filepath.Glob("../../deploy/*.service")
	if err != nil || len(units) < 4 {
		t.Fatalf("deploy/*.service: %d units, %v", len(units), err)
	}
	execStart := regexp.MustCompile(`(?m)^ExecStart=/usr/local/bin/vitrine (.*)$`)
	vars := regexp.MustCompile(`\$\{[A-Z]+\}|%i`)
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		m := execStart.FindSubmatch(b)
		if m == nil {
			t.Errorf("%s: no ExecStart of /usr/local/bin/vitrine", u)
			continue
		}
		line := vars.ReplaceAllString(string(m[1]), "x")
		args := strings.Fields(line)
		// The flags are checked by parsing them: --help after them stops
		// the command before it starts, and an unknown flag fails first.
		out, err := exec.Command(bin, append(args, "--help")...).CombinedOutput()
		if err != nil {
			t.Errorf("%s: vitrine %s: %v\n%s", u, line, err, out)
		}
		for _, must := range []string{"User=", "UMask=0077", "StateDirectoryMode=0700", "NoNewPrivileges=yes"} {
			if !strings.Contains(string(b), must) {
				t.Errorf("%s: no %s", u, must)
			}
		}
	}
	c, err := config.Load("../../deploy/vitrine.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.ExternalRegions) != 2 || c.PlatformURL == "" || c.PeerToken == "" {
		t.Errorf("deploy/vitrine.json: external regions %v, platform %q, peer token %q", c.ExternalRegions, c.PlatformURL, c.PeerToken)
	}
	// Every role in a process of its own: the logs, the releases and
	// the front door have what they need.
	if c.LogsURL == "" || c.LogsToken == "" || c.ReleasesURL == "" || c.FrontToken == "" {
		t.Errorf("deploy/vitrine.json: logs %q (token %q), releases %q, front door token %q", c.LogsURL, c.LogsToken, c.ReleasesURL, c.FrontToken)
	}
	for _, role := range []string{"all", "front", "logs", "releases", "center", "region:zurich"} {
		found := false
		for _, u := range units {
			b, _ := os.ReadFile(u)
			found = found || strings.Contains(string(b), "--role "+role+" ") || strings.Contains(string(b), "--role "+role+"\n") ||
				role == "region:zurich" && strings.Contains(string(b), "--role region:${REGION}") || role == "center" && strings.Contains(string(b), "vitrine center")
		}
		if !found {
			t.Errorf("deploy/: no unit runs --role %s", role)
		}
	}
	for _, r := range c.ExternalRegions {
		if c.InternalTokens[r] == "" || c.Stores[r] == "" {
			t.Errorf("deploy/vitrine.json: external region %s has no internal token file or no store", r)
		}
	}
}
