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
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/logserver"
	"github.com/vitrine-dev/vitrine/release"
	"github.com/vitrine-dev/vitrine/residency"
	"github.com/vitrine-dev/vitrine/review"
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
	// alerts and state (default 10,000): at least that many, up to the
	// end of what the follower read with the last of them, at most twice
	// that many.
	Chunk int
	// StaleAfter is how long a log's checkpoint may stay the same before
	// a log-stale alert (default 5 minutes: Vitrine's logs republish
	// their checkpoint, freshly cosigned, every minute).
	StaleAfter time.Duration
	// PlatformTimeout bounds one pass over one platform (default 10
	// minutes).
	PlatformTimeout time.Duration
	// HTTPClient reads the platforms (default: a client with a one-minute
	// timeout per request; the logs' answers are also cut at their sizes).
	HTTPClient *http.Client
	// Webhooks are URLs that every alert is POSTed to, signed with
	// WebhookSecret (Standard Webhooks; default: the secret kept in
	// Dir/webhook.secret, made at the first start).
	Webhooks      []string
	WebhookSecret string
	// HookCommand is a program run for every alert, with the alert on its
	// standard input (see hookCommand).
	HookCommand string
	// Heartbeat is the time between heartbeat alerts, which show a
	// receiver that delivery works (default 1 hour; negative: none).
	Heartbeat time.Duration
	// Name names the monitor: its acknowledgement log's origin is
	// Name + "/acknowledgements" (default "vitrine-monitor"). Keep it
	// across restarts.
	Name string
	// SupervisorToken is the bearer token that may acknowledge alerts;
	// empty: nobody may. AckWitnessPolicy is the acknowledgement log's
	// witness policy (nil: none).
	SupervisorToken  string
	AckWitnessPolicy []byte
	// AckHTTPClient reaches the acknowledgement log's witnesses (default
	// http.DefaultClient).
	AckHTTPClient *http.Client
	// Rebuilders are the rebuilders whose verdicts each platform's
	// releases wait for (release-not-reproduced); none: the rule is off.
	// ReproduceWithin is how long a release may wait (default 24 hours).
	Rebuilders      []Rebuilder
	ReproduceWithin time.Duration
	// Custody is each platform's key custody whose unwrap counts are
	// reconciled with its access logs (unreconciled-unwrap); none: the
	// rule is off.
	Custody []Custody
	// PseudonymKeys are, per platform, the key of its subjects'
	// pseudonyms: with one, the monitor indexes the subjects its access
	// logs name and answers endpoints that ask who accessed their data
	// (GET /v1/accesses).
	PseudonymKeys map[string][]byte
	// Expect is, per platform, what its supervisor pinned before the
	// platform ever answered (a members file): its logs' keys and its
	// witness policy. A discovery document that names others is a
	// pins-changed alert, even before the first use pins the rest.
	Expect map[string]*client.Pins
	Logger *slog.Logger
	Now    func() time.Time
}

// Monitor follows every log of the platforms it supervises, each entry
// proven by client.Follower before it is looked at, and raises alerts.
type Monitor struct {
	cfg   Config
	store *store
	// askers and asking bound GET /v1/accesses: per endpoint, and at once.
	askers askers
	asking chan struct{}
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
	// down is, per thing that can fail (a platform, a log, a witness of a
	// log), since when it has been failing (see outage).
	down map[string]time.Time
	// caughtUp is, per followed log (its state's key), when the monitor
	// last followed it to its checkpoint (see lagging).
	caughtUp map[string]time.Time
	// unproven are, per followed log, posted checkpoints the log could
	// not prove consistent yet (see recheck).
	unproven map[string][]unproven
	// healthSaved is the health state as last saved (see healthState).
	healthSaved []byte
	// policies are, per platform, the last policy entry read; it is saved
	// with the policy log's state, so that a restarted monitor checks
	// residency under it.
	policies map[string][]byte
	// windows are the threshold rules' windows as last committed (see
	// Rules.Windows), and ledger the datasets' (see ledger) with saved,
	// as last committed: a chunk that is not committed is not counted.
	windows     []byte
	ledger      ledger
	ledgerSaved []byte
	// releases are the releases read since the last commit, to wait for
	// their verdicts (see reproductions), and subjects the pseudonyms the
	// accesses read since then name (see accesses.go).
	releases []releaseRow
	subjects []subjectRow
	// endpointKeys are, per platform, the verifier key of its endpoint
	// tokens, from its pins.
	endpointKeys map[string]string

	// id is the monitor's own id (see deliveryID); targets receive the
	// alerts, each woken by its channel when alerts are committed.
	id      string
	acks    *logserver.Log
	targets []target
	wake    []chan struct{}
}

type seen struct {
	Checkpoint []byte    `json:"checkpoint"`
	Since      time.Time `json:"since"`
}

// followed is a log the monitor follows.
type followed struct {
	platform, name string
	log            *client.Log
	key            string // its state's key in the store
}

