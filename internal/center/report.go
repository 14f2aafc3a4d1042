package center

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/tlog"
)

// Report is the transparency report: every access to users' data the
// access logs hold, by month, justification code and action, with third
// parties' requests for data on their own. It is computed from the logs'
// entries, each proven; `vitrine report` prints the same figures, so
// that anyone can recompute them.
type Report struct {
	Platform string    `json:"platform"`
	Computed time.Time `json:"computed"`
	// Logs are the access logs counted, each up to the size of the
	// checkpoint it was counted to.
	Logs []ReportLog `json:"logs"`
	// Months are the calendar months (UTC) with accesses, oldest first.
	Months []ReportMonth `json:"months"`
	Totals ReportCounts  `json:"totals"`
}

// ReportLog is one access log as counted.
type ReportLog struct {
	Name   string `json:"name"`
	Origin string `json:"origin"`
	Size   uint64 `json:"size"`
}

// ReportMonth is one month's counts.
type ReportMonth struct {
	Month string `json:"month"` // 2026-12
	ReportCounts
}

// ReportCounts counts access records: how many (Accesses), by
// justification code and by action (a denied attempt's action is
// "denied"), how many records granted accesses released, and third
// parties' requests for data (justification THIRD_PARTY_DATA_REQUEST),
// granted and denied.
type ReportCounts struct {
	Accesses          int64            `json:"accesses"`
	ByJustification   map[string]int64 `json:"by_justification"`
	ByAction          map[string]int64 `json:"by_action"`
	RecordsReleased   int64            `json:"records_released"`
	ThirdPartyGranted int64            `json:"third_party_granted"`
	ThirdPartyDenied  int64            `json:"third_party_denied"`
}

func (c *ReportCounts) add(r *access.Record) {
	if c.ByJustification == nil {
		c.ByJustification, c.ByAction = map[string]int64{}, map[string]int64{}
	}
	c.Accesses++
	code := r.Justification.Code
	if code == "" {
		code = "(none)" // a denied attempt without one
	}
	c.ByJustification[code]++
	c.ByAction[r.Action]++
	if r.Outcome == "granted" {
		c.RecordsReleased += r.Resource.Count
	}
	if r.Justification.Code == "THIRD_PARTY_DATA_REQUEST" {
		if r.Outcome == "granted" {
			c.ThirdPartyGranted++
		} else {
			c.ThirdPartyDenied++
		}
	}
}

func (c *ReportCounts) merge(o ReportCounts) {
	if c.ByJustification == nil {
		c.ByJustification, c.ByAction = map[string]int64{}, map[string]int64{}
	}
	c.Accesses += o.Accesses
	c.RecordsReleased += o.RecordsReleased
	c.ThirdPartyGranted += o.ThirdPartyGranted
	c.ThirdPartyDenied += o.ThirdPartyDenied
	for k, v := range o.ByJustification {
		c.ByJustification[k] += v
	}
	for k, v := range o.ByAction {
		c.ByAction[k] += v
	}
}

// reportChunk is how many entries a report counts between saves.
const reportChunk = 50_000

// reportState is one access log's counts so far and the follower's state
// they were counted to: a report goes on from there.
type reportState struct {
	Follow *client.FollowState      `json:"follow"`
	Months map[string]*ReportCounts `json:"months"`
}

