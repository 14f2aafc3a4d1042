package monitor

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/client"
)

// TestExpectedKeys: a supervisor's members file pins a platform's logs'
// keys and its witness policy before the platform ever answers. A
// discovery document naming another key, or another witness policy, is a
// pins-changed alert and nothing is pinned or followed; the keys the file
// names let the monitor pin the rest on first use.
func TestExpectedKeys(t *testing.T) {
	tp := startPlatform(t)
	d, err := client.FetchDiscovery(context.Background(), nil, tp.URL())
	if err != nil {
		t.Fatal(err)
	}
	right := client.PinsFrom(tp.URL(), d)
	_, otherKey, err := note.GenerateKey(rand.Reader, right.LogKeys["policy"][:strings.Index(right.LogKeys["policy"], "+")])
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		exp  func(p *client.Pins)
		want string // in the alert's detail; "" for no alert
	}{
		{"another log key", func(p *client.Pins) { p.LogKeys["policy"] = otherKey }, "log policy: the key differs"},
		{"a log left out", func(p *client.Pins) { p.LogKeys["access-tokyo"] = otherKey }, "log access-tokyo: in the members file, not named"},
		{"a log the members file leaves out", func(p *client.Pins) { delete(p.LogKeys, "release") }, "log release: not in the members file"},
		{"another witness policy", func(p *client.Pins) { p.WitnessPolicy = "quorum none\n" }, "witness policy: not the supervisor's"},
		{"the platform's own keys", func(p *client.Pins) {}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp := client.PinsFrom(tp.URL(), d)
			exp.PolicyKey, exp.ReleaseKey, exp.EndpointKey, exp.TUFRoot = "", "", "", nil
			tc.exp(exp)
			dir := t.TempDir()
			m, err := New(context.Background(), Config{Dir: dir, Platforms: []string{tp.URL()}, Interval: time.Hour, Heartbeat: -1,
				Expect: map[string]*client.Pins{tp.URL(): exp}})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			alerts, err := passFor(m, "pins-changed")
			_, pinned := os.Stat(client.PinsPath(filepath.Join(dir, "pins"), tp.URL()))
			if tc.want == "" {
				if err != nil || len(alerts) != 0 || pinned != nil {
					t.Fatalf("pass: %v, alerts %+v, pins file: %v; want the platform pinned without alerts", err, alerts, pinned)
				}
				return
			}
			if len(alerts) != 1 || alerts[0].Severity != "critical" || !strings.Contains(alerts[0].Detail, tc.want) {
				t.Fatalf("alerts %+v, want one critical pins-changed naming %q", alerts, tc.want)
			}
			if pinned == nil {
				t.Error("the platform was pinned although it names other keys than the members file")
			}
			// The next pass raises it no more.
			if again, _ := passFor(m, "pins-changed"); len(again) != 0 {
				t.Errorf("raised again: %+v", again)
			}
		})
	}
}
