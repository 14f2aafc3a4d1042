package monitor

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/store/sqlite"
)

// An Alert is what the monitor raises: a rule an entry met, or something
// wrong with a log (a fork, a malformed entry). It carries the entry and a
// C2SP tlog-proof of it, so that anyone can check that the alert is
// grounded in the log without trusting the monitor.
type Alert struct {
	// ID orders alerts as the monitor raised them; it pages GET /v1/alerts.
	ID       int64  `json:"id"`
	Rule     string `json:"rule"`
	Severity string `json:"severity"`
	// Platform is the platform's URL, Log the log's name in its discovery
	// document and Origin the log's origin.
	// All three are absent from an alert about the monitor itself (a
	// heartbeat, a test alert).
	Platform string `json:"platform,omitempty"`
	Log      string `json:"log,omitempty"`
	Origin   string `json:"origin,omitempty"`
	// Index is the entry's index, absent for an alert about the log as a
	// whole.
	Index *uint64 `json:"index,omitempty"`
	// Time is when the monitor raised the alert.
	Time time.Time `json:"time"`
	// Entry is the entry as the log holds it: its text, or "base64:" and
	// its bytes when they are not UTF-8.
	Entry string `json:"entry,omitempty"`
	// Proof is a c2sp.org/tlog-proof of the entry in a checkpoint that
	// met the log's witness policy.
	Proof string `json:"proof,omitempty"`
	// Detail says why: the rule's description, the parse error, a burst's
	// count.
	Detail string `json:"detail"`
	// Checkpoints are the two signed checkpoints of a fork, each as the
	// log served it.
	Checkpoints []string `json:"checkpoints,omitempty"`
	// Acknowledgements are the supervisor's notes on the alert, each as
	// its acknowledgement log holds it.
	Acknowledgements []Acknowledgement `json:"acknowledgements,omitempty"`

	// proven are the entry's bytes as the follower proved them.
	proven []byte

	// once names what makes the alert the same as another: the entry's
	// index for an entry's alert, the contradicting checkpoint for a
	// fork. An alert is raised once per platform, log, rule and once.
	once string
}

// EntryBytes returns the entry's bytes as the log holds them: Entry's
// text, or what follows "base64:" decoded, when that is what entryText
// wrote (bytes that are not UTF-8).
func (a *Alert) EntryBytes() []byte {
	if s, ok := strings.CutPrefix(a.Entry, "base64:"); ok {
		if b, err := base64.StdEncoding.DecodeString(s); err == nil && !utf8.Valid(b) {
			return b
		}
	}
	return []byte(a.Entry)
}

// entryText is how an alert holds entry bytes.
func entryText(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return "base64:" + base64.StdEncoding.EncodeToString(b)
}

// store keeps alerts and the followers' states in one SQLite database, so
// that the alerts of a chunk of entries and the state past that chunk are
// written in one transaction: after a crash the monitor goes on from the
// last chunk it committed and raises the alerts of the next ones again,
// none twice (an alert is unique per platform, log, index and rule).
type store struct {
	db *sql.DB
}

const schema = `
CREATE TABLE IF NOT EXISTS alerts (
	id INTEGER PRIMARY KEY,
	rule TEXT NOT NULL,
	severity TEXT NOT NULL,
	platform TEXT NOT NULL,
	log TEXT NOT NULL,
	origin TEXT NOT NULL,
	idx INTEGER,
	once TEXT NOT NULL,
	time INTEGER NOT NULL,
	body BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_once ON alerts (platform, log, rule, once);
CREATE TABLE IF NOT EXISTS states (
	key TEXT PRIMARY KEY,
	state BLOB NOT NULL
);`

func openStore(ctx context.Context, dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "monitor.db")
	// Made 0600 before SQLite opens it: SQLite gives its WAL and shared-
	// memory files the database file's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	f.Close()
	db, err := sql.Open("sqlite", sqlite.DSN(path, "journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(5000)", "foreign_keys(1)"))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema+targetsSchema+acksSchema+releasesSchema+unwrapsSchema+subjectsSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening the monitor's store %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, err
	}
	return &store{db: db}, nil
}

