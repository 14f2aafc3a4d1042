package monitor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/residency"
	"github.com/vitrine-dev/vitrine/tlog"
)

// Config configures a Monitor.
type Config struct {
	// Dir holds the monitor's pins (one file per platform) and its
	// database of alerts and follower states.
	Dir string
	// Platforms are the base URLs of the platforms it supervises.
	Platforms []string
	// Rules are checked on every entry; nil means DefaultRules.
	Rules *Rules
	// Interval is the time between passes over every log (default 10s).
	Interval time.Duration
	// Chunk is how many entries a follower hands out between commits of
	// alerts and state (default 10,000).
	Chunk int
	// StaleAfter is how long a log's checkpoint may stay the same before
	// a log-stale alert (default 5 minutes: Vitrine's logs republish
	// their checkpoint, freshly cosigned, every minute).
	StaleAfter time.Duration
	// HTTPClient reads the platforms (default: client's, with its limits).
	HTTPClient *http.Client
	Logger     *slog.Logger
	Now        func() time.Time
}

// Monitor follows every log of the platforms it supervises, each entry
// proven by client.Follower before it is looked at, and raises alerts.
type Monitor struct {
	cfg   Config
	store *store
	// homes are, per platform, the residency policy last read from its
	// policy log (see HomeMap).
	homes map[string]map[string]string

	mu sync.Mutex
	// logs are the logs followed, by origin and then key hash, for
	// checking the checkpoints others were served (CheckCheckpoint).
	logs map[string]map[string]*followed

	// fresh is, per followed log (its state's key), the checkpoint last
	// served and when the monitor first saw it.
	fresh map[string]seen
}

type seen struct {
	checkpoint []byte
	since      time.Time
}

// followed is a log the monitor follows.
type followed struct {
	platform, name string
	log            *client.Log
	key            string // its state's key in the store
}