// New opens the monitor's store under cfg.Dir. A monitor of no platforms
// (a supervisor with no members yet) serves its alerts and heartbeats.
func New(ctx context.Context, cfg Config) (*Monitor, error) {
	if cfg.Dir == "" {
		return nil, errors.New("monitor: a data directory is needed")
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
	if cfg.PlatformTimeout <= 0 {
		cfg.PlatformTimeout = 10 * time.Minute
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: time.Minute}
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 5 * time.Minute
	}
	if cfg.Chunk <= 0 {
		cfg.Chunk = 10_000
	}
	// A chunk is refused at twice its size: keep that from overflowing.
	cfg.Chunk = min(cfg.Chunk, 1<<30)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ReproduceWithin <= 0 {
		cfg.ReproduceWithin = 24 * time.Hour
	}
	if cfg.Name == "" {
		cfg.Name = "vitrine-monitor"
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = time.Hour
	}
	var targets []target
	if len(cfg.Webhooks) > 0 {
		secret := cfg.WebhookSecret
		if secret == "" {
			var err error
			if secret, err = LoadWebhookSecret(cfg.Dir); err != nil {
				return nil, fmt.Errorf("monitor: the webhook secret: %w", err)
			}
		}
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			return nil, fmt.Errorf("monitor: the webhook secret: %w", err)
		}
		// Each attempt is bounded; a redirect is not followed (the
		// address is the operator's, not the receiver's, to change).
		hc := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		for _, u := range cfg.Webhooks {
			if err := CheckWebhookURL(u); err != nil {
				return nil, fmt.Errorf("monitor: %w", err)
			}
			targets = append(targets, webhook(u, wh, hc, cfg.Now))
		}
	}
	if cfg.HookCommand != "" {
		if !filepath.IsAbs(cfg.HookCommand) {
			return nil, fmt.Errorf("monitor: the hook command %q must be an absolute path", cfg.HookCommand)
		}
		targets = append(targets, hookCommand(cfg.HookCommand))
	}
	s, err := openStore(ctx, cfg.Dir)
	if err != nil {
		return nil, err
	}
	// The pins are the monitor's trust: private, like the rest of Dir.
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "pins"), 0o700); err != nil {
		s.Close()
		return nil, err
	}
	m := &Monitor{cfg: cfg, store: s, homes: map[string]map[string]string{}, logs: map[string]map[string]*followed{}, fresh: map[string]seen{}, down: map[string]time.Time{}, caughtUp: map[string]time.Time{}, unproven: map[string][]unproven{}, endpointKeys: map[string]string{}, policies: map[string][]byte{}, targets: targets, asking: make(chan struct{}, maxAsking)}
	if m.windows, err = s.state(ctx, "windows"); err != nil {
		s.Close()
		return nil, err
	}
	if err := cfg.Rules.SetWindows(m.windows); err != nil {
		// Windows saved under other rules: counting starts again.
		cfg.Logger.Warn("monitor: the saved threshold windows do not load; counting starts again", "err", err)
		m.windows = nil
	}
	if m.ledgerSaved, err = s.state(ctx, "ledger"); err != nil {
		s.Close()
		return nil, err
	}
	if m.ledger, err = loadLedger(m.ledgerSaved); err != nil {
		s.Close()
		return nil, err
	}
	h, err := s.state(ctx, "health")
	if err == nil {
		err = m.loadHealth(h)
	}
	m.healthSaved = h
	if err != nil {
		s.Close()
		return nil, err
	}
	if m.id, err = s.instanceID(ctx); err != nil {
		s.Close()
		return nil, err
	}
	known, err := s.targetNames(ctx)
	if err != nil {
		s.Close()
		return nil, err
	}
	var replaced []string
	for _, k := range known {
		if !slices.ContainsFunc(targets, func(t target) bool { return t.name == k }) {
			replaced = append(replaced, k)
		}
	}
	for _, t := range targets {
		if err := s.addTarget(ctx, t.name, replaced); err != nil {
			s.Close()
			return nil, err
		}
		m.wake = append(m.wake, make(chan struct{}, 1))
	}
	if m.acks, err = logserver.Open(ctx, logserver.Config{Dir: filepath.Join(cfg.Dir, "acknowledgements"), Origin: cfg.Name + "/acknowledgements",
		WitnessPolicy: cfg.AckWitnessPolicy, HTTPClient: cfg.AckHTTPClient, Logger: cfg.Logger}); err != nil {
		s.Close()
		return nil, fmt.Errorf("monitor: the acknowledgement log: %w", err)
	}
	if err := m.recoverAcks(ctx); err != nil {
		m.Close()
		return nil, fmt.Errorf("monitor: the acknowledgement log: %w", err)
	}
	// A target no longer configured is forgotten: test-alert waits only
	// for the targets the monitor delivers to, and one added again later
	// starts after the alerts raised by then.
	if err := s.keepTargets(ctx, targets); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// commit stores alerts and a follower's state (see store.commit) and wakes
