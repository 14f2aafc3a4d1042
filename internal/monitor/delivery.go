package monitor

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/backoff"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/keys"
)

// Delivery.
//
// Every alert goes to every target (a webhook or a hook command) in the
// order the monitor raised them. Each target has a cursor in the store:
// the id of the last alert it acknowledged. A deliverer sends the alerts
// after its cursor one at a time and moves the cursor, in its own
// transaction, only after the target acknowledged one (a 2xx, or exit
// status 0). An alert is committed before it is sent, so none is lost; a
// monitor killed between a target's acknowledgement and the cursor's
// commit sends that one alert again when it restarts, with the same
// webhook-id, which is how Standard Webhooks receivers recognise a
// message they already have. A target added to a monitor that already
// raised alerts starts after them.

// A target receives alerts.
type target struct {
	name string
	send func(ctx context.Context, id string, body []byte) error
}

// WebhookSecretFile is where, under the monitor's directory, the secret
// that signs its webhooks is kept when Config.WebhookSecret is empty.
const WebhookSecretFile = "webhook.secret"

// LoadWebhookSecret returns the Standard Webhooks secret ("whsec_" and the
// base64 of 32 random bytes) kept in dir, making one (0600) if there is
// none yet.
func LoadWebhookSecret(dir string) (string, error) {
	path := filepath.Join(dir, WebhookSecretFile)
	b, err := os.ReadFile(path)
	if err == nil {
		s := strings.TrimSpace(string(b))
		if _, err := standardwebhooks.NewWebhook(s); err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		return s, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	s := "whsec_" + base64.StdEncoding.EncodeToString(randomBytes(32))
	// Written whole or not at all: a receiver's operator may read it the
	// moment it appears.
	if err := keys.WriteFileAtomic(path, []byte(s+"\n"), 0o600); err != nil {
		return "", err
	}
	return s, nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = crand.Read(b) // never fails (crypto/rand)
	return b
}

// CheckWebhookURL refuses a webhook address that is not an absolute http
// or https URL.
func CheckWebhookURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook %q: want an http or https URL", s)
	}
	if u.User != nil {
		return fmt.Errorf("webhook %q: credentials in a URL end up in logs; the body is signed instead", s)
	}
	return nil
}

// webhook returns a target that POSTs each alert to u, signed as Standard
// Webhooks say (webhook-id, webhook-timestamp, webhook-signature).
func webhook(u string, wh *standardwebhooks.Webhook, hc *http.Client, now func() time.Time) target {
	return target{name: "webhook " + u, send: func(ctx context.Context, id string, body []byte) error {
		ts := now()
		sig, err := wh.Sign(id, ts, body)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "vitrine-monitor")
		req.Header.Set(standardwebhooks.HeaderWebhookID, id)
		req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
		req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		text, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode/100 == 2 {
			return nil
		}
		err = fmt.Errorf("%s answered %s: %q", u, resp.Status, bytes.TrimSpace(text))
		if c := resp.StatusCode; c/100 == 4 && c != http.StatusRequestTimeout && c != http.StatusTooManyRequests {
			// The receiver refuses this alert itself (too large, not
			// acceptable, a bad signature): see maxRefusals.
			err = &refusedError{err}
		}
		return backoff.WithRetryAfter(err, client.ParseRetryAfter(resp.Header.Get("Retry-After"), now()))
	}}
}

// hookTimeout bounds one run of the hook command.
const hookTimeout = time.Minute

// hookCommand returns a target that runs path (no shell, no arguments)
// for each alert, with the alert's JSON on its standard input and its
// delivery id in VITRINE_ALERT_ID; exit status 0 acknowledges it.
func hookCommand(path string) target {
	return target{name: "command " + path, send: func(ctx context.Context, id string, body []byte) error {
		ctx, cancel := context.WithTimeout(ctx, hookTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, path)
		cmd.Stdin = bytes.NewReader(body)
		cmd.Env = append(os.Environ(), "VITRINE_ALERT_ID="+id)
		var out bytes.Buffer
		// One writer for both: exec then copies them in one goroutine
		// (two writers over one buffer would race).
		lb := &limitedBuffer{&out, 4096}
		cmd.Stdout, cmd.Stderr = lb, lb
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w: %q", path, err, bytes.TrimSpace(out.Bytes()))
		}
		return nil
	}}
}

// limitedBuffer keeps the first n bytes written to it and drops the rest.
type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// refusedError is a receiver's refusal of an alert (a 4xx other than 408
// and 429), as opposed to its being out of reach.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// maxRefusals is how many times in a row a target may refuse one alert
// before the monitor sets it aside for that target, raising a
// delivery-failed alert, so that one alert the receiver will never take
// (too large for it, say) does not hold back every alert after it. Out of
// reach, a target is retried for as long as it takes.
const maxRefusals = 10

// deliveryRetry spaces the attempts at an alert a target refused: from 1s,
// doubling to 5 minutes, for as long as it takes.
var deliveryRetry = backoff.Policy{Min: time.Second, Max: 5 * time.Minute}

