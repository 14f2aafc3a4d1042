package center

import (
	"net/http"
	"path/filepath"
	"time"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/tlog"
)

// SupervisorPage is what the supervisor watches the platform with: the
// witnesses of the pinned witness policy with their latest cosignature of
// each log (from the checkpoints this Center verified), and the monitors'
// alerts with their proofs.
type SupervisorPage struct {
	Platform  string          `json:"platform"`
	Checked   time.Time       `json:"checked"`
	Quorum    string          `json:"quorum"`
	Witnesses []WitnessState  `json:"witnesses"`
	Monitors  []MonitorState  `json:"monitors"`
	Counts    OverviewSummary `json:"summary"`
	Problems  []string        `json:"problems"`
}

// WitnessState is one witness of the pinned policy and its cosignatures.
type WitnessState struct {
	Name string `json:"name"` // in the policy
	VKey string `json:"vkey"`
	URL  string `json:"url,omitempty"`
	// Logs are, for each log, whether the latest checkpoint this Center
	// verified carries its cosignature, and when it was made.
	Logs []WitnessCosignature `json:"logs"`
}

// WitnessCosignature is a witness's cosignature of a log's latest
// verified checkpoint.
type WitnessCosignature struct {
	Log      string    `json:"log"`
	Size     uint64    `json:"size"`
	Cosigned bool      `json:"cosigned"`
	Time     time.Time `json:"time,omitzero"`
	// Verified: the checkpoint verified (the log's key, the quorum, and
	// consistency with the one seen before); Problem says otherwise.
	Verified bool   `json:"verified"`
	Problem  string `json:"problem,omitempty"`
}

func (c *Center) serveSupervisor(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	o, err := c.Overview(ctx)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	page := &SupervisorPage{Platform: o.Platform, Checked: o.Checked, Witnesses: []WitnessState{}, Monitors: o.Monitors, Counts: o.Counts, Problems: o.Problems}
	// The witnesses as pinned: the overview verified every checkpoint
	// under this policy.
	d, err := client.FetchDiscovery(ctx, c.cfg.HTTPClient, c.cfg.Platform)
	if err != nil {
		c.fail(w, r, errPlatform)
		return
	}
	pins, _, err := client.TrustOnFirstUse(client.PinsPath(filepath.Join(c.cfg.Dir, "pins"), c.cfg.Platform), c.cfg.Platform, d)
	if err != nil {
		c.render(w, r, "supervisor.html", page) // the problem is the overview's
		return
	}
	policy, err := tlog.ParsePolicy([]byte(pins.WitnessPolicy))
	if err != nil {
		page.Problems = append(page.Problems, "the pinned witness policy: "+err.Error())
		c.render(w, r, "supervisor.html", page)
		return
	}
	page.Quorum = policy.Quorum()
	for _, pw := range policy.Witnesses {
		ws := WitnessState{Name: pw.Name, VKey: pw.VKey, URL: pw.URL, Logs: []WitnessCosignature{}}
		for _, l := range o.Logs {
			wc := WitnessCosignature{Log: l.Name, Size: l.Size, Verified: l.Verified, Problem: l.Problem}
			for _, cs := range l.Witnesses {
				if cs.Witness == pw.Name {
					wc.Cosigned, wc.Time = true, cs.Time
				}
			}
			ws.Logs = append(ws.Logs, wc)
		}
		page.Witnesses = append(page.Witnesses, ws)
	}
	c.render(w, r, "supervisor.html", page)
}
