package monitor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	tclient "github.com/transparency-dev/tessera/client"

	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/keys"
)

// Acknowledgements.
//
// The supervisor acknowledges an alert with a note: what it found, what it
// did. An acknowledgement is itself logged, in the monitor's own
// transparency log of acknowledgements (Dir/acknowledgements, served under
// /v1/acknowledgements/), before it is kept beside the alert: a supervisor
// cannot quietly acknowledge, nor later deny having acknowledged, an alert
// that anyone can read.

// An Acknowledgement is the supervisor's note on an alert, as logged.
type Acknowledgement struct {
	// Index is its entry in the acknowledgement log; Entry the entry.
	Index uint64    `json:"index"`
	Time  time.Time `json:"time"`
	Note  string    `json:"note"`
	Entry string    `json:"entry"`
}

// ackEntry is an acknowledgement log entry. Its fields are in a fixed
// order; AlertDigest binds it to the alert's exact JSON.
type ackEntry struct {
	V           int       `json:"v"`
	Kind        string    `json:"kind"`
	Time        time.Time `json:"time"`
	Monitor     string    `json:"monitor"`
	Alert       int64     `json:"alert"`
	AlertDigest string    `json:"alert_digest"`
	Rule        string    `json:"rule"`
	Platform    string    `json:"platform,omitempty"`
	Log         string    `json:"log,omitempty"`
	Index       *uint64   `json:"index,omitempty"`
	Note        string    `json:"note"`
}

// MaxNote bounds an acknowledgement's note.
const MaxNote = 2000

// checkNote refuses a note that is empty, too long, not UTF-8 or holds
// characters other than printable ones and line breaks.
func checkNote(n string) error {
	switch {
	case strings.TrimSpace(n) == "":
		return errors.New("the note is empty: say what was found and done")
	case len(n) > MaxNote:
		return fmt.Errorf("the note is %d bytes, at most %d", len(n), MaxNote)
	case !utf8.ValidString(n):
		return errors.New("the note is not UTF-8")
	}
	for _, c := range n {
		if !unicode.IsPrint(c) && c != '\n' {
			return fmt.Errorf("the note holds %U, which is not a printable character", c)
		}
	}
	return nil
}

const acksSchema = `
CREATE TABLE IF NOT EXISTS acks (
	id INTEGER PRIMARY KEY,
	alert INTEGER NOT NULL,
	idx INTEGER NOT NULL,
	time INTEGER NOT NULL,
	note TEXT NOT NULL,
	entry BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS acks_alert ON acks (alert);`

// Acknowledge logs the supervisor's note on alert id, waits until the
// acknowledgement log has published a checkpoint that covers it, keeps it
// beside the alert and returns it.
func (m *Monitor) Acknowledge(ctx context.Context, id int64, note string) (*Acknowledgement, error) {
	if err := checkNote(note); err != nil {
		return nil, fault.Mark(fault.ErrInvalid, err)
	}
	alerts, err := m.store.alerts(ctx, AlertQuery{ID: id, Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(alerts) == 0 {
		return nil, fault.New(fault.ErrNotFound, fmt.Sprintf("no alert %d", id))
	}
	a := alerts[0]
	d, err := alertDigest(a)
	if err != nil {
		return nil, err
	}
	now := m.cfg.Now().UTC().Truncate(time.Millisecond)
	entry, err := json.Marshal(ackEntry{V: 1, Kind: "acknowledgement", Time: now, Monitor: m.id, Alert: a.ID, AlertDigest: d,
		Rule: a.Rule, Platform: a.Platform, Log: a.Log, Index: a.Index, Note: note})
	if err != nil {
		return nil, err
	}
	index, err := m.acks.Append(ctx, entry)
	if err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, fmt.Errorf("logging the acknowledgement: %w", err))
	}
	// Logged: it is kept whether or not the supervisor waits for the
	// answer, so that what the log holds is shown with the alert.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	// Published (and witnessed, under a witness policy) before it counts.
	if _, err := m.acks.Prove(ctx, index); err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, fmt.Errorf("publishing the acknowledgement: %w", err))
	}
	if _, err := m.store.db.ExecContext(ctx, `INSERT INTO acks (alert, idx, time, note, entry) VALUES (?, ?, ?, ?, ?)`, a.ID, int64(index), now.UnixMicro(), note, entry); err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, fmt.Errorf("keeping the acknowledgement: %w", err))
	}
	return &Acknowledgement{Index: index, Time: now, Note: note, Entry: string(entry)}, nil
}

