package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/tlog"
)

// An AccessSeen is an access entry that names this endpoint, as its log
// holds it.
type AccessSeen struct {
	Log    string
	Index  uint64
	Record *access.Record
}

// maxAccessPages bounds how many pages Accesses reads from a monitor.
const maxAccessPages = 1000

// Accesses asks the supervisor's monitor at base (one the agent pinned,
// or any other) for every access to this endpoint's data. The monitor
// finds them by the endpoint's pseudonym, which only the holder of the
// pseudonymisation key can compute; the agent proves each entry in its log
// under the pinned log key and witness policy and checks that it names
// that pseudonym, so that a monitor can leave entries out but not make
// them up.
func (a *Agent) Accesses(ctx context.Context, base string) (pseudonym string, seen []AccessSeen, err error) {
	pol, err := tlog.ParsePolicy([]byte(a.pinned.WitnessPolicy))
	if err != nil {
		return "", nil, fmt.Errorf("the pinned witness policy: %w", err)
	}
	// The endpoint's token goes with the question: not in the clear to
	// another machine.
	if u, err := url.Parse(base); err != nil || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
		return "", nil, fmt.Errorf("monitor %q: the endpoint's token is sent only over https (or to this machine)", base)
	}
	got := map[string]bool{}
	after := ""
	for range maxAccessPages {
		u := strings.TrimSuffix(base, "/") + "/v1/accesses?" + url.Values{"platform": {a.pinned.Platform}, "after": {after}}.Encode()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return "", nil, err
		}
		req.Header.Set("Authorization", "Bearer "+a.identity.Token)
		var ans struct {
			Endpoint  string `json:"endpoint"`
			Pseudonym string `json:"pseudonym"`
			Accesses  []struct {
				Log   string `json:"log"`
				Index uint64 `json:"index"`
				Entry string `json:"entry"`
				Proof string `json:"proof"`
			} `json:"accesses"`
			Next string `json:"next"`
		}
		hc := &http.Client{Timeout: time.Minute, Transport: a.HTTP.Transport}
		if err := client.Do(hc, req, 64<<20, &ans); err != nil {
			return "", nil, fmt.Errorf("asking %s: %w", base, err)
		}
		if ans.Endpoint != a.identity.ID {
			return "", nil, fmt.Errorf("the monitor answered for endpoint %q, not %q", ans.Endpoint, a.identity.ID)
		}
		if pseudonym != "" && ans.Pseudonym != pseudonym {
			return "", nil, errors.New("the monitor named two pseudonyms for this endpoint")
		}
		pseudonym = ans.Pseudonym
		for _, acc := range ans.Accesses {
			vkey, ok := a.pinned.LogKeys[acc.Log]
			if !ok || !strings.HasPrefix(acc.Log, "access-") {
				return "", nil, fmt.Errorf("an access in %q, which is no access log this agent pinned", acc.Log)
			}
			v, err := note.NewVerifier(vkey)
			if err != nil {
				return "", nil, err
			}
			if _, err := tlog.VerifyEntry([]byte(acc.Proof), acc.Index, []byte(acc.Entry), v, pol); err != nil {
				return "", nil, fmt.Errorf("%s entry %d: %w", acc.Log, acc.Index, err)
			}
			r, err := access.Parse([]byte(acc.Entry))
			if err != nil {
				return "", nil, fmt.Errorf("%s entry %d: %w", acc.Log, acc.Index, err)
			}
			if !slices.Contains(r.Subjects, pseudonym) {
				return "", nil, fmt.Errorf("%s entry %d does not name this endpoint's pseudonym", acc.Log, acc.Index)
			}
			k := fmt.Sprint(acc.Log, acc.Index)
			if got[k] {
				return "", nil, fmt.Errorf("the monitor answered %s entry %d twice", acc.Log, acc.Index)
			}
			got[k] = true
			seen = append(seen, AccessSeen{Log: acc.Log, Index: acc.Index, Record: r})
		}
		if ans.Next == "" {
			return pseudonym, seen, nil
		}
		if ans.Next == after {
			return "", nil, errors.New("the monitor's pages do not move on")
		}
		after = ans.Next
	}
	return "", nil, fmt.Errorf("more than %d pages of accesses", maxAccessPages)
}

// Monitors returns the monitors the agent pinned.
func (a *Agent) Monitors() []string { return slices.Clone(a.pinned.Monitors) }

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
