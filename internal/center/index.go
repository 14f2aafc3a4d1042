package center

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/store/sqlite"
	"github.com/vitrine-dev/vitrine/tlog"
)

// The index is the Center's own index of the platform's access logs, for
// filtering and searching what the logs' tiles can only page through: the
// Center follows each access log (every entry proven by client.Follower)
// into an embedded SQLite database, one row per entry, with the pseudonyms
// each access names in a table of their own. A page of the index is a
// reading of entries the Center proved when it indexed them; an entry's
// own page reads it again with its proof, for the reader's browser to
// check.

const indexSchema = `
CREATE TABLE IF NOT EXISTS logs (
	id         INTEGER PRIMARY KEY,
	name       TEXT NOT NULL UNIQUE,
	state      TEXT NOT NULL,      -- the follower's, JSON
	size       INTEGER NOT NULL,   -- entries indexed
	checkpoint INTEGER NOT NULL    -- the size of the newest checkpoint verified
);
-- Strings that repeat (kinds, principals, actions, codes, outcomes) are
-- kept once; rows name them by id.
CREATE TABLE IF NOT EXISTS terms (
	id   INTEGER PRIMARY KEY,
	term TEXT NOT NULL UNIQUE
);
-- Keyed by time, so that the newest entries are a walk from the table's
-- end and a time range a slice of it. Outcome is not indexed: it is
-- "denied" exactly when the action is (access.Record), so a filter by
-- outcome is a filter by action. Nor is the log: a platform has a few
-- regions, and paging one of them walks the others' rows in time.
CREATE TABLE IF NOT EXISTS entries (
	time          INTEGER NOT NULL, -- Unix milliseconds, 0 when the entry has none
	log           INTEGER NOT NULL,
	idx           INTEGER NOT NULL,
	kind          INTEGER NOT NULL,
	principal     INTEGER NOT NULL,
	action        INTEGER NOT NULL,
	justification INTEGER NOT NULL,
	outcome       INTEGER NOT NULL,
	count         INTEGER NOT NULL,
	PRIMARY KEY (time, log, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_principal ON entries (principal, time);
CREATE INDEX IF NOT EXISTS entries_action ON entries (action, time);
CREATE INDEX IF NOT EXISTS entries_justification ON entries (justification, time);
CREATE TABLE IF NOT EXISTS subjects (
	subject BLOB NOT NULL,    -- the pseudonym's 32 bytes
	time    INTEGER NOT NULL,
	log     INTEGER NOT NULL,
	idx     INTEGER NOT NULL,
	PRIMARY KEY (subject, time, log, idx)
) WITHOUT ROWID;
`

// indexChunk is how many entries are indexed between commits: each commit
// writes the rows and the follower's state past them, together.
const indexChunk = 50_000

// Index is the Center's index of access logs (see above). Its methods
// are safe for concurrent use; one follow runs at a time.
type Index struct {
	db *sql.DB
	// mu keeps one follow at a time: they share the term cache.
	mu    sync.Mutex
	terms *lru.Cache[string, int64]
	// status is each log's last follow, for the pages to show.
	statusMu sync.Mutex
	status   map[string]IndexStatus
}

// IndexStatus is how far one log is indexed.
type IndexStatus struct {
	Log        string    `json:"log"`
	Indexed    uint64    `json:"indexed"`    // entries
	Checkpoint uint64    `json:"checkpoint"` // the newest verified checkpoint's size
	Updated    time.Time `json:"updated,omitzero"`
	// Problem is why the last follow stopped short, if it did: a log that
	// does not verify is indexed no further.
	Problem string `json:"problem,omitempty"`
}