// deliveryPoll is how often an idle deliverer looks for alerts that
// another process (vitrine monitor test-alert) added.
const deliveryPoll = time.Second

// deliver sends t every alert after its cursor until ctx ends.
func (m *Monitor) deliver(ctx context.Context, t target, wake <-chan struct{}) {
	var fails backoff.State
	refusals := 0
	for ctx.Err() == nil {
		cursor, err := m.store.cursor(ctx, t.name)
		var next []Alert
		if err == nil {
			next, err = m.store.alerts(ctx, AlertQuery{After: cursor, Limit: 64})
		}
		if err != nil {
			if ctx.Err() == nil {
				m.cfg.Logger.Warn("monitor delivery: reading alerts", "target", t.name, "err", err)
			}
			sleep(ctx, time.Second, nil)
			continue
		}
		if len(next) == 0 {
			sleep(ctx, deliveryPoll, wake)
			continue
		}
		for _, a := range next {
			for {
				body, err := alertBody(a)
				if err != nil {
					m.cfg.Logger.Error("monitor delivery: encoding an alert", "id", a.ID, "err", err)
					return
				}
				actx, cancel := context.WithTimeout(ctx, 2*hookTimeout)
				err = t.send(actx, m.deliveryID(a.ID), body)
				cancel()
				if ctx.Err() != nil {
					return
				}
				if err == nil {
					fails, refusals = backoff.State{}, 0
					if err := m.store.delivered(ctx, t.name, a.ID); err != nil {
						if ctx.Err() == nil {
							m.cfg.Logger.Warn("monitor delivery: saving the cursor", "target", t.name, "err", err)
						}
						sleep(ctx, time.Second, nil)
					}
					break
				}
				var refused *refusedError
				if errors.As(err, &refused) {
					refusals++
				} else {
					refusals = 0
				}
				if refusals >= maxRefusals {
					refusals = 0
					fails = backoff.State{}
					m.cfg.Logger.Error("monitor delivery: the target refuses an alert; setting it aside", "target", t.name, "alert", a.ID, "err", err)
					if a.Rule != "delivery-failed" {
						detail := fmt.Sprintf("%s refused alert %d (%s) %d times in a row and no longer gets it; it is at GET /v1/alerts/%d: %v", t.name, a.ID, a.Rule, maxRefusals, a.ID, err)
						if _, rerr := m.Raise(ctx, "delivery-failed", "warning", detail, fmt.Sprintf("%s %d", t.name, a.ID)); rerr != nil && ctx.Err() == nil {
							m.cfg.Logger.Warn("monitor delivery: raising delivery-failed", "err", rerr)
						}
					}
					if err := m.store.delivered(ctx, t.name, a.ID); err != nil && ctx.Err() == nil {
						m.cfg.Logger.Warn("monitor delivery: saving the cursor", "target", t.name, "err", err)
					}
					break
				}
				wait := fails.Next(deliveryRetry, err, rand.Float64())
				m.cfg.Logger.Warn("monitor delivery failed; retrying", "target", t.name, "alert", a.ID, "attempt", fails.Failures, "wait", wait, "err", err)
				if serr := m.store.failed(ctx, t.name, fails.Failures, err.Error()); serr != nil && ctx.Err() == nil {
					m.cfg.Logger.Warn("monitor delivery: saving the failure", "target", t.name, "err", serr)
				}
				sleep(ctx, wait, nil)
				if ctx.Err() != nil {
					return
				}
			}
		}
	}
}

// alertBody is the body a target gets: the alert's JSON, without the
// HTML escaping that would make an entry full of '<' six times its size.
func alertBody(a Alert) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(a); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// deliveryID is an alert's webhook-id: the monitor's own id and the
// alert's, the same at every attempt and after a restart.
func (m *Monitor) deliveryID(alert int64) string {
	return fmt.Sprintf("msg_%s_%d", m.id, alert)
}

// sleep waits d, or until wake has something, or ctx ends.
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-wake:
	}
}

// A TargetState is how delivery to one target stands.
type TargetState struct {
	Target string `json:"target"`
	// Cursor is the last alert the target acknowledged.
	Cursor int64 `json:"cursor"`
	// Failures are the failed attempts at the alert after Cursor since
	// the last success, and LastError the last one's error.
	Failures  int    `json:"failures"`
	LastError string `json:"last_error,omitempty"`
}

const targetsSchema = `
CREATE TABLE IF NOT EXISTS targets (
	name TEXT PRIMARY KEY,
	cursor INTEGER NOT NULL,
	failures INTEGER NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT ''
);`

