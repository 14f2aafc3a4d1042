package platform

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/internal/tilestore"
)

// Readiness is the answer to GET /readyz: whether every log takes appends,
// and the state of each.
type Readiness struct {
	Ready bool `json:"ready"`
	// NotReady says, one line each, what is not ready and since when.
	NotReady []string `json:"not_ready,omitempty"`
	// Logs is the state of each log's storage: healthy, or broken (or
	// recovering) since when, how many appends it refused, its recovery
	// attempts and the next one, and how often it recovered in process.
	Logs map[string]tilestore.Health `json:"logs"`
}

// Readiness reports the state of every log. Without detail, the reasons
// (which name files of the data directory) are left out.
func (p *Platform) Readiness(detail bool) Readiness {
	logs := make(map[string]tilestore.Health, len(p.logs))
	for name, l := range p.logs {
		logs[name] = l.Health()
	}
	return readiness(logs, detail)
}

func readiness(logs map[string]tilestore.Health, detail bool) Readiness {
	r := Readiness{Ready: true, Logs: logs}
	for _, name := range slices.Sorted(maps.Keys(logs)) {
		h := logs[name]
		if !detail {
			h.Reason, h.LastAttempt = "", ""
			logs[name] = h
		}
		if h.OK() {
			continue
		}
		r.Ready = false
		line := "log " + name + ": " + h.Summary()
		if h.Reason != "" {
			line += ": " + h.Reason
		}
		r.NotReady = append(r.NotReady, line)
	}
	return r
}

// serveReadyz answers 200 when every log takes appends, and 503 with a
// Retry-After otherwise; the body is a Readiness either way, with the
// failures' reasons for the operator's token.
func (p *Platform) serveReadyz(w http.ResponseWriter, r *http.Request) {
	rd := p.Readiness(keys.BearerEqual(r, p.operatorToken))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !rd.Ready {
		retry := time.Second
		now := time.Now()
		for _, h := range rd.Logs {
			retry = max(retry, h.RetryAfter(now))
		}
		w.Header().Set("Retry-After", fmt.Sprint(int(retry.Seconds())))
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(rd)
}