func (s *store) Close() error { return s.db.Close() }

// state returns the state saved under key, or nil.
func (s *store) state(ctx context.Context, key string) ([]byte, error) {
	var b []byte
	err := s.db.QueryRowContext(ctx, `SELECT state FROM states WHERE key = ?`, key).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, fmt.Errorf("reading the monitor's state %s: %w", key, err))
	}
	return b, nil
}

// commit adds alerts (skipping any already raised for the same entry and
// rule, see Alert.once) and saves state under key, in one durable transaction. It returns
// the alerts it added, with their ids.
// chunkRows are what a chunk of entries adds to the store besides alerts
// and state: the releases that wait for verdicts, the subjects that
// accesses name.
type chunkRows struct {
	releases []releaseRow
	subjects []subjectRow
}

func (s *store) commit(ctx context.Context, alerts []Alert, key string, state []byte, extra map[string][]byte, rows ...chunkRows) ([]Alert, error) {
	var releases []releaseRow
	var subjects []subjectRow
	for _, r := range rows {
		releases, subjects = append(releases, r.releases...), append(subjects, r.subjects...)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, err)
	}
	defer tx.Rollback()
	var added []Alert
	for _, a := range alerts {
		body, err := json.Marshal(a)
		if err != nil {
			return nil, err
		}
		var idx any
		if a.Index != nil {
			idx = int64(*a.Index)
		}
		once := a.once
		if once == "" && a.Index != nil {
			once = fmt.Sprint("entry ", *a.Index)
		}
		if once == "" {
			return nil, fmt.Errorf("alert %s of %s names nothing that makes it one", a.Rule, a.Log)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO alerts (rule, severity, platform, log, origin, idx, once, time, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			a.Rule, a.Severity, a.Platform, a.Log, a.Origin, idx, once, a.Time.UnixMicro(), body)
		if err != nil {
			return nil, fault.Mark(fault.ErrUnavailable, fmt.Errorf("storing an alert: %w", err))
		}
		if n, _ := res.RowsAffected(); n == 0 {
			continue
		}
		a.ID, err = res.LastInsertId()
		if err != nil {
			return nil, fault.Mark(fault.ErrUnavailable, err)
		}
		added = append(added, a)
	}
	for k, v := range extra {
		if _, err := tx.ExecContext(ctx, `INSERT INTO states (key, state) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET state = excluded.state`, k, v); err != nil {
			return nil, fault.Mark(fault.ErrUnavailable, fmt.Errorf("saving the monitor's state %s: %w", k, err))
		}
	}
	for _, r := range releases {
		if _, err := tx.ExecContext(ctx, `INSERT INTO releases (platform, log, idx, origin, name, version, digest, seen, entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			r.platform, r.log, int64(r.index), r.origin, r.name, r.version, r.digest, r.seen.UnixMicro(), r.entry); err != nil {
			return nil, fault.Mark(fault.ErrUnavailable, fmt.Errorf("keeping a release for its verdicts: %w", err))
		}
	}
	if err := insertSubjects(ctx, tx, subjects); err != nil {
		return nil, err
	}
	if key != "" {
		if _, err := tx.ExecContext(ctx, `INSERT INTO states (key, state) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET state = excluded.state`, key, state); err != nil {
			return nil, fault.Mark(fault.ErrUnavailable, fmt.Errorf("saving the monitor's state %s: %w", key, err))
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, fmt.Errorf("committing alerts: %w", err))
	}
	return added, nil
}

// AlertQuery selects alerts: those after the id After, at most Limit,
// optionally of one rule, severity at least MinSeverity, of one platform.
type AlertQuery struct {
	After       int64
	Limit       int
	Rule        string
	MinSeverity string
	Platform    string
	// ID selects one alert; Newest returns the newest first (for a feed).
	ID     int64
	Newest bool
}

// MaxAlerts is the most alerts one query returns.
const MaxAlerts = 1000

// alerts returns the alerts q selects, oldest first.
func (s *store) alerts(ctx context.Context, q AlertQuery) ([]Alert, error) {
	if q.Limit <= 0 || q.Limit > MaxAlerts {
		q.Limit = MaxAlerts
	}
	where, args := []string{"id > ?"}, []any{q.After}
	if q.Rule != "" {
		where, args = append(where, "rule = ?"), append(args, q.Rule)
	}
	if q.Platform != "" {
		where, args = append(where, "platform = ?"), append(args, q.Platform)
	}
	if q.ID != 0 {
		where, args = append(where, "id = ?"), append(args, q.ID)
	}
	if q.MinSeverity != "" {
		var sev []string
		for i, v := range Severities {
			if v == q.MinSeverity {
				sev = Severities[i:]
			}
		}
		if sev == nil {
			return nil, fault.New(fault.ErrInvalid, fmt.Sprintf("severity %q is not one of %s", q.MinSeverity, strings.Join(Severities, ", ")))
		}
		where = append(where, "severity IN (?"+strings.Repeat(", ?", len(sev)-1)+")")
		for _, v := range sev {
			args = append(args, v)
		}
	}
	args = append(args, q.Limit)
	order := "id"
	if q.Newest {
		order = "id DESC"
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, body FROM alerts WHERE `+strings.Join(where, " AND ")+` ORDER BY `+order+` LIMIT ?`, args...)
	if err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, err)
	}
	defer rows.Close()
	out := []Alert{}
	for rows.Next() {
		var id int64
		var body []byte
		if err := rows.Scan(&id, &body); err != nil {
			return nil, fault.Mark(fault.ErrUnavailable, err)
		}
		var a Alert
		if err := json.Unmarshal(body, &a); err != nil {
			return nil, fmt.Errorf("alert %d: %w", id, err)
		}
		a.ID = id
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, err)
	}
	rows.Close()
	return out, s.acknowledgements(ctx, out)
}

