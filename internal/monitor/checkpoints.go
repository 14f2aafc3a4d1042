package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/tlog"
)

// CheckpointAnswer is what the monitor says of a checkpoint someone was
// served (POST /v1/checkpoints).
type CheckpointAnswer struct {
	Platform string `json:"platform"`
	Log      string `json:"log"`
	Origin   string `json:"origin"`
	Size     uint64 `json:"size"`
	// Consistent is true when the checkpoint and the one the monitor
	// verified last (of VerifiedSize entries) belong to one append-only
	// log; false when they contradict each other, and Alert is then the
	// critical log-fork alert raised, with both checkpoints.
	Consistent   bool   `json:"consistent"`
	VerifiedSize uint64 `json:"verified_size"`
	Alert        *Alert `json:"alert,omitempty"`
}

// CheckCheckpoint checks a checkpoint that someone was served (an agent
// during an update, a Transparency Center, another monitor) against what
// the monitor verified of the same log: a split view, where a log shows
// one tree to some and another to others, shows as two checkpoints that
// no append-only log can have signed both of. The checkpoint must be
// signed by a log the monitor follows and meet its witness policy (else
// it proves nothing; fault.ErrInvalid). A contradiction raises a critical
// log-fork alert, returned in the answer.
func (m *Monitor) CheckCheckpoint(ctx context.Context, raw []byte) (*CheckpointAnswer, error) {
	origin, _, _ := bytes.Cut(raw, []byte("\n"))
	m.mu.Lock()
	candidates := make([]*followed, 0, len(m.logs[string(origin)]))
	for _, f := range m.logs[string(origin)] {
		candidates = append(candidates, f)
	}
	m.mu.Unlock()
	if len(candidates) == 0 {
		return nil, fault.New(fault.ErrNotFound, fmt.Sprintf("the monitor follows no log of origin %.200q", origin))
	}
	var f *followed
	var posted *tlog.Checkpoint
	var errs []error
	for _, c := range candidates {
		cp, err := c.log.Policy.VerifyCheckpoint(raw, c.log.Verifier)
		if err == nil {
			f, posted = c, cp
			break
		}
		errs = append(errs, err)
	}
	if f == nil {
		return nil, fault.New(fault.ErrInvalid, fmt.Sprintf("not a checkpoint of a log the monitor follows, signed and witnessed as its policy requires: %v", errors.Join(errs...)))
	}
	b, err := m.store.state(ctx, f.key)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fault.New(fault.ErrNotFound, "the monitor has not verified a checkpoint of "+f.log.Origin()+" yet")
	}
	var st client.FollowState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	ours, err := f.log.Kept(st.Checkpoint)
	if err != nil {
		return nil, err
	}
	ans := &CheckpointAnswer{Platform: f.platform, Log: f.name, Origin: f.log.Origin(), Size: posted.Size, VerifiedSize: ours.Size, Consistent: true}
	// The smaller tree must be a prefix of the larger: the proof comes
	// from the log's tiles, which the larger checkpoint's root checks.
	older, newer := posted, ours
	if posted.Size > ours.Size {
		older, newer = ours, posted
	}
	err = f.log.Consistent(ctx, older.Raw, newer)
	var fork *client.ForkError
	switch {
	case errors.As(err, &fork):
		a := Alert{Rule: "log-fork", Severity: "critical", Platform: f.platform, Log: f.name, Origin: f.log.Origin(), Time: m.cfg.Now().UTC(),
			Detail:      "a checkpoint someone was served contradicts the one the monitor verified: " + fork.Reason,
			Checkpoints: []string{string(ours.Raw), string(posted.Raw)}, once: forkOnce(ours.Raw, posted.Raw)}
		added, err := m.commit(ctx, []Alert{a}, "", nil, nil)
		if err != nil {
			return nil, err
		}
		if len(added) == 1 {
			a = added[0]
		}
		ans.Consistent, ans.Alert = false, &a
		return ans, nil
	case err != nil:
		// The log could not give a proof (its tiles unreadable, or it
		// has no tree of the posted size to prove from): no verdict yet.
		// The checkpoint is signed and witnessed, so it is kept and
		// tried again after each pass; one the log never proves is an
		// alert (see recheck): a log that shows some a newer tree and
		// will not prove it to the monitor.
		m.keepUnproven(f.key, posted.Raw)
		return nil, fault.Mark(fault.ErrUnavailable, fmt.Errorf("proving %s consistent: %w", f.log.Origin(), err))
	}
	return ans, nil
}

