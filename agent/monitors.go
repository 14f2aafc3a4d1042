package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/tlog"
)

// ErrForked is returned, wrapped in ErrRejected, when a monitor of the
// platform reports that the release-log checkpoint the agent verified
// contradicts one the monitor verified: the agent was shown a split view,
// and installs nothing on it.
var ErrForked = errors.New("a monitor reports a fork of the release log")

// monitorTimeout bounds each report to a monitor: an unreachable monitor
// must not stall updates.
const monitorTimeout = 10 * time.Second

// A MonitorReport is what one monitor said of the checkpoint an install
// was verified in.
type MonitorReport struct {
	Monitor string
	// Confirmed is true when the monitor found the checkpoint consistent
	// with what it verified; Err says why it could not tell (it is
	// unreachable, or does not follow the log yet).
	Confirmed bool
	Err       error
}

// reportCheckpoint posts the release-log checkpoint that an install was
// verified in to every monitor pinned at registration (POST
// <monitor>v1/checkpoints), so that a log showing this endpoint a tree
// it shows nobody else is caught. A monitor that answers 409 has seen a
// contradicting checkpoint: the install is refused (ErrForked). A monitor
// that cannot be reached or cannot tell is reported, and does not hold
// the install back: monitors watch the logs, they do not gate updates.
func (a *Agent) reportCheckpoint(ctx context.Context, checkpoint []byte) ([]MonitorReport, error) {
	var reports []MonitorReport
	for _, m := range a.pinned.Monitors {
		rep := MonitorReport{Monitor: m}
		claim, err := postCheckpoint(ctx, a.HTTP, m, checkpoint)
		switch {
		case claim != nil:
			// A monitor's word is not enough to stop updates: the fork
			// must show in the two checkpoints, both the log's, and the
			// log must be unable to prove them consistent.
			ferr := a.checkFork(ctx, checkpoint, claim.checkpoints)
			if ferr == nil {
				return append(reports, rep), fmt.Errorf("%w: %s: %s", ErrForked, m, claim.detail)
			}
			rep.Err = fmt.Errorf("the monitor reports a fork that does not hold: %w", ferr)
		case err != nil:
			rep.Err = err
		default:
			rep.Confirmed = true
		}
		reports = append(reports, rep)
	}
	return reports, nil
}

// errNoFork is a fork claim that the log disproves or that is not about
// two checkpoints of the log.
var errNoFork = errors.New("no fork")

// checkFork checks a monitor's claim that the release log forked: one of
// the two checkpoints it names is the one the agent verified, both verify
// under the pinned log key and witness policy, and the log cannot prove
// them consistent (a *client.ForkError, or an answer it cannot give:
// unable to disprove the claim, the agent fails closed). It returns nil
// when the fork holds.
func (a *Agent) checkFork(ctx context.Context, mine []byte, claimed []string) error {
	if len(claimed) != 2 || (claimed[0] != string(mine) && claimed[1] != string(mine)) {
		return fmt.Errorf("%w: the claim does not hold the checkpoint this agent verified and one other", errNoFork)
	}
	var cps [2]*tlog.Checkpoint
	for i, raw := range claimed {
		cp, err := a.trust.Witness.VerifyCheckpoint([]byte(raw), a.trust.Log)
		if err != nil {
			return fmt.Errorf("%w: a checkpoint of the claim: %w", errNoFork, err)
		}
		cps[i] = cp
	}
	if cps[0].Size > cps[1].Size {
		cps[0], cps[1] = cps[1], cps[0]
	}
	if cps[0].Size == cps[1].Size {
		if !bytes.Equal(cps[0].Hash, cps[1].Hash) {
			return nil // two trees of one size: a fork on its face
		}
		return fmt.Errorf("%w: the two checkpoints are of one tree", errNoFork)
	}
	l, err := a.releaseLog(ctx)
	if err != nil {
		return nil // the log cannot be asked: fail closed
	}
	err = l.Consistent(ctx, cps[0].Raw, cps[1])
	var fork *client.ForkError
	switch {
	case err == nil:
		return fmt.Errorf("%w: the log proves the two checkpoints consistent", errNoFork)
	case errors.As(err, &fork):
		return nil
	}
	return nil // the log cannot prove them consistent: fail closed
}

// releaseLog is the platform's release log, at the URL its discovery
// document gives, verified under the pinned key and witness policy.
func (a *Agent) releaseLog(ctx context.Context) (*client.Log, error) {
	d, err := client.FetchDiscovery(ctx, a.HTTP, a.pinned.Platform)
	if err != nil {
		return nil, err
	}
	for _, l := range d.Logs {
		if l.Name == "release" {
			return client.NewLog(l.URL, a.pinned.LogKeys["release"], []byte(a.pinned.WitnessPolicy), a.HTTP, true)
		}
	}
	return nil, errors.New("the discovery document names no release log")
}

// CheckMonitorURL refuses a monitor address that is not an absolute http
// or https URL without credentials.
func CheckMonitorURL(base string) error {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return fmt.Errorf("monitor %q: want an http or https URL", base)
	}
	return nil
}

// AddMonitor pins a monitor that the endpoint's operator (or its
// supervisor) names, besides those of the discovery document: a platform
// cannot leave it out. base is its base URL (http or https).
func (a *Agent) AddMonitor(base string) error {
	if err := CheckMonitorURL(base); err != nil {
		return err
	}
	base = strings.TrimSuffix(base, "/") + "/"
	if slices.Contains(a.pinned.Monitors, base) {
		return nil
	}
	a.pinned.Monitors = append(a.pinned.Monitors, base)
	pj, err := json.MarshalIndent(&a.pinned, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(a.dir, "trust.json"), pj, 0o644)
}

// postCheckpoint posts checkpoint to the monitor at base. fork is the
// monitor's account of a contradiction (409); err says why it could not
// confirm the checkpoint.
// forkClaim is a monitor's 409: its account and the two checkpoints.
type forkClaim struct {
	detail      string
	checkpoints []string
}

func postCheckpoint(ctx context.Context, hc *http.Client, base string, checkpoint []byte) (claim *forkClaim, err error) {
	ctx, cancel := context.WithTimeout(ctx, monitorTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+"/v1/checkpoints", bytes.NewReader(checkpoint))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256<<10))
	switch resp.StatusCode {
	case http.StatusOK:
		var ans struct {
			Consistent bool `json:"consistent"`
		}
		if err := json.Unmarshal(body, &ans); err != nil || !ans.Consistent {
			return nil, fmt.Errorf("the monitor's answer is not a confirmation: %.200s", body)
		}
		return nil, nil
	case http.StatusConflict:
		var ans struct {
			Alert *struct {
				Detail      string   `json:"detail"`
				Checkpoints []string `json:"checkpoints"`
			} `json:"alert"`
		}
		if json.Unmarshal(body, &ans) != nil || ans.Alert == nil {
			return nil, fmt.Errorf("the monitor answered 409 without a fork alert: %.200s", body)
		}
		return &forkClaim{detail: fmt.Sprintf("%.500s", ans.Alert.Detail), checkpoints: ans.Alert.Checkpoints}, nil
	}
	return nil, fmt.Errorf("the monitor answered %s: %.200s", resp.Status, bytes.TrimSpace(body))
}