// subjectsPerInsert is how many subjects one INSERT statement takes: the
// driver's cost is per statement more than per row.
const subjectsPerInsert = 200

// insertSubjects indexes the subjects a chunk's accesses name, sorted as
// the table is, many rows a statement.
func insertSubjects(ctx context.Context, tx *sql.Tx, subjects []subjectRow) error {
	type row struct {
		platform string
		p        []byte
		log      string
		idx      int64
	}
	rows := make([]row, 0, len(subjects))
	for _, r := range subjects {
		if p := pseudonymBytes(r.pseudonym); p != nil { // the access parser admits no other form
			rows = append(rows, row{r.platform, p, r.log, int64(r.index)})
		}
	}
	slices.SortFunc(rows, func(a, b row) int {
		return cmp.Or(strings.Compare(a.platform, b.platform), bytes.Compare(a.p, b.p), strings.Compare(a.log, b.log), cmp.Compare(a.idx, b.idx))
	})
	var full *sql.Stmt
	defer func() {
		if full != nil {
			full.Close()
		}
	}()
	for len(rows) > 0 {
		n := min(len(rows), subjectsPerInsert)
		q := `INSERT INTO subjects (platform, pseudonym, log, idx) VALUES (?, ?, ?, ?)` + strings.Repeat(`, (?, ?, ?, ?)`, n-1) + ` ON CONFLICT DO NOTHING`
		args := make([]any, 0, 4*n)
		for _, r := range rows[:n] {
			args = append(args, r.platform, r.p, r.log, r.idx)
		}
		var err error
		if n == subjectsPerInsert {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, q); err != nil {
					return fault.Mark(fault.ErrUnavailable, err)
				}
			}
			_, err = full.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, q, args...)
		}
		if err != nil {
			return fault.Mark(fault.ErrUnavailable, fmt.Errorf("indexing an access's subjects: %w", err))
		}
		rows = rows[n:]
	}
	return nil
}