// New opens the monitor's store under cfg.Dir.
func New(ctx context.Context, cfg Config) (*Monitor, error) {
	if cfg.Dir == "" || len(cfg.Platforms) == 0 {
		return nil, errors.New("monitor: a data directory and at least one platform are needed")
	}
	if cfg.Rules == nil {
		rs, err := Compile(DefaultRules())
		if err != nil {
			return nil, err
		}
		cfg.Rules = rs
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 5 * time.Minute
	}
	if cfg.Chunk <= 0 {
		cfg.Chunk = 10_000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s, err := openStore(ctx, cfg.Dir)
	if err != nil {
		return nil, err
	}
	return &Monitor{cfg: cfg, store: s, homes: map[string]map[string]string{}, logs: map[string]map[string]*followed{}, fresh: map[string]seen{}}, nil
}

// Close closes the monitor's store.
func (m *Monitor) Close() error { return m.store.Close() }

// Run makes a pass every Interval until ctx ends. A platform that fails is
// logged and tried again at the next pass.
func (m *Monitor) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := m.Pass(ctx); err != nil && ctx.Err() == nil {
			m.cfg.Logger.Warn("monitor pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Pass reads every log of every platform up to its current checkpoint and
// returns the alerts it raised. It goes on past a platform or log that
// fails and returns their errors joined.
func (m *Monitor) Pass(ctx context.Context) ([]Alert, error) {
	var raised []Alert
	var errs []error
	for _, base := range m.cfg.Platforms {
		a, err := m.platform(ctx, base)
		raised = append(raised, a...)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", base, err))
		}
	}
	return raised, errors.Join(errs...)
}

// logOrder reads the policy log first, so that the access logs' entries
// are checked under the policy read, then the release log.
func logOrder(name string) int {
	switch {
	case name == "policy":
		return 0
	case name == "release":
		return 1
	}
	return 2
}

func (m *Monitor) platform(ctx context.Context, base string) ([]Alert, error) {
	d, err := client.FetchDiscovery(ctx, m.cfg.HTTPClient, base)
	if err != nil {
		return nil, err
	}
	pins, _, err := client.TrustOnFirstUse(client.PinsPath(filepath.Join(m.cfg.Dir, "pins"), base), base, d)
	if err != nil {
		a := Alert{Rule: "pins-changed", Severity: "critical", Platform: base, Time: m.cfg.Now().UTC(),
			Detail: err.Error(), once: digest([]byte(err.Error()))}
		added, cerr := m.store.commit(ctx, []Alert{a}, "", nil)
		return added, errors.Join(err, cerr)
	}
	var pv note.Verifier
	if pins.PolicyKey != "" {
		if pv, err = note.NewVerifier(pins.PolicyKey); err != nil {
			return nil, fmt.Errorf("the pinned policy key: %w", err)
		}
	}
	logs := slices.Clone(d.Logs)
	slices.SortStableFunc(logs, func(a, b client.DiscoveryLog) int { return logOrder(a.Name) - logOrder(b.Name) })
	var raised []Alert
	var errs []error
	for _, dl := range logs {
		l, err := d.OpenLog(dl.Name, []byte(pins.WitnessPolicy), m.cfg.HTTPClient)
		if err != nil {
			errs = append(errs, fmt.Errorf("log %s: %w", dl.Name, err))
			continue
		}
		a, err := m.follow(ctx, base, dl.Name, l, pv)
		raised = append(raised, a...)
		if err != nil {
			errs = append(errs, fmt.Errorf("log %s: %w", dl.Name, err))
		}
	}
	return raised, errors.Join(errs...)
}

var errChunk = errors.New("chunk full")

// follow reads one log from its saved state to its checkpoint, a chunk at
// a time: the alerts of each chunk and the state after it are committed
// together.
func (m *Monitor) follow(ctx context.Context, base, name string, l *client.Log, pv note.Verifier) ([]Alert, error) {
	key := l.Origin() + " " + l.KeyHash()
	m.mu.Lock()
	if m.logs[l.Origin()] == nil {
		m.logs[l.Origin()] = map[string]*followed{}
	}
	m.logs[l.Origin()][l.KeyHash()] = &followed{platform: base, name: name, log: l, key: key}
	m.mu.Unlock()
	var st *client.FollowState
	b, err := m.store.state(ctx, key)
	if err != nil {
		return nil, err
	}
	if b != nil {
		st = new(client.FollowState)
		if err := json.Unmarshal(b, st); err != nil {
			return nil, fmt.Errorf("the saved state of %s: %w", l.Origin(), err)
		}
	}
	f, err := client.NewFollower(l, st)
	if err != nil {
		return nil, err
	}
	var raised []Alert
	for {
		var pending []Alert
		n := 0
		cp, err := f.Update(ctx, func(index uint64, entry []byte) error {
			pending = append(pending, m.check(base, name, l.Origin(), pv, index, entry)...)
			if n++; n >= m.cfg.Chunk {
				return errChunk
			}
			return nil
		})
		var fork *client.ForkError
		if errors.As(err, &fork) {
			a := Alert{Rule: "log-fork", Severity: "critical", Platform: base, Log: name, Origin: l.Origin(), Time: m.cfg.Now().UTC(),
				Detail:      "the log served a checkpoint that contradicts one the monitor verified before: " + fork.Reason,
				Checkpoints: []string{string(fork.Seen), string(fork.Now)}, once: digest(fork.Now)}
			added, cerr := m.store.commit(ctx, []Alert{a}, "", nil)
			return append(raised, added...), errors.Join(err, cerr)
		}
		if err != nil && !errors.Is(err, errChunk) {
			return raised, err
		}
		if err := m.prove(ctx, l, f.State(), pending); err != nil {
			return raised, err
		}
		if cp != nil {
			pending = append(pending, m.staleness(base, name, key, l.Origin(), cp.Raw)...)
		}
		state, jerr := json.Marshal(f.State())
		if jerr != nil {
			return raised, jerr
		}
		added, cerr := m.store.commit(ctx, pending, key, state)
		raised = append(raised, added...)
		if cerr != nil {
			return raised, cerr
		}
		if err == nil {
			return raised, nil
		}
	}
}

// staleness notes the checkpoint a log served and returns a log-stale
// alert when it has not changed for StaleAfter: a log that stopped, or
// one that shows the monitor an old view. One alert per stale checkpoint.
func (m *Monitor) staleness(base, name, key, origin string, raw []byte) []Alert {
	now := m.cfg.Now()
	s, ok := m.fresh[key]
	if !ok || !bytes.Equal(s.checkpoint, raw) {
		m.fresh[key] = seen{checkpoint: bytes.Clone(raw), since: now}
		return nil
	}
	if age := now.Sub(s.since); age > m.cfg.StaleAfter {
		return []Alert{{Rule: "log-stale", Severity: "warning", Platform: base, Log: name, Origin: origin, Time: now.UTC(),
			Detail:      fmt.Sprintf("the log has served the same checkpoint for %s (since %s); it promises a fresh one every minute", age.Round(time.Second), s.since.UTC().Format(time.RFC3339)),
			Checkpoints: []string{string(raw)}, once: "stale " + digest(raw)}}
	}
	return nil
}

// prove gives each alert about an entry a c2sp.org/tlog-proof of it in the
// last checkpoint the follower verified, and checks that the proven entry
// is the one the alert holds.
func (m *Monitor) prove(ctx context.Context, l *client.Log, st client.FollowState, alerts []Alert) error {
	var cp *tlog.Checkpoint
	for i := range alerts {
		a := &alerts[i]
		if a.Index == nil {
			continue
		}
		if cp == nil {
			c, err := l.Kept(st.Checkpoint)
			if err != nil {
				return fmt.Errorf("the follower's checkpoint: %w", err)
			}
			cp = c
		}
		entry, proof, err := l.Entry(ctx, cp, *a.Index)
		if err != nil {
			return fmt.Errorf("proving entry %d for an alert: %w", *a.Index, err)
		}
		if entryText(entry) != a.Entry {
			return fmt.Errorf("entry %d: the log serves other bytes than those the follower proved", *a.Index)
		}
		a.Proof = string(proof.Marshal())
	}
	return nil
}

// check parses one proven entry and evaluates the rules on it.
func (m *Monitor) check(base, name, origin string, pv note.Verifier, index uint64, entry []byte) []Alert {
	now := m.cfg.Now().UTC()
	alert := func(rule, severity, detail string) Alert {
		i := index
		return Alert{Rule: rule, Severity: severity, Platform: base, Log: name, Origin: origin, Index: &i, Time: now, Entry: entryText(entry), Detail: detail}
	}
	kind, obj, at, err := parseEntry(name, entry, pv)
	switch {
	case err != nil:
		return []Alert{alert("malformed-entry", "critical", err.Error())}
	case kind == "":
		return []Alert{alert("unknown-entry", "notice", "an entry of a kind this monitor does not know (a newer platform may log kinds it does not know yet)")}
	}
	if kind == "policy" {
		if p, err := residency.Open(entry, pv); err == nil {
			m.homes[base] = HomeMap(p)
		}
	}
	ms, errs := m.cfg.Rules.Eval(&Event{Platform: base, Log: name, Index: index, Kind: kind, Entry: obj, Time: at, Home: m.homes[base]})
	var out []Alert
	for _, mt := range ms {
		detail := mt.Rule.Description
		if mt.Count > 0 {
			detail = fmt.Sprintf("%s (%d matches within %s by %s)", detail, mt.Count, mt.Rule.Threshold.Window, mt.GroupKey)
		}
		out = append(out, alert(mt.Rule.Name, mt.Rule.Severity, detail))
	}
	for _, err := range errs {
		out = append(out, alert("rule-failed", "warning", err.Error()))
	}
	return out
}

// parseEntry parses an entry of the log name with its public parser and
// returns its kind, its JSON object and its time. kind is "" for an entry
// of a kind it does not know; err is set for an entry that claims a kind
// and does not parse as one.
func parseEntry(name string, entry []byte, pv note.Verifier) (kind string, obj map[string]any, at time.Time, err error) {
	switch {
	case name == "policy":
		if !residency.IsPolicyEntry(entry) {
			return "", nil, at, errors.New("not a residency policy (no policy header)")
		}
		if pv == nil {
			return "", nil, at, errors.New("the platform publishes no policy key to check the policy with")
		}
		p, err := residency.Open(entry, pv)
		if err != nil {
			return "", nil, at, err
		}
		b, err := json.Marshal(p)
		if err != nil {
			return "", nil, at, err
		}
		return "policy", jsonObject(b), at, nil
	case name == "release":
		if _, err := release.ParseEntry(entry); err != nil {
			return "", nil, at, err
		}
		kind = "release"
	case strings.HasPrefix(name, "access-"):
		kind = access.EntryKind(entry)
		switch kind {
		case access.KindAccess:
			_, err = access.Parse(entry)
		case access.KindGrant:
			_, err = access.ParseGrant(entry)
		case access.KindCommitment:
			_, err = access.ParseCommitment(entry)
		case access.KindDeniedSummary:
			_, err = access.ParseDeniedSummary(entry)
		default:
			return "", nil, at, nil
		}
		if err != nil {
			return "", nil, at, err
		}
	default:
		return "", nil, at, nil
	}
	obj = jsonObject(entry)
	if s, ok := obj["time"].(string); ok {
		at, _ = time.Parse(time.RFC3339Nano, s)
	}
	return kind, obj, at, nil
}

// jsonObject decodes an entry that its parser accepted as JSON.
func jsonObject(b []byte) map[string]any {
	var m map[string]any
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&m); err != nil || m == nil {
		return map[string]any{}
	}
	return m
}

func digest(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Alerts returns the alerts q selects, oldest first.
func (m *Monitor) Alerts(ctx context.Context, q AlertQuery) ([]Alert, error) {
	return m.store.alerts(ctx, q)
}