// maxUnproven bounds the unproven checkpoints kept per log.
const maxUnproven = 64

type unproven struct {
	raw   []byte
	since time.Time
}

// keepUnproven keeps a posted checkpoint the log could not prove yet.
func (m *Monitor) keepUnproven(key string, raw []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	// One per tree: the same tree cosigned again is the same claim.
	tree := func(b []byte) string {
		l := bytes.SplitN(b, []byte("\n"), 4)
		return string(bytes.Join(l[:min(3, len(l))], []byte("\n")))
	}
	for _, u := range m.unproven[key] {
		if tree(u.raw) == tree(raw) {
			return
		}
	}
	if len(m.unproven[key]) >= maxUnproven {
		m.cfg.Logger.Warn("monitor: too many unproven checkpoints kept; this one is not", "log", key)
		return
	}
	m.unproven[key] = append(m.unproven[key], unproven{bytes.Clone(raw), m.cfg.Now()})
}

// recheck tries again the checkpoints posted for the log followed under
// key that it could not prove: proven consistent, they go; proven a fork,
// a log-fork alert; still unproven after StaleAfter, a critical
// checkpoint-unproven alert holding the checkpoint. Kept in memory: a
// restart forgets them.
func (m *Monitor) recheck(ctx context.Context, f *followed, st client.FollowState) []Alert {
	m.mu.Lock()
	pending := m.unproven[f.key]
	m.mu.Unlock()
	if len(pending) == 0 || st.Checkpoint == nil {
		return nil
	}
	ours, err := f.log.Kept(st.Checkpoint)
	if err != nil {
		return nil
	}
	var out []Alert
	var keep []unproven
	for _, u := range pending {
		posted, err := f.log.Kept(u.raw)
		if err != nil {
			continue
		}
		older, newer := posted, ours
		if posted.Size > ours.Size {
			older, newer = ours, posted
		}
		err = f.log.Consistent(ctx, older.Raw, newer)
		var fork *client.ForkError
		switch {
		case err == nil:
		case errors.As(err, &fork):
			out = append(out, Alert{Rule: "log-fork", Severity: "critical", Platform: f.platform, Log: f.name, Origin: f.log.Origin(), Time: m.cfg.Now().UTC(),
				Detail:      "a checkpoint someone was served contradicts the one the monitor verified: " + fork.Reason,
				Checkpoints: []string{string(ours.Raw), string(posted.Raw)}, once: forkOnce(ours.Raw, posted.Raw)})
		case m.cfg.Now().Sub(u.since) > m.cfg.StaleAfter:
			out = append(out, Alert{Rule: "checkpoint-unproven", Severity: "critical", Platform: f.platform, Log: f.name, Origin: f.log.Origin(), Time: m.cfg.Now().UTC(),
				Detail: fmt.Sprintf("a checkpoint someone was served (%d entries, signed and witnessed) has not been proven consistent with the %d entries the monitor verified since %s: the log shows some a tree it will not prove to the monitor: %v",
					posted.Size, ours.Size, u.since.UTC().Format(time.RFC3339), err),
				Checkpoints: []string{string(ours.Raw), string(posted.Raw)}, once: "unproven " + digest(posted.Raw)})
		default:
			keep = append(keep, u)
		}
	}
	m.mu.Lock()
	m.unproven[f.key] = keep
	m.mu.Unlock()
	return out
}