// addTarget starts a target that the store does not know after the alerts
// it holds, or, when targets are being replaced (a webhook's address
// changed), where the furthest behind of those left off: a backlog is not
// dropped by fixing an address.
func (s *store) addTarget(ctx context.Context, name string, replaced []string) error {
	from := `(SELECT COALESCE(MAX(id), 0) FROM alerts)`
	args := []any{name}
	if len(replaced) > 0 {
		from = `(SELECT MIN(cursor) FROM targets WHERE name IN (?` + strings.Repeat(", ?", len(replaced)-1) + `))`
		for _, r := range replaced {
			args = append(args, r)
		}
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO targets (name, cursor) VALUES (?, `+from+`) ON CONFLICT DO NOTHING`, args...)
	return fault.Mark(fault.ErrUnavailable, err)
}

// targetNames returns the names of the targets the store knows.
func (s *store) targetNames(ctx context.Context) ([]string, error) {
	ts, err := s.targets(ctx)
	var out []string
	for _, t := range ts {
		out = append(out, t.Target)
	}
	return out, err
}

// keepTargets forgets every target but ts.
func (s *store) keepTargets(ctx context.Context, ts []target) error {
	q, args := `DELETE FROM targets`, []any{}
	if len(ts) > 0 {
		q += ` WHERE name NOT IN (?` + strings.Repeat(", ?", len(ts)-1) + `)`
		for _, t := range ts {
			args = append(args, t.name)
		}
	}
	_, err := s.db.ExecContext(ctx, q, args...)
	return fault.Mark(fault.ErrUnavailable, err)
}

func (s *store) cursor(ctx context.Context, name string) (int64, error) {
	var c int64
	err := s.db.QueryRowContext(ctx, `SELECT cursor FROM targets WHERE name = ?`, name).Scan(&c)
	return c, fault.Mark(fault.ErrUnavailable, err)
}

// delivered moves name's cursor to id (never back).
func (s *store) delivered(ctx context.Context, name string, id int64) error {
	_, err := s.db.ExecContext(ctx, `UPDATE targets SET cursor = MAX(cursor, ?), failures = 0, last_error = '' WHERE name = ?`, id, name)
	return fault.Mark(fault.ErrUnavailable, err)
}

func (s *store) failed(ctx context.Context, name string, failures int, msg string) error {
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	_, err := s.db.ExecContext(ctx, `UPDATE targets SET failures = ?, last_error = ? WHERE name = ?`, failures, msg, name)
	return fault.Mark(fault.ErrUnavailable, err)
}

// Targets returns how delivery to each target stands.
func (s *store) targets(ctx context.Context) ([]TargetState, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, cursor, failures, last_error FROM targets ORDER BY name`)
	if err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, err)
	}
	defer rows.Close()
	var out []TargetState
	for rows.Next() {
		var t TargetState
		if err := rows.Scan(&t.Target, &t.Cursor, &t.Failures, &t.LastError); err != nil {
			return nil, fault.Mark(fault.ErrUnavailable, err)
		}
		out = append(out, t)
	}
	return out, fault.Mark(fault.ErrUnavailable, rows.Err())
}

// instanceID returns the monitor's id, made at its first start: it keeps
// the webhook-ids of two monitors posting to one receiver apart.
func (s *store) instanceID(ctx context.Context) (string, error) {
	b, err := s.state(ctx, "instance")
	if err != nil || b != nil {
		return string(b), err
	}
	id := hex.EncodeToString(randomBytes(8))
	if _, err := s.db.ExecContext(ctx, `INSERT INTO states (key, state) VALUES ('instance', ?) ON CONFLICT DO NOTHING`, []byte(id)); err != nil {
		return "", fault.Mark(fault.ErrUnavailable, err)
	}
	b, err = s.state(ctx, "instance")
	return string(b), err
}

// SendTestAlert raises a test alert in the store of the monitor whose
// directory is dir, for that monitor (running in another process, or
// this one) to deliver, and waits until every target it delivers to
// acknowledged it, calling progress after each look. It returns the alert
// and how delivery stands at the end; ctx bounds the wait.
func SendTestAlert(ctx context.Context, dir string, now time.Time, progress func(alert int64, ts []TargetState)) (Alert, []TargetState, error) {
	if _, err := os.Stat(filepath.Join(dir, "monitor.db")); err != nil {
		return Alert{}, nil, fmt.Errorf("no monitor keeps its alerts in %s: %w", dir, err)
	}
	s, err := openStore(ctx, dir)
	if err != nil {
		return Alert{}, nil, err
	}
	defer s.Close()
	nonce := hex.EncodeToString(randomBytes(8))
	added, err := s.commit(ctx, []Alert{{Rule: "test-alert", Severity: "info", Time: now.UTC(),
		Detail: "a test alert, raised by vitrine monitor test-alert to show that delivery works", once: nonce}}, "", nil, nil)
	if err != nil {
		return Alert{}, nil, err
	}
	a := added[0]
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		ts, err := s.targets(ctx)
		if err != nil {
			return a, nil, err
		}
		if progress != nil {
			progress(a.ID, ts)
		}
		done := true
		for _, st := range ts {
			done = done && st.Cursor >= a.ID
		}
		if done {
			return a, ts, nil
		}
		select {
		case <-ctx.Done():
			return a, ts, ctx.Err()
		case <-t.C:
		}
	}
}