// recoverAcks keeps every acknowledgement the log holds that the store
// does not: a monitor stopped between logging one and keeping it shows it
// after its restart. The log is the record; the table is its index.
func (m *Monitor) recoverAcks(ctx context.Context) error {
	cp, err := m.acks.Checkpoint(ctx)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // a new log, with nothing in it yet
	}
	if err != nil || cp.Size == 0 {
		return err
	}
	var kept int64
	if err := m.store.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM acks`).Scan(&kept); err != nil {
		return fault.Mark(fault.ErrUnavailable, err)
	}
	if uint64(kept) >= cp.Size {
		return nil
	}
	for bi := uint64(0); bi*256 < cp.Size; bi++ {
		b, err := tclient.GetEntryBundle(ctx, m.acks.Reader().ReadEntryBundle, bi, cp.Size)
		if err != nil {
			return fmt.Errorf("reading the acknowledgement log: %w", err)
		}
		for i, entry := range b.Entries {
			index := bi*256 + uint64(i)
			var e ackEntry
			if err := json.Unmarshal(entry, &e); err != nil || e.Kind != "acknowledgement" {
				// Only a damaged disk writes such an entry: said, not fatal.
				m.cfg.Logger.Error("monitor: an acknowledgement log entry is not an acknowledgement; not kept", "index", index)
				continue
			}
			// The entry binds the alert by its digest: an alert of that id
			// whose JSON differs (a store restored from elsewhere, say)
			// is not the alert acknowledged.
			alerts, err := m.store.alerts(ctx, AlertQuery{ID: e.Alert, Limit: 1})
			if err != nil {
				return err
			}
			if len(alerts) == 0 {
				m.cfg.Logger.Error("monitor: an acknowledgement log entry names an alert the monitor does not hold; not kept", "index", index, "alert", e.Alert)
				continue
			}
			if d, err := alertDigest(alerts[0]); err != nil || d != e.AlertDigest {
				m.cfg.Logger.Error("monitor: an acknowledgement log entry names an alert whose JSON differs from the one acknowledged; not kept", "index", index, "alert", e.Alert)
				continue
			}
			if _, err := m.store.db.ExecContext(ctx, `INSERT INTO acks (alert, idx, time, note, entry) SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM acks WHERE idx = ?)`,
				e.Alert, int64(index), e.Time.UnixMicro(), e.Note, entry, int64(index)); err != nil {
				return fault.Mark(fault.ErrUnavailable, err)
			}
		}
	}
	return nil
}

// alertDigest is "sha256:" and the hex SHA-256 of a's JSON without its
// acknowledgements: what an acknowledgement binds.
func alertDigest(a Alert) (string, error) {
	a.Acknowledgements = nil
	body, err := json.Marshal(a)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(body)
	return "sha256:" + hex.EncodeToString(h[:]), nil
}

// acknowledgements fills in the acknowledgements of alerts.
func (s *store) acknowledgements(ctx context.Context, alerts []Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	byID := map[int64]*Alert{}
	args := make([]any, len(alerts))
	for i := range alerts {
		byID[alerts[i].ID] = &alerts[i]
		args[i] = alerts[i].ID
	}
	rows, err := s.db.QueryContext(ctx, `SELECT alert, idx, time, note, entry FROM acks WHERE alert IN (?`+strings.Repeat(", ?", len(alerts)-1)+`) ORDER BY id`, args...)
	if err != nil {
		return fault.Mark(fault.ErrUnavailable, err)
	}
	defer rows.Close()
	for rows.Next() {
		var alert, idx, at int64
		var ack Acknowledgement
		var entry []byte
		if err := rows.Scan(&alert, &idx, &at, &ack.Note, &entry); err != nil {
			return fault.Mark(fault.ErrUnavailable, err)
		}
		ack.Index, ack.Time, ack.Entry = uint64(idx), time.UnixMicro(at).UTC(), string(entry)
		if a := byID[alert]; a != nil {
			a.Acknowledgements = append(a.Acknowledgements, ack)
		}
	}
	return fault.Mark(fault.ErrUnavailable, rows.Err())
}

// serveAcknowledge is POST /v1/alerts/{id}/acknowledgements, for the
// supervisor: {"note": "…"}.
func (m *Monitor) serveAcknowledge(w http.ResponseWriter, r *http.Request) {
	if m.cfg.SupervisorToken == "" || !keys.BearerEqual(r, m.cfg.SupervisorToken) {
		httpapi.Unauthorized(w, "acknowledging an alert needs the supervisor's token")
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		httpapi.Error(w, http.StatusNotFound, "no such alert: an alert's id is a positive decimal")
		return
	}
	body, ok := httpapi.ReadLimited(w, r, 4*MaxNote+64)
	if !ok {
		return
	}
	note, err := parseAckBody(body)
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	ack, err := m.Acknowledge(r.Context(), id, note)
	if err != nil {
		httpapi.Fail(w, m.cfg.Logger, err, "acknowledging the alert failed")
		return
	}
	httpapi.JSON(w, ack)
}

// parseAckBody reads an acknowledgement's body, {"note": "…"}, and checks
// the note.
func parseAckBody(body []byte) (string, error) {
	var req struct {
		Note string `json:"note"`
	}
	if err := httpapi.DecodeStrict(body, &req); err != nil {
		return "", fmt.Errorf("want {\"note\": \"…\"}: %w", err)
	}
	return req.Note, checkNote(req.Note)
}

// About is what GET /v1/monitor says of the monitor: its id and its
// acknowledgement log.
type About struct {
	ID               string      `json:"id"`
	Acknowledgements AboutAckLog `json:"acknowledgements"`
	Platforms        []string    `json:"platforms"`
}

// AboutAckLog names the acknowledgement log: its origin, its verifier key
// and where its tiles are, relative to the monitor's base URL.
type AboutAckLog struct {
	Origin        string `json:"origin"`
	VKey          string `json:"vkey"`
	Path          string `json:"path"`
	WitnessPolicy string `json:"witness_policy"`
}

func (m *Monitor) serveAbout(w http.ResponseWriter, r *http.Request) {
	httpapi.JSON(w, About{ID: m.id, Platforms: m.cfg.Platforms,
		Acknowledgements: AboutAckLog{Origin: m.acks.Origin(), VKey: m.acks.VKey(), Path: "v1/acknowledgements/", WitnessPolicy: m.ackPolicy()}})
}

// ackPolicy is the acknowledgement log's witness policy.
func (m *Monitor) ackPolicy() string {
	if m.cfg.AckWitnessPolicy == nil {
		return "quorum none\n"
	}
	return string(m.cfg.AckWitnessPolicy)
}
