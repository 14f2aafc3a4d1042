package client

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func testDiscovery() *Discovery {
	return &Discovery{
		Logs:          []DiscoveryLog{{Name: "release", VKey: "vitrine.local/logs/release+01+AAA"}, {Name: "policy", VKey: "vitrine.local/logs/policy+02+BBB"}},
		WitnessPolicy: "witness w vitrine.local/witness+03+CCC\nquorum w\n",
		PolicyKey:     "vitrine.local/policy+04+DDD",
		EndpointKey:   "vitrine.local/endpoints+06+GGG",
		Releases:      DiscoveryReleases{Key: "-----BEGIN PUBLIC KEY-----\nEEE\n-----END PUBLIC KEY-----\n"},
		Updates:       DiscoveryUpdates{Root: json.RawMessage(`{"signed": {"version": 1}}`)},
	}
}

// TestTrustOnFirstUse: the first look pins, later looks must agree, and a
// change to any pinned value is refused with the value named.
func TestTrustOnFirstUse(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(d *Discovery)
		want   string // "" means accepted
	}{
		{"same", func(d *Discovery) {}, ""},
		{"root reformatted", func(d *Discovery) { d.Updates.Root = json.RawMessage(`{"signed":{"version":1}}`) }, ""},
		{"a log added", func(d *Discovery) {
			d.Logs = append(d.Logs, DiscoveryLog{Name: "access-tokyo", VKey: "x+05+FFF"})
		}, ""},
		{"log key", func(d *Discovery) { d.Logs[0].VKey = "vitrine.local/logs/release+09+ZZZ" }, "log release key"},
		{"log gone", func(d *Discovery) { d.Logs = d.Logs[1:] }, "log release: pinned, now not named"},
		{"witness policy", func(d *Discovery) { d.WitnessPolicy = "quorum none\n" }, "witness policy"},
		{"policy key", func(d *Discovery) { d.PolicyKey = "other" }, "residency policy key"},
		{"release key", func(d *Discovery) { d.Releases.Key = "other" }, "release key"},
		{"endpoint key", func(d *Discovery) { d.EndpointKey = "other" }, "endpoint-token key"},
		{"endpoint key gone", func(d *Discovery) { d.EndpointKey = "" }, "endpoint-token key"},
		{"tuf root", func(d *Discovery) { d.Updates.Root = json.RawMessage(`{"signed":{"version":2}}`) }, "initial TUF root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := PinsPath(t.TempDir(), "http://127.0.0.1:8080")
			if _, first, err := TrustOnFirstUse(path, "http://127.0.0.1:8080", testDiscovery()); err != nil || !first {
				t.Fatalf("first use: first=%v, %v", first, err)
			}
			d := testDiscovery()
			tc.change(d)
			_, first, err := TrustOnFirstUse(path, "http://127.0.0.1:8080", d)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (!errors.Is(err, ErrPinMismatch) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), filepath.Base(path))):
				t.Errorf("err = %v, want ErrPinMismatch naming %q and the pins file", err, tc.want)
			case first:
				t.Error("pinned again on a later use")
			}
		})
	}
	// Pins saved before platforms published the endpoint-token key take
	// it at the next use, and hold it from then on.
	t.Run("endpoint key pinned later", func(t *testing.T) {
		path := PinsPath(t.TempDir(), "http://127.0.0.1:8080")
		old := testDiscovery()
		old.EndpointKey = ""
		if _, _, err := TrustOnFirstUse(path, "http://127.0.0.1:8080", old); err != nil {
			t.Fatal(err)
		}
		if p, _, err := TrustOnFirstUse(path, "http://127.0.0.1:8080", testDiscovery()); err != nil || p.EndpointKey != testDiscovery().EndpointKey {
			t.Fatalf("the key published later: %+v, %v", p, err)
		}
		d := testDiscovery()
		d.EndpointKey = "other"
		if _, _, err := TrustOnFirstUse(path, "http://127.0.0.1:8080", d); !errors.Is(err, ErrPinMismatch) || !strings.Contains(err.Error(), "endpoint-token key") {
			t.Errorf("a changed endpoint key after it was pinned: %v", err)
		}
	})
	// Readers take the first log of a name, pins the last: a document
	// that names a log twice could slip another key past the pins. It is
	// refused, first use or not.
	t.Run("log named twice", func(t *testing.T) {
		path := PinsPath(t.TempDir(), "http://127.0.0.1:8080")
		twice := func() *Discovery {
			d := testDiscovery()
			d.Logs = append([]DiscoveryLog{{Name: "release", VKey: "evil/logs/release+09+ZZZ", URL: "http://evil/"}}, d.Logs...)
			return d
		}
		if _, _, err := TrustOnFirstUse(path, "http://127.0.0.1:8080", twice()); !errors.Is(err, ErrBadDiscovery) {
			t.Errorf("first use: %v, want ErrBadDiscovery", err)
		}
		if _, _, err := TrustOnFirstUse(path, "http://127.0.0.1:8080", testDiscovery()); err != nil {
			t.Fatal(err)
		}
		if _, _, err := TrustOnFirstUse(path, "http://127.0.0.1:8080", twice()); !errors.Is(err, ErrBadDiscovery) || !strings.Contains(err.Error(), `names the log "release" twice`) {
			t.Errorf("later use: %v, want ErrBadDiscovery naming the log", err)
		}
	})
	// A log added later is pinned from then on: its key may not change.
	t.Run("added log pinned", func(t *testing.T) {
		path := PinsPath(t.TempDir(), "http://127.0.0.1:8080")
		d := testDiscovery()
		if _, _, err := TrustOnFirstUse(path, "http://127.0.0.1:8080", d); err != nil {
			t.Fatal(err)
		}
		d.Logs = append(d.Logs, DiscoveryLog{Name: "access-tokyo", VKey: "x+05+FFF"})
		if _, _, err := TrustOnFirstUse(path, "http://127.0.0.1:8080", d); err != nil {
			t.Fatal(err)
		}
		d.Logs[2].VKey = "x+06+GGG"
		if _, _, err := TrustOnFirstUse(path, "http://127.0.0.1:8080", d); !errors.Is(err, ErrPinMismatch) || !strings.Contains(err.Error(), "log access-tokyo key") {
			t.Errorf("the added log's key changed: %v, want ErrPinMismatch naming it", err)
		}
	})
}