// the deliverers when there are new alerts.
func (m *Monitor) commit(ctx context.Context, alerts []Alert, key string, state []byte, extra map[string][]byte, rows ...chunkRows) ([]Alert, error) {
	added, err := m.store.commit(ctx, alerts, key, state, extra, rows...)
	if len(added) > 0 {
		for _, w := range m.wake {
			select {
			case w <- struct{}{}:
			default:
			}
		}
	}
	return added, err
}

// Raise stores an alert that no log entry raised (a heartbeat, a test
// alert) and hands it to delivery. once names what makes it one: an alert
// with the same rule and once is not raised again.
func (m *Monitor) Raise(ctx context.Context, rule, severity, detail, once string) ([]Alert, error) {
	return m.commit(ctx, []Alert{{Rule: rule, Severity: severity, Time: m.cfg.Now().UTC(), Detail: detail, once: once}}, "", nil, nil)
}

// Deliveries returns how delivery to each target stands.
func (m *Monitor) Deliveries(ctx context.Context) ([]TargetState, error) {
	return m.store.targets(ctx)
}

// Close closes the monitor's acknowledgement log and store.
func (m *Monitor) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(m.acks.Close(ctx), m.store.Close())
}

// Run makes a pass every Interval until ctx ends, delivers the alerts to
// every target and raises a heartbeat every Heartbeat. A platform that
// fails is logged and tried again at the next pass.
func (m *Monitor) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for i, t := range m.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.deliver(ctx, t, m.wake[i])
		}()
	}
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	var beat <-chan time.Time
	if m.cfg.Heartbeat > 0 {
		h := time.NewTicker(m.cfg.Heartbeat)
		defer h.Stop()
		beat = h.C
		m.heartbeat(ctx)
	}
	for {
		if _, err := m.Pass(ctx); err != nil && ctx.Err() == nil {
			m.cfg.Logger.Warn("monitor pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-beat:
			m.heartbeat(ctx)
		case <-t.C:
		}
	}
}

// heartbeat raises the heartbeat of the current period (one per period,
// however often the monitor restarts).
func (m *Monitor) heartbeat(ctx context.Context) {
	now := m.cfg.Now().UTC()
	period := now.Truncate(m.cfg.Heartbeat)
	detail := fmt.Sprintf("the monitor is running and delivering; it supervises %d platforms and raises a heartbeat every %s", len(m.cfg.Platforms), m.cfg.Heartbeat)
	if _, err := m.Raise(ctx, "heartbeat", "info", detail, period.Format(time.RFC3339)); err != nil && ctx.Err() == nil {
		m.cfg.Logger.Warn("monitor heartbeat", "err", err)
	}
}

// Pass reads every log of every platform up to its current checkpoint and
// returns the alerts it raised. It goes on past a platform or log that
// fails and returns their errors joined. Passes must not run concurrently
// (Run makes one at a time); the routes may be served meanwhile.
func (m *Monitor) Pass(ctx context.Context) ([]Alert, error) {
	var raised []Alert
	var errs []error
	for _, base := range m.cfg.Platforms {
		// A platform that hangs must not blind the monitor to the others:
		// each gets PlatformTimeout per pass (the chunks it finished are
		// committed; the next pass goes on from them).
		pctx, cancel := context.WithTimeout(ctx, m.cfg.PlatformTimeout)
		a, err := m.platform(pctx, base)
		cancel()
		raised = append(raised, a...)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", base, err))
		}
		if ctx.Err() != nil {
			continue
		}
		// Health is judged and committed under the pass's context, not
		// the platform's, which a platform that stalls runs out.
		lag := m.lagging(base)
		// A platform whose discovery document cannot be read: the
		// monitor sees none of its logs.
		var unreachable *discoveryError
		out := m.outage("platform "+base, errors.As(err, &unreachable), func(since time.Time) Alert {
			return Alert{Rule: "platform-unreachable", Severity: "warning", Platform: base,
				Detail: fmt.Sprintf("the monitor has not been able to read the platform's discovery document since %s: it sees none of its logs: %v", since.UTC().Format(time.RFC3339), unreachable)}
		})
		out = append(out, lag...)
		// The health counters are saved with the alerts they raise, so
		// that a restart neither forgets an outage nor alerts it again.
		h, herr := m.healthState()
		if herr != nil {
			errs = append(errs, herr)
			continue
		}
		var extra map[string][]byte
		if !bytes.Equal(h, m.healthSaved) {
			extra = map[string][]byte{"health": h}
		}
		if len(out) == 0 && extra == nil {
			continue // nothing new: no write
		}
		added, err := m.commit(ctx, out, "", nil, extra)
		raised = append(raised, added...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m.healthSaved = h
	}
	return raised, errors.Join(errs...)
}

// health is what the monitor counts its health alerts from, saved after
// each platform's pass (see healthState).
type health struct {
	Down     map[string]time.Time `json:"down"`
	CaughtUp map[string]time.Time `json:"caught_up"`
	Fresh    map[string]seen      `json:"fresh"`
}

