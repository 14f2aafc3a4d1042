package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
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
		fork, err := postCheckpoint(ctx, a.HTTP, m, checkpoint)
		switch {
		case fork != "":
			return append(reports, rep), fmt.Errorf("%w: %s: %s", ErrForked, m, fork)
		case err != nil:
			rep.Err = err
		default:
			rep.Confirmed = true
		}
		reports = append(reports, rep)
	}
	return reports, nil
}

// postCheckpoint posts checkpoint to the monitor at base. fork is the
// monitor's account of a contradiction (409); err says why it could not
// confirm the checkpoint.
func postCheckpoint(ctx context.Context, hc *http.Client, base string, checkpoint []byte) (fork string, err error) {
	ctx, cancel := context.WithTimeout(ctx, monitorTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+"/v1/checkpoints", bytes.NewReader(checkpoint))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256<<10))
	switch resp.StatusCode {
	case http.StatusOK:
		var ans struct {
			Consistent bool `json:"consistent"`
		}
		if err := json.Unmarshal(body, &ans); err != nil || !ans.Consistent {
			return "", fmt.Errorf("the monitor's answer is not a confirmation: %.200s", body)
		}
		return "", nil
	case http.StatusConflict:
		var ans struct {
			Alert *struct {
				Detail string `json:"detail"`
			} `json:"alert"`
		}
		if json.Unmarshal(body, &ans) == nil && ans.Alert != nil && ans.Alert.Detail != "" {
			return fmt.Sprintf("%.500s", ans.Alert.Detail), nil
		}
		return "the release log's checkpoint contradicts one the monitor verified", nil
	}
	return "", fmt.Errorf("the monitor answered %s: %.200s", resp.Status, bytes.TrimSpace(body))
}