// OpenIndex opens (creating it 0600 if missing) the index at path.
func OpenIndex(path string) (*Index, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	f.Close()
	db, err := sql.Open("sqlite", sqlite.DSN(path, "journal_mode(WAL)", "synchronous(NORMAL)", "busy_timeout(5000)", "cache_size(-65536)"))
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	if _, err := db.Exec(indexSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("index: %w", err)
	}
	terms, _ := lru.New[string, int64](1 << 16)
	x := &Index{db: db, terms: terms, status: map[string]IndexStatus{}}
	rows, err := db.Query(`SELECT name, size, checkpoint FROM logs`)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("index: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s IndexStatus
		if err := rows.Scan(&s.Log, &s.Indexed, &s.Checkpoint); err != nil {
			db.Close()
			return nil, fmt.Errorf("index: %w", err)
		}
		x.status[s.Log] = s
	}
	return x, rows.Err()
}

// Close closes the index.
func (x *Index) Close() error { return x.db.Close() }

// Status returns how far each log is indexed, by name.
func (x *Index) Status() map[string]IndexStatus {
	x.statusMu.Lock()
	defer x.statusMu.Unlock()
	m := make(map[string]IndexStatus, len(x.status))
	for k, v := range x.status {
		m[k] = v
	}
	return m
}

func (x *Index) setStatus(s IndexStatus) {
	x.statusMu.Lock()
	defer x.statusMu.Unlock()
	x.status[s.Log] = s
}

// Follow indexes the named access log from where its index stopped up to
// its newest checkpoint, which it returns. Every entry indexed is proven
// by the follower; rows and the follower's state past them are committed
// together every indexChunk entries, so a follow that stops (a log that
// does not verify, a crash) loses nothing committed and indexes nothing
// twice. progress, if not nil, is told after every commit.
func (x *Index) Follow(ctx context.Context, name string, l *client.Log, progress func(IndexStatus)) (*tlog.Checkpoint, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	cp, err := x.follow(ctx, name, l, progress)
	st := x.Status()[name]
	st.Log, st.Problem = name, ""
	if err != nil {
		st.Problem = err.Error()
	}
	x.setStatus(st)
	return cp, err
}