func (m *Monitor) healthState() ([]byte, error) {
	return json.Marshal(health{Down: m.down, CaughtUp: m.caughtUp, Fresh: m.fresh})
}

// loadHealth puts back what healthState saved.
func (m *Monitor) loadHealth(b []byte) error {
	if b == nil {
		return nil
	}
	var h health
	if err := json.Unmarshal(b, &h); err != nil {
		return fmt.Errorf("the saved health counters: %w", err)
	}
	for k, v := range h.Down {
		m.down[k] = v
	}
	for k, v := range h.CaughtUp {
		m.caughtUp[k] = v
	}
	for k, v := range h.Fresh {
		m.fresh[k] = v
	}
	return nil
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

// checkExpected returns an error wrapping client.ErrPinMismatch if d
// names another key for a log that exp pins, leaves one out, names one
// exp does not, or names another witness policy; nil if exp is nil.
func checkExpected(exp *client.Pins, d *client.Discovery) error {
	if exp == nil {
		return nil
	}
	now := client.PinsFrom(exp.Platform, d)
	var changed []string
	for _, name := range slices.Sorted(maps.Keys(exp.LogKeys)) {
		if k, ok := now.LogKeys[name]; !ok {
			changed = append(changed, "log "+name+": in the members file, not named")
		} else if k != exp.LogKeys[name] {
			changed = append(changed, "log "+name+": the key differs from the members file's")
		}
	}
	// A log the supervisor was not told of has no witness to cosign it:
	// its checkpoints could not be checked.
	for _, name := range slices.Sorted(maps.Keys(now.LogKeys)) {
		if _, ok := exp.LogKeys[name]; !ok {
			changed = append(changed, "log "+name+": not in the members file")
		}
	}
	if exp.WitnessPolicy != "" && now.WitnessPolicy != exp.WitnessPolicy {
		changed = append(changed, "witness policy: not the supervisor's")
	}
	if len(changed) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %w: %s", exp.Platform, client.ErrPinMismatch, strings.Join(changed, "; "))
}

func (m *Monitor) platform(ctx context.Context, base string) ([]Alert, error) {
	d, err := client.FetchDiscovery(ctx, m.cfg.HTTPClient, base)
	if err != nil {
		return nil, &discoveryError{err}
	}
	err = checkExpected(m.cfg.Expect[base], d)
	var pins *client.Pins
	if err == nil {
		pins, _, err = client.TrustOnFirstUse(client.PinsPath(filepath.Join(m.cfg.Dir, "pins"), base), base, d)
	}
	if err != nil && !errors.Is(err, client.ErrPinMismatch) {
		return nil, err
	}
	if err != nil {
		a := Alert{Rule: "pins-changed", Severity: "critical", Platform: base, Time: m.cfg.Now().UTC(),
			Detail: err.Error(), once: digest([]byte(err.Error()))}
		added, cerr := m.commit(ctx, []Alert{a}, "", nil, nil)
		return added, errors.Join(err, cerr)
	}
	m.mu.Lock()
	m.endpointKeys[base] = pins.EndpointKey
	m.mu.Unlock()
	var pv note.Verifier
	if pins.PolicyKey != "" {
		if pv, err = note.NewVerifier(pins.PolicyKey); err != nil {
			return nil, fmt.Errorf("the pinned policy key: %w", err)
		}
	}
	if m.homes[base] == nil && pv != nil {
		// After a restart: the policy read before it.
		b, err := m.store.state(ctx, "policy "+base)
		if err != nil {
			return nil, err
		}
		if b != nil {
			if p, err := residency.Open(b, pv); err == nil {
				m.homes[base], m.policies[base] = HomeMap(p), b
			}
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
	a, err := m.reproductions(ctx, base)
	raised = append(raised, a...)
	if err != nil {
		errs = append(errs, fmt.Errorf("rebuild verdicts: %w", err))
	}
	a, err = m.reconcileUnwraps(ctx, base)
	raised = append(raised, a...)
	if err != nil {
		errs = append(errs, fmt.Errorf("custody's counts: %w", err))
	}
	return raised, errors.Join(errs...)
}

// lagging returns a monitor-lagging alert for each log of platform base
// that the monitor has not followed to a checkpoint for StaleAfter,
// whatever the cause (a platform that answers too slowly to finish a pass
// in PlatformTimeout, a log that fails to read): what was logged since is
// not reviewed. One alert per time the log was last caught up.
func (m *Monitor) lagging(base string) []Alert {
	now := m.cfg.Now()
	m.mu.Lock()
	var logs []*followed
	for _, byKey := range m.logs {
		for _, f := range byKey {
			if f.platform == base {
				logs = append(logs, f)
			}
		}
	}
	m.mu.Unlock()
	var out []Alert
	for _, f := range logs {
		at, ok := m.caughtUp[f.key]
		if !ok {
			m.caughtUp[f.key] = now // counted from the first time seen
			continue
		}
		if now.Sub(at) <= m.cfg.StaleAfter {
			continue
		}
		out = append(out, Alert{Rule: "monitor-lagging", Severity: "warning", Platform: base, Log: f.name, Origin: f.log.Origin(), Time: now.UTC(),
			Detail: fmt.Sprintf("the monitor has not followed this log to its checkpoint since %s; what was logged since is not reviewed", at.UTC().Format(time.RFC3339)),
			once:   "lagging " + f.key + " " + at.UTC().Format(time.RFC3339Nano)})
	}
	return out
}

// discoveryError is a platform whose discovery document could not be read.
type discoveryError struct{ err error }

func (e *discoveryError) Error() string { return e.err.Error() }
func (e *discoveryError) Unwrap() error { return e.err }

// outage notes whether what id names is failing now and returns the alert
// mk makes once it has been failing for StaleAfter: one alert per outage
// (its once is id and when the outage began). It returns nothing while
// what id names works (forgetting it); the next failure starts a new
// outage. Outages are saved with the health state (see healthState).
func (m *Monitor) outage(id string, failing bool, mk func(since time.Time) Alert) []Alert {
	now := m.cfg.Now()
	if !failing {
		delete(m.down, id)
		return nil
	}
	since, ok := m.down[id]
	if !ok {
		m.down[id] = now
		return nil
	}
	if now.Sub(since) <= m.cfg.StaleAfter {
		return nil
	}
	a := mk(since)
	a.Time = now.UTC()
	a.once = id + " " + since.UTC().Format(time.RFC3339Nano)
	return []Alert{a}
}

var errChunk = errors.New("chunk full")

// maxSkew is how far ahead of the monitor's clock an entry's time may be
// before the threshold windows count it as of the monitor's time.
const maxSkew = 5 * time.Minute

// checkBatch is how many entries are checked at once, on every core.
const checkBatch = 1024

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
		// The entries are checked by one goroutine, batch after batch in
		// the log's order, while the follower reads and proves the next
		// ones: checking and following overlap.
		batches := make(chan []checked, 2)
		checkedAll := make(chan struct{})
		go func() {
			defer close(checkedAll)
			for b := range batches {
				pending = append(pending, m.check(base, name, l.Origin(), pv, b)...)
			}
		}()
		// The policy log's entries change the policy that the next ones
		// are checked under: one at a time.
		batchSize := checkBatch
		if name == "policy" {
			batchSize = 1
		}
		batch := make([]checked, 0, batchSize)
		flush := func() {
			if len(batch) > 0 {
				batches <- batch
				batch = make([]checked, 0, batchSize)
			}
		}
		// A full chunk asks the follower to pause: it hands out the rest
		// of what it read and proved with the entry, and stops there, so
		// that no entry is read twice. A chunk twice full refuses the next
		// entry, which the follower then hands out first in the next
		// chunk: every entry is checked once, in the chunk whose state
		// says it was read.
		n := 0
		cp, err := f.Update(ctx, func(index uint64, entry []byte) error {
			if n >= 2*m.cfg.Chunk {
				return errChunk
			}
			n++
			batch = append(batch, checked{index: index, entry: entry})
			if len(batch) >= batchSize {
				flush()
			}
			if n >= m.cfg.Chunk {
				return client.ErrPause
			}
			return nil
		})
		if errors.Is(err, client.ErrPause) {
			err = errChunk
		}
		if err == nil || errors.Is(err, errChunk) {
			flush()
		}
		// Whatever the follower's error, what was handed to the checker
		// is checked before anything below reads the monitor's state.
		close(batches)
		<-checkedAll
		if err != nil && !errors.Is(err, errChunk) {
			// What this chunk counted in the threshold windows is
			// forgotten with it: the next pass counts it again.
			err = errors.Join(err, m.rollback())
		}
		var fork *client.ForkError
		if errors.As(err, &fork) {
			a := Alert{Rule: "log-fork", Severity: "critical", Platform: base, Log: name, Origin: l.Origin(), Time: m.cfg.Now().UTC(),
				Detail:      "the log served a checkpoint that contradicts one the monitor verified before: " + fork.Reason,
				Checkpoints: []string{string(fork.Seen), string(fork.Now)}, once: forkOnce(fork.Seen, fork.Now)}
			added, cerr := m.commit(ctx, []Alert{a}, "", nil, nil)
			return append(raised, added...), errors.Join(err, cerr)
		}
		if errors.Is(err, tlog.ErrTreeMismatch) {
			// The log serves entries (or tiles) that its signed
			// checkpoint does not commit to: it hides or rewrites what
			// it logged. Nothing it served is used.
			a := Alert{Rule: "log-tampered", Severity: "critical", Platform: base, Log: name, Origin: l.Origin(), Time: m.cfg.Now().UTC(),
				Detail: "the log serves data that its signed checkpoint does not commit to: " + err.Error(), once: "tampered " + digest([]byte(err.Error()))}
			if st := f.State(); st.Checkpoint != nil {
				a.Checkpoints = []string{string(st.Checkpoint)}
			}
			added, cerr := m.commit(ctx, []Alert{a}, "", nil, nil)
			return append(raised, added...), errors.Join(err, cerr)
		}
		if err != nil && !errors.Is(err, errChunk) {
			return raised, err
		}
		if err := m.prove(ctx, l, f.State().Checkpoint, pending); err != nil {
			return raised, errors.Join(err, m.rollback())
		}
		if cp != nil {
			pending = append(pending, m.staleness(base, name, key, l.Origin(), cp.Raw)...)
			pending = append(pending, m.witnesses(base, name, key, l, cp)...)
			if err == nil {
				m.mu.Lock()
				fl := m.logs[l.Origin()][l.KeyHash()]
				m.mu.Unlock()
				pending = append(pending, m.recheck(ctx, fl, f.State())...)
			}
		}
		state, jerr := json.Marshal(f.State())
		if jerr != nil {
			return raised, jerr
		}
		windows, werr := m.cfg.Rules.Windows()
		if werr != nil {
			return raised, werr
		}
		ledgerState, lerr := m.ledger.save()
		if lerr != nil {
			return raised, lerr
		}
		extra := map[string][]byte{"windows": windows, "ledger": ledgerState}
		if name == "policy" && m.policies[base] != nil {
			extra["policy "+base] = m.policies[base]
		}
		added, cerr := m.commit(ctx, pending, key, state, extra, chunkRows{releases: m.releases, subjects: m.subjects})
		raised = append(raised, added...)
		if cerr != nil {
			return raised, errors.Join(cerr, m.rollback())
		}
		m.windows, m.ledgerSaved, m.releases, m.subjects = windows, ledgerState, nil, nil
		if err == nil {
			m.caughtUp[key] = m.cfg.Now()
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
	if !ok || !bytes.Equal(s.Checkpoint, raw) {
		m.fresh[key] = seen{Checkpoint: bytes.Clone(raw), Since: now}
		return nil
	}
	if age := now.Sub(s.Since); age > m.cfg.StaleAfter {
		return []Alert{{Rule: "log-stale", Severity: "warning", Platform: base, Log: name, Origin: origin, Time: now.UTC(),
			Detail:      fmt.Sprintf("the log has served the same checkpoint for %s (since %s); it promises a fresh one every minute", age.Round(time.Second), s.Since.UTC().Format(time.RFC3339)),
			Checkpoints: []string{string(raw)}, once: "stale " + digest(raw)}}
	}
	return nil
}

// rebuildersFor reports whether any rebuilder is pinned for platform base.
func (m *Monitor) rebuildersFor(base string) bool {
	for _, r := range m.cfg.Rebuilders {
		if r.Platform == base {
			return true
		}
	}
	return false
}

// rollback forgets what the chunks since the last commit counted: the
// threshold windows and the dataset ledger go back to what was committed.
func (m *Monitor) rollback() error {
	l, err := loadLedger(m.ledgerSaved)
	if err != nil {
		return err
	}
	m.ledger, m.releases, m.subjects = l, nil, nil
	return m.cfg.Rules.SetWindows(m.windows)
}

// witnesses returns a witness-silent alert for each witness of the log's
// policy that has not cosigned its checkpoints for StaleAfter while the
// log went on publishing under the others (a witness down, or refusing
// the log): the quorum has less to spare. A log that no quorum cosigns
// does not publish, and is log-stale instead.
func (m *Monitor) witnesses(base, name, key string, l *client.Log, cp *tlog.Checkpoint) []Alert {
	var out []Alert
	for _, w := range l.Policy.Witnesses {
		_, cosigned := cp.CosignedAt[w.Name]
		out = append(out, m.outage("witness "+key+" "+w.Name, !cosigned, func(since time.Time) Alert {
			return Alert{Rule: "witness-silent", Severity: "warning", Platform: base, Log: name, Origin: l.Origin(), Checkpoints: []string{string(cp.Raw)},
				Detail: fmt.Sprintf("witness %s (%s) has not cosigned the log's checkpoints since %s: it is unreachable or refuses them; the log publishes under its other witnesses", w.Name, w.URL, since.UTC().Format(time.RFC3339))}
		})...)
	}
	return out
}

// prove gives each alert about an entry a c2sp.org/tlog-proof of it in the
// last checkpoint the follower verified: an inclusion proof built from the
// log's hash tiles alone, checked against the bytes the follower proved
// (the entry is not read again).
func (m *Monitor) prove(ctx context.Context, l *client.Log, checkpoint []byte, alerts []Alert) error {
	var cp *tlog.Checkpoint
	for i := range alerts {
		a := &alerts[i]
		if a.Index == nil {
			continue
		}
		if cp == nil {
			c, err := l.Kept(checkpoint)
			if err != nil {
				return fmt.Errorf("the follower's checkpoint: %w", err)
			}
			cp = c
		}
		hashes, err := tlog.InclusionProof(ctx, l.Fetcher, *a.Index, cp.Size)
		if err != nil {
			return fmt.Errorf("proving entry %d for an alert: %w", *a.Index, err)
		}
		p := &tlog.Proof{Index: *a.Index, Hashes: hashes, Checkpoint: cp.Raw}
		if _, err := p.Verify(tlog.LeafHash(a.proven), l.Verifier, l.Policy); err != nil {
			return fmt.Errorf("entry %d: the log's hash tiles do not prove it in its checkpoint: %w", *a.Index, err)
		}
		a.Proof = string(p.Marshal())
	}
	return nil
}

// checked is one proven entry, parsed and with the rules' expressions
// evaluated (see Monitor.prepare), waiting to be settled in order.
type checked struct {
	index uint64
	entry []byte
	pe    parsedEntry
	err   error
	ev    Event
	prep  prepared
}

// check parses proven entries and evaluates the rules' expressions on
// them on every core, then settles them in order (threshold windows, the
// dataset ledger, the policy in force) and returns their alerts. The
// entries of one batch are checked under one policy: the policy log's own
// entries come one at a time.
func (m *Monitor) check(base, name, origin string, pv note.Verifier, batch []checked) []Alert {
	home := m.homes[base]
	prep := func(c *checked) {
		c.pe, c.err = parseEntry(name, c.entry, pv)
		if c.err == nil && c.pe.kind != "" {
			c.ev = Event{Platform: base, Log: name, Index: c.index, Kind: c.pe.kind, Entry: c.pe.obj, Time: c.pe.at, Home: home}
			c.prep = m.cfg.Rules.prepare(&c.ev)
		}
	}
	if workers := min(runtime.GOMAXPROCS(0), len(batch)/64); workers > 1 {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < len(batch); i += workers {
					prep(&batch[i])
				}
			})
		}
		wg.Wait()
	} else {
		for i := range batch {
			prep(&batch[i])
		}
	}
	var out []Alert
	for i := range batch {
		out = append(out, m.settle(base, name, origin, pv, &batch[i])...)
	}
	return out
}