// ComputeReport reads every access log of the platform at base, under the
// pins kept in dir (pinned on first use), from where the counts kept in
// dir stopped, and returns the report. Every entry counted is proven by
// the follower; a log that does not verify is an error, and nothing of it
// is counted.
func ComputeReport(ctx context.Context, hc *http.Client, base, dir string, now time.Time) (*Report, error) {
	base = strings.TrimRight(base, "/")
	for _, d := range []string{dir, filepath.Join(dir, "pins"), filepath.Join(dir, "report")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	d, err := client.FetchDiscovery(ctx, hc, base)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errPlatform, err)
	}
	pins, _, err := client.TrustOnFirstUse(client.PinsPath(filepath.Join(dir, "pins"), base), base, d)
	if err != nil {
		return nil, err
	}
	rep := &Report{Platform: base, Computed: now.UTC(), Logs: []ReportLog{}, Months: []ReportMonth{}}
	months := map[string]*ReportCounts{}
	for _, dl := range d.Logs {
		if !strings.HasPrefix(dl.Name, "access-") {
			continue
		}
		if pins.LogKeys[dl.Name] != dl.VKey {
			return nil, fmt.Errorf("log %s: not a pinned log", dl.Name)
		}
		l, err := d.OpenLog(dl.Name, []byte(pins.WitnessPolicy), hc)
		if err != nil {
			return nil, fmt.Errorf("log %s: %w", dl.Name, err)
		}
		path := filepath.Join(dir, "report", url.PathEscape(l.Origin()+" "+l.KeyHash())+".json")
		st := &reportState{Months: map[string]*ReportCounts{}}
		if b, err := os.ReadFile(path); err == nil {
			if err := json.Unmarshal(b, st); err != nil {
				return nil, fmt.Errorf("log %s: the counts kept: %w", dl.Name, err)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		f, err := client.NewFollower(l, st.Follow)
		if err != nil {
			return nil, fmt.Errorf("log %s: %w", dl.Name, err)
		}
		// Counted into a copy, saved with the follower's state after
		// every chunk: a log that fails midway keeps its counts as of
		// its last proven chunk, and a long count goes on from there.
		counted := map[string]*ReportCounts{}
		for m, c := range st.Months {
			cc := *c
			cc.ByJustification, cc.ByAction = maps.Clone(c.ByJustification), maps.Clone(c.ByAction)
			counted[m] = &cc
		}
		save := func() error {
			fs := f.State()
			b, err := json.Marshal(&reportState{Follow: &fs, Months: counted})
			if err != nil {
				return err
			}
			return atomicfile.Write(path, b, 0o600)
		}
		var cp *tlog.Checkpoint
		for {
			n := 0
			cp, err = f.Update(ctx, func(_ uint64, entry []byte) error {
				n++
				if access.EntryKind(entry) == access.KindAccess {
					if r, err := access.Parse(entry); err == nil { // not one: the monitor's malformed-entry
						m := r.Time.UTC().Format("2006-01")
						if counted[m] == nil {
							counted[m] = &ReportCounts{}
						}
						counted[m].add(r)
					}
				}
				if n >= reportChunk {
					return client.ErrPause
				}
				return nil
			})
			if err != nil && !errors.Is(err, client.ErrPause) {
				return nil, fmt.Errorf("log %s: %w", dl.Name, err)
			}
			if serr := save(); serr != nil {
				return nil, serr
			}
			if err == nil {
				break
			}
		}
		rep.Logs = append(rep.Logs, ReportLog{Name: dl.Name, Origin: l.Origin(), Size: cp.Size})
		for m, c := range counted {
			if months[m] == nil {
				months[m] = &ReportCounts{}
			}
			months[m].merge(*c)
		}
	}
	for _, m := range slices.Sorted(maps.Keys(months)) {
		rep.Months = append(rep.Months, ReportMonth{Month: m, ReportCounts: *months[m]})
		rep.Totals.merge(*months[m])
	}
	if rep.Totals.ByJustification == nil {
		rep.Totals.ByJustification, rep.Totals.ByAction = map[string]int64{}, map[string]int64{}
	}
	return rep, nil
}

// reportView is the report as its page shows it: the codes and actions
// in a fixed order, and each month's bar.
type reportView struct {
	*Report
	Codes, Actions []string
	Bars           []reportBar
	Width          int // the chart's, in its units
}

type reportBar struct {
	Month               string
	Accesses, Third     int64
	Height, ThirdHeight int // in the chart's units, of 100
	X                   int
}

func (c *Center) serveReport(w http.ResponseWriter, r *http.Request) {
	// The count goes on if the reader leaves (for up to 10 minutes), so
	// that the next reader has it: it is saved chunk by chunk.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Minute)
	defer cancel()
	c.reportMu.Lock()
	rep, err := ComputeReport(ctx, c.cfg.HTTPClient, c.cfg.Platform, c.cfg.Dir, c.cfg.Now())
	c.reportMu.Unlock()
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if wantsJSON(r) {
		c.render(w, r, "", rep)
		return
	}
	v := &reportView{Report: rep, Codes: slices.Sorted(maps.Keys(rep.Totals.ByJustification)), Actions: slices.Sorted(maps.Keys(rep.Totals.ByAction))}
	var most int64 = 1
	for _, m := range rep.Months {
		most = max(most, m.Accesses)
	}
	for i, m := range rep.Months {
		third := m.ThirdPartyGranted + m.ThirdPartyDenied
		v.Bars = append(v.Bars, reportBar{Month: m.Month, Accesses: m.Accesses, Third: third, X: i * 40,
			Height: int(m.Accesses * 100 / most), ThirdHeight: int(third * 100 / most)})
	}
	v.Width = max(40*len(v.Bars), 480)
	c.render(w, r, "report.html", v)
}