func (x *Index) follow(ctx context.Context, name string, l *client.Log, progress func(IndexStatus)) (*tlog.Checkpoint, error) {
	var (
		id  int64
		raw string
	)
	err := x.db.QueryRowContext(ctx, `SELECT id, state FROM logs WHERE name = ?`, name).Scan(&id, &raw)
	var st *client.FollowState
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if err := x.db.QueryRowContext(ctx, `INSERT INTO logs (name, state, size, checkpoint) VALUES (?, 'null', 0, 0) RETURNING id`, name).Scan(&id); err != nil {
			return nil, fmt.Errorf("index: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("index: %w", err)
	default:
		if err := json.Unmarshal([]byte(raw), &st); err != nil {
			return nil, fmt.Errorf("index: log %s: the follower's state: %w", name, err)
		}
	}
	f, err := client.NewFollower(l, st)
	if err != nil {
		return nil, fmt.Errorf("log %s: %w", name, err)
	}
	for {
		cp, paused, err := x.chunk(ctx, id, name, f)
		if err != nil {
			return nil, err
		}
		s := IndexStatus{Log: name, Indexed: f.State().Size, Checkpoint: cp.Size, Updated: time.Now()}
		x.setStatus(s)
		if progress != nil {
			progress(s)
		}
		if !paused {
			return cp, nil
		}
	}
}

// indexBatch is how many rows one INSERT statement writes.
const indexBatch = 64

// indexRows is a batch of rows: entries' 9 columns, subjects' 4.
type indexRows struct {
	entries  []any
	subjects []any
}

// chunk indexes up to indexChunk entries of the log in one transaction.
// The follower reads, proves and parses in this goroutine while another
// writes the rows, a batch a statement.
func (x *Index) chunk(ctx context.Context, id int64, name string, f *client.Follower) (*tlog.Checkpoint, bool, error) {
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, false, fmt.Errorf("index: %w", err)
	}
	defer tx.Rollback()
	term, err := tx.PrepareContext(ctx, `INSERT INTO terms (term) VALUES (?) ON CONFLICT (term) DO UPDATE SET term = excluded.term RETURNING id`)
	if err != nil {
		return nil, false, fmt.Errorf("index: %w", err)
	}
	defer term.Close()
	// Terms added in this transaction are cached only once it commits.
	added := map[string]int64{}
	termID := func(s string) (int64, error) {
		if id, ok := x.terms.Get(s); ok {
			return id, nil
		}
		if id, ok := added[s]; ok {
			return id, nil
		}
		var id int64
		if err := term.QueryRowContext(ctx, s).Scan(&id); err != nil {
			return 0, err
		}
		added[s] = id
		return id, nil
	}

	batches := make(chan *indexRows, 4)
	written := make(chan error, 1)
	go func() { written <- writeRows(ctx, tx, batches) }()
	rows := &indexRows{}
	send := func() error {
		select {
		case batches <- rows:
			rows = &indexRows{}
			return nil
		case err := <-written: // the writer stopped early
			written <- err
			return fmt.Errorf("index: %w", err)
		}
	}
	n := 0
	cp, err := f.Update(ctx, func(i uint64, entry []byte) error {
		s, rec := summarize(name, i, entry)
		var ids [5]int64
		for k, t := range [5]string{s.Kind, s.Principal, s.Action, s.Justification, s.Outcome} {
			id, err := termID(t)
			if err != nil {
				return fmt.Errorf("index: %w", err)
			}
			ids[k] = id
		}
		var ms int64
		if !s.Time.IsZero() {
			ms = s.Time.UnixMilli()
		}
		rows.entries = append(rows.entries, ms, id, int64(i), ids[0], ids[1], ids[2], ids[3], ids[4], s.Count)
		if rec != nil {
			for _, p := range rec.Subjects {
				if b, ok := pseudonymBytes(p); ok { // the record parsed: each is one
					rows.subjects = append(rows.subjects, b, ms, id, int64(i))
				}
			}
		}
		if len(rows.entries) >= indexBatch*9 || len(rows.subjects) >= indexBatch*4 {
			if err := send(); err != nil {
				return err
			}
		}
		if n++; n >= indexChunk {
			return client.ErrPause
		}
		return nil
	})
	paused := errors.Is(err, client.ErrPause)
	if err == nil || paused {
		err = send()
	}
	close(batches)
	if werr := <-written; err == nil || paused {
		err = werr
	}
	if err != nil && !errors.Is(err, client.ErrPause) {
		// The follower stays past the last entry handed out, but nothing
		// of this chunk is committed: the next follow starts from the
		// state saved with the last commit.
		return nil, false, fmt.Errorf("log %s: %w", name, err)
	}
	state, err := json.Marshal(f.State())
	if err != nil {
		return nil, false, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE logs SET state = ?, size = ?, checkpoint = ? WHERE id = ?`, string(state), f.State().Size, cp.Size, id); err != nil {
		return nil, false, fmt.Errorf("index: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, false, fmt.Errorf("index: %w", err)
	}
	for s, id := range added {
		x.terms.Add(s, id)
	}
	return cp, paused, nil
}

// writeRows writes the batches it is sent until the channel closes; after
// an error it only drains them.
func writeRows(ctx context.Context, tx *sql.Tx, batches <-chan *indexRows) error {
	stmts := map[string]*sql.Stmt{}
	defer func() {
		for _, st := range stmts {
			st.Close()
		}
	}()
	exec := func(table string, cols int, args []any) error {
		if len(args) == 0 {
			return nil
		}
		q := insertSQL(table, cols, len(args)/cols)
		st, ok := stmts[q]
		if !ok {
			var err error
			if st, err = tx.PrepareContext(ctx, q); err != nil {
				return err
			}
			stmts[q] = st
		}
		_, err := st.ExecContext(ctx, args...)
		return err
	}
	var err error
	for b := range batches {
		if err == nil {
			err = exec("entries", 9, b.entries)
		}
		if err == nil {
			err = exec("subjects", 4, b.subjects)
		}
	}
	return err
}

// insertSQL is an INSERT of n rows into the index's table.
func insertSQL(table string, cols, n int) string {
	var b strings.Builder
	switch table {
	case "entries":
		b.WriteString("INSERT INTO entries (time, log, idx, kind, principal, action, justification, outcome, count) VALUES ")
	case "subjects":
		b.WriteString("INSERT OR IGNORE INTO subjects (subject, time, log, idx) VALUES ")
	}
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	return b.String()
}

// pseudonymBytes returns the 32 bytes of a subject pseudonym
// ("hmac-sha256:<64 hex>").
func pseudonymBytes(p string) ([]byte, bool) {
	h, ok := strings.CutPrefix(p, "hmac-sha256:")
	if !ok || len(h) != 64 || strings.ToLower(h) != h {
		return nil, false
	}
	b, err := hex.DecodeString(h)
	return b, err == nil
}

// Filter selects index entries; a zero field selects any.
type Filter struct {
	Log           string    `json:"log,omitempty"`
	Principal     string    `json:"principal,omitempty"`
	Subject       string    `json:"subject,omitempty"` // a pseudonym, hmac-sha256:<64 hex>
	Action        string    `json:"action,omitempty"`
	Justification string    `json:"justification,omitempty"` // "(none)" for a refusal without one
	Outcome       string    `json:"outcome,omitempty"`       // granted or denied
	From          time.Time `json:"from,omitzero"`           // inclusive
	To            time.Time `json:"to,omitzero"`             // exclusive
	// Before pages on: entries older than this position only.
	Before *Cursor `json:"before,omitempty"`
}

// Cursor is an entry's position in the index's order: newest first, by
// the record's time, then log and index.
type Cursor struct {
	Time int64 // Unix milliseconds
	Log  int64 // the index's id of the log
	Idx  uint64
}

// String is the cursor as a page's ?before= names it.
func (c Cursor) String() string { return fmt.Sprintf("%d.%d.%d", c.Time, c.Log, c.Idx) }

// ParseCursor parses Cursor.String's form.
func ParseCursor(s string) (*Cursor, error) {
	var c Cursor
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return nil, errors.New("a position is three numbers: time.log.index")
	}
	var err error
	if c.Time, err = strconv.ParseInt(parts[0], 10, 64); err != nil || c.Time < 0 {
		return nil, errors.New("a position's time is a count of milliseconds")
	}
	if c.Log, err = strconv.ParseInt(parts[1], 10, 64); err != nil || c.Log < 0 {
		return nil, errors.New("a position's log is a number")
	}
	if c.Idx, err = strconv.ParseUint(parts[2], 10, 64); err != nil || c.Idx > math.MaxInt64 {
		return nil, errors.New("a position's index is a number")
	}
	return &c, nil
}

// Indexed is one entry as the index holds it.
type Indexed struct {
	Log string `json:"log"`
	EntrySummary
	at Cursor
}

// Query returns up to limit entries that f selects, newest first, and the
// cursor to page on from when there may be more.
func (x *Index) Query(ctx context.Context, f Filter, limit int) ([]Indexed, *Cursor, error) {
	var (
		where []string
		args  []any
	)
	// A term the index has never seen selects nothing: no query needed.
	term := func(col, s string) (bool, error) {
		var id int64
		err := x.db.QueryRowContext(ctx, `SELECT id FROM terms WHERE term = ?`, s).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		where, args = append(where, "e."+col+" = ?"), append(args, id)
		return true, nil
	}
	from := "entries e"
	order := "e.time DESC, e.log DESC, e.idx DESC"
	if f.Subject != "" {
		b, ok := pseudonymBytes(f.Subject)
		if !ok {
			return nil, nil, errors.New("a subject is a pseudonym, hmac-sha256:<64 hex>")
		}
		// The subject's own rows, in time, each joined to its entry.
		from = "subjects s JOIN entries e ON e.time = s.time AND e.log = s.log AND e.idx = s.idx"
		order = "s.time DESC, s.log DESC, s.idx DESC"
		where, args = append(where, "s.subject = ?"), append(args, b)
	}
	if f.Log != "" {
		var id int64
		err := x.db.QueryRowContext(ctx, `SELECT id FROM logs WHERE name = ?`, f.Log).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("index: %w", err)
		}
		where, args = append(where, "e.log = ?"), append(args, id)
	}
	for _, c := range []struct{ col, val string }{{"principal", f.Principal}, {"action", f.Action}, {"justification", f.Justification}} {
		if c.val == "" {
			continue
		}
		v := c.val
		if c.col == "justification" && v == "(none)" {
			// An access record refused at its credential: other kinds
			// of entry have no justification either.
			if ok, err := term("kind", "access"); err != nil {
				return nil, nil, fmt.Errorf("index: %w", err)
			} else if !ok {
				return nil, nil, nil
			}
			v = ""
		}
		if ok, err := term(c.col, v); err != nil {
			return nil, nil, fmt.Errorf("index: %w", err)
		} else if !ok {
			return nil, nil, nil
		}
	}
	switch f.Outcome {
	case "":
	case "granted", "denied":
		cols := []string{"outcome"}
		if f.Outcome == "denied" {
			// Denied exactly when the action is (access.Record); the
			// action is indexed, the outcome is not.
			cols = append(cols, "action")
		}
		for _, col := range cols {
			if ok, err := term(col, f.Outcome); err != nil {
				return nil, nil, fmt.Errorf("index: %w", err)
			} else if !ok {
				return nil, nil, nil
			}
		}
	default:
		return nil, nil, errors.New("an outcome is granted or denied")
	}
	col := "e.time"
	if f.Subject != "" {
		col = "s.time"
	}
	if !f.From.IsZero() {
		where, args = append(where, col+" >= ?"), append(args, f.From.UnixMilli())
	}
	if !f.To.IsZero() {
		where, args = append(where, col+" < ?"), append(args, f.To.UnixMilli())
	}
	if c := f.Before; c != nil {
		if f.Subject != "" {
			where = append(where, "(s.time, s.log, s.idx) < (?, ?, ?)")
		} else {
			where = append(where, "(e.time, e.log, e.idx) < (?, ?, ?)")
		}
		args = append(args, c.Time, c.Log, int64(c.Idx))
	}
	q := `SELECT e.time, e.log, l.name, e.idx, e.count, k.term, p.term, a.term, j.term, o.term FROM ` + from + `
		JOIN logs l ON l.id = e.log
		JOIN terms k ON k.id = e.kind JOIN terms p ON p.id = e.principal JOIN terms a ON a.id = e.action
		JOIN terms j ON j.id = e.justification JOIN terms o ON o.id = e.outcome`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY " + order + " LIMIT ?"
	args = append(args, limit+1)
	rows, err := x.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("index: %w", err)
	}
	defer rows.Close()
	var out []Indexed
	for rows.Next() {
		var e Indexed
		var idx int64
		if err := rows.Scan(&e.at.Time, &e.at.Log, &e.Log, &idx, &e.Count, &e.Kind, &e.Principal, &e.Action, &e.Justification, &e.Outcome); err != nil {
			return nil, nil, fmt.Errorf("index: %w", err)
		}
		e.Index, e.at.Idx = uint64(idx), uint64(idx)
		if e.at.Time != 0 {
			e.Time = time.UnixMilli(e.at.Time).UTC()
		}
		e.Verified = true // proven by the follower when indexed
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("index: %w", err)
	}
	if len(out) > limit {
		next := out[limit-1].at
		return out[:limit], &next, nil
	}
	return out, nil, nil
}