// settle returns the alerts of one checked entry.
func (m *Monitor) settle(base, name, origin string, pv note.Verifier, c *checked) []Alert {
	now := m.cfg.Now().UTC()
	alert := func(rule, severity, detail string) Alert {
		i := c.index
		return Alert{Rule: rule, Severity: severity, Platform: base, Log: name, Origin: origin, Index: &i, Time: now, Entry: entryText(c.entry), Detail: detail, proven: c.entry}
	}
	switch {
	case c.err != nil:
		return []Alert{alert("malformed-entry", "critical", c.err.Error())}
	case c.pe.kind == "":
		return []Alert{alert("unknown-entry", "notice", "an entry of a kind this monitor does not know (a newer platform may log kinds it does not know yet)")}
	}
	var out []Alert
	if shrank := m.ledger.note(base, name, c.index, c.pe); shrank != "" {
		out = append(out, alert("dataset-shrank", "critical", shrank))
	}
	if r := c.pe.record; r != nil && m.cfg.PseudonymKeys[base] != nil {
		for _, p := range r.Subjects {
			m.subjects = append(m.subjects, subjectRow{platform: base, log: name, pseudonym: p, index: c.index})
		}
	}
	if c.pe.release != nil && m.rebuildersFor(base) {
		m.releases = append(m.releases, releaseRow{platform: base, log: name, origin: origin, index: c.index,
			name: c.pe.release.Name, version: c.pe.release.Version, digest: release.Digest(c.entry), seen: m.cfg.Now(), entry: c.entry})
	}
	if c.pe.kind == "policy" {
		if p, err := residency.Open(c.entry, pv); err == nil {
			m.homes[base] = HomeMap(p)
			m.policies[base] = c.entry
		}
	}
	// Windows count by the entries' own times, which the vendor writes:
	// an entry dated ahead of the monitor's clock counts as of now, so
	// that it cannot sit in a window for ever.
	if limit := now.Add(maxSkew); c.ev.Time.After(limit) {
		c.ev.Time = limit
	}
	for _, mt := range m.cfg.Rules.settle(&c.ev, c.prep) {
		detail := mt.Rule.Description
		if mt.Count > 0 {
			detail = fmt.Sprintf("%s (%d matches within %s by %s)", detail, mt.Count, mt.Rule.Threshold.Window, mt.GroupKey)
		}
		out = append(out, alert(mt.Rule.Name, mt.Rule.Severity, detail))
	}
	for _, err := range c.prep.errs {
		a := alert("rule-failed", "warning", err.Error())
		var ee *EvalError
		if errors.As(err, &ee) {
			a.once = fmt.Sprintf("entry %d %s", c.index, ee.Rule)
		}
		out = append(out, a)
	}
	return out
}

// parsedEntry is an entry as its public parser read it: its kind (""
// for one this monitor does not know), its JSON object as rules see it,
// its own time, and for access records and commitments the parsed value.
type parsedEntry struct {
	kind       string
	obj        any
	at         time.Time
	record     *access.Record
	commitment *access.Commitment
	release    *release.Entry
}

// parseEntry parses an entry of the log name with its public parser. err
// is set for an entry that claims a kind and does not parse as one.
func parseEntry(name string, entry []byte, pv note.Verifier) (pe parsedEntry, err error) {
	switch {
	case name == "policy":
		if !residency.IsPolicyEntry(entry) {
			return pe, errors.New("not a residency policy (no policy header)")
		}
		if pv == nil {
			return pe, errors.New("the platform publishes no policy key to check the policy with")
		}
		p, err := residency.Open(entry, pv)
		if err != nil {
			return pe, err
		}
		b, err := json.Marshal(p)
		if err != nil {
			return pe, err
		}
		return parsedEntry{kind: "policy", obj: jsonObject(b)}, nil
	case name == "release":
		if pe.release, err = release.ParseEntry(entry); err != nil {
			return parsedEntry{}, err
		}
		pe.kind = "release"
	case name == "review":
		if _, err := review.Parse(entry); err != nil {
			return parsedEntry{}, err
		}
		pe.kind = review.Kind
	case strings.HasPrefix(name, "access-"):
		pe.kind = access.EntryKind(entry)
		switch pe.kind {
		case access.KindAccess:
			// The common case, read without a second decoding: the
			// rules see the record as its JSON would decode.
			r, err := access.Parse(entry)
			if err != nil {
				return parsedEntry{}, err
			}
			return parsedEntry{kind: pe.kind, obj: newRecordView(r, entry), at: r.Time, record: r}, nil
		case access.KindGrant:
			_, err = access.ParseGrant(entry)
		case access.KindCommitment:
			pe.commitment, err = access.ParseCommitment(entry)
		case access.KindDeniedSummary:
			_, err = access.ParseDeniedSummary(entry)
		default:
			// A kind this monitor does not know is still an object with
			// a version and a kind; anything else is malformed.
			var env struct {
				V    *int    `json:"v"`
				Kind *string `json:"kind"`
			}
			if json.Unmarshal(entry, &env) != nil || env.V == nil || env.Kind == nil {
				return parsedEntry{}, errors.New(`not an access-log entry: not a JSON object with a version "v" and a "kind"`)
			}
			return parsedEntry{}, nil
		}
		if err != nil {
			return parsedEntry{}, err
		}
	default:
		return pe, nil
	}
	obj := jsonObject(entry)
	pe.obj = obj
	if s, ok := obj["time"].(string); ok {
		pe.at, _ = time.Parse(time.RFC3339Nano, s)
	}
	return pe, nil
}

// entryTime is an access record's time as its entry writes it: in a
// canonical entry, the 24 bytes after its prefix.
func entryTime(r *access.Record, entry []byte) string {
	const prefix = `{"v":1,"kind":"access","time":"`
	if len(entry) > len(prefix)+24 && string(entry[:len(prefix)]) == prefix {
		return string(entry[len(prefix) : len(prefix)+24])
	}
	return r.Time.UTC().Format("2006-01-02T15:04:05.000Z")
}

// recordObject is an access record as encoding/json would decode its
// canonical encoding into a map: numbers are float64, an absent optional
// field is absent (TestRecordObject holds the two together).
func recordObject(r *access.Record, time string) map[string]any {
	subjects := make([]any, len(r.Subjects))
	for i, s := range r.Subjects {
		subjects[i] = s
	}
	m := map[string]any{
		"v":         1.0,
		"kind":      access.KindAccess,
		"time":      time,
		"region":    r.Region,
		"principal": map[string]any{"id": r.Principal.ID, "role": r.Principal.Role, "location": r.Principal.Location},
		"action":    r.Action,
		"resource": map[string]any{"dataset": r.Resource.Dataset, "query": r.Resource.Query,
			"count": float64(r.Resource.Count), "digest": r.Resource.Digest},
		"justification": map[string]any{"code": r.Justification.Code, "detail": r.Justification.Detail},
		"subjects":      subjects,
		"request":       r.Request,
		"outcome":       r.Outcome,
	}
	if len(r.Keys) > 0 {
		keys := make([]any, len(r.Keys))
		for i, k := range r.Keys {
			keys[i] = k
		}
		m["keys"] = keys
	}
	if r.Reason != "" {
		m["reason"] = r.Reason
	}
	return m
}

// jsonObject decodes an entry that its parser accepted as JSON.
func jsonObject(b []byte) map[string]any {
	var m map[string]any
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&m); err != nil || m == nil {
		return map[string]any{}
	}
	return m
}

// forkOnce names a fork by the checkpoint it contradicts and the root the
// log now claims, so that a forked log republishing its other view every
// minute is one alert, not one a minute.
func forkOnce(seen, now []byte) string {
	lines := bytes.SplitN(now, []byte("\n"), 4)
	root := now
	if len(lines) >= 3 {
		root = lines[2]
	}
	return "fork " + digest(seen) + " " + digest(root)
}

func digest(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Alerts returns the alerts q selects, oldest first.
func (m *Monitor) Alerts(ctx context.Context, q AlertQuery) ([]Alert, error) {
	return m.store.alerts(ctx, q)
}
