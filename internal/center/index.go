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
-- outcome is a filter by action.
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
CREATE TABLE IF NOT EXISTS subjects (
	subject BLOB NOT NULL,    -- the pseudonym's 32 bytes
	time    INTEGER NOT NULL,
	log     INTEGER NOT NULL,
	idx     INTEGER NOT NULL
);
` + indexIndexes

// indexIndexes are the index's indexes, which a long catch-up drops and
// makes again once it is done (see Index.follow).
const indexIndexes = `
CREATE INDEX IF NOT EXISTS entries_principal ON entries (principal, time);
CREATE INDEX IF NOT EXISTS entries_action ON entries (action, time);
CREATE INDEX IF NOT EXISTS entries_justification ON entries (justification, time);
CREATE INDEX IF NOT EXISTS entries_log ON entries (log, time);
CREATE INDEX IF NOT EXISTS subjects_key ON subjects (subject, time, log, idx);
`

// indexChunk is how many entries are indexed between commits: each commit
// writes the rows and the follower's state past them, together.
const indexChunk = 50_000

// indexBulk is how far behind a follow starts for it to write the rows
// first and make the indexes after (a variable for the tests).
var indexBulk uint64 = 200_000

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
	// Building is set while the indexes are made again after a long
	// catch-up.
	Building bool `json:"building,omitempty"`
}

// OpenIndex opens (creating it 0600 if missing) the index at path.
func OpenIndex(path string) (*Index, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	f.Close()
	db, err := sql.Open("sqlite", sqlite.DSN(path, "journal_mode(WAL)", "synchronous(NORMAL)", "busy_timeout(5000)", "cache_size(-65536)", "temp_store(MEMORY)"))
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
	if err := rows.Err(); err != nil {
		db.Close()
		return nil, fmt.Errorf("index: %w", err)
	}
	return x, nil
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

func (x *Index) follow(ctx context.Context, name string, l *client.Log, progress func(IndexStatus)) (_ *tlog.Checkpoint, rerr error) {
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
	// Far behind on its first follow (the index holds nothing yet, and a
	// large log), the rows are written without the indexes, which are
	// then made again in one sort each: several times cheaper than
	// keeping them up row by row. Pages read meanwhile are slower, not
	// wrong. Once any row is committed, never again: a log that keeps
	// failing does not have every index dropped at every follow. (A crash
	// in between leaves them to OpenIndex, which makes any missing.)
	bulk := false
	parent := ctx
	if x.empty(ctx) {
		cp, err := l.Checkpoint(ctx)
		bulk = err == nil && cp.Size >= f.State().Size+indexBulk
	}
	if bulk {
		if _, err := x.db.ExecContext(ctx, `DROP INDEX IF EXISTS entries_principal; DROP INDEX IF EXISTS entries_action;
			DROP INDEX IF EXISTS entries_justification; DROP INDEX IF EXISTS entries_log; DROP INDEX IF EXISTS subjects_key;`); err != nil {
			return nil, fmt.Errorf("index: %w", err)
		}
		defer func() {
			st := x.Status()[name]
			st.Log, st.Building = name, true
			x.setStatus(st)
			if _, err := x.db.ExecContext(parent, indexIndexes); err != nil && rerr == nil {
				rerr = fmt.Errorf("index: %w", err)
			}
			st.Building = false
			x.setStatus(st)
		}()
	}
	// The follower reads, proves and parses in one goroutine while this
	// one writes the rows and commits them: neither waits for the other
	// but for room in the channel between them.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	items := make(chan *indexBatch, 8)
	read := make(chan error, 1)
	go func() {
		defer close(items)
		read <- readLog(ctx, name, f, items)
	}()
	cp, werr := x.write(ctx, id, name, items, progress)
	cancel()
	for range items { // let the reader end
	}
	if err := <-read; err != nil && werr == nil && !errors.Is(err, context.Canceled) {
		werr = fmt.Errorf("log %s: %w", name, err)
	}
	if werr != nil {
		return nil, werr
	}
	return cp, nil
}

// indexBatchRows is how many rows a batch carries, and one INSERT
// statement writes.
const indexBatchRows = 64

// indexBatch is some entries' rows, as the reader hands them to the
// writer; or, with mark set, the follower's state past every row handed
// before it: what the writer commits.
type indexBatch struct {
	rows []indexRow
	mark *indexMark
}

type indexRow struct {
	time, idx, count                                int64
	kind, principal, action, justification, outcome string
	subjects                                        [][]byte
}

type indexMark struct {
	state client.FollowState
	cp    *tlog.Checkpoint
}

// readLog follows the log, handing its entries' rows to items in
// batches and, every indexChunk entries and at the checkpoint, a mark.
// Rows after the last mark are not committed: a follow that fails
// midway keeps what was marked.
func readLog(ctx context.Context, name string, f *client.Follower, items chan<- *indexBatch) error {
	send := func(b *indexBatch) error {
		select {
		case items <- b:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b := &indexBatch{}
	for {
		n := 0
		cp, err := f.Update(ctx, func(i uint64, entry []byte) error {
			s, rec := summarize(name, i, entry)
			r := indexRow{idx: int64(i), count: s.Count, kind: s.Kind, principal: s.Principal, action: s.Action, justification: s.Justification, outcome: s.Outcome}
			if !s.Time.IsZero() {
				// A time before 1970 (an entry other than an access
				// record's, whose time is not checked) is no time: a
				// cursor's time is not negative.
				r.time = max(0, s.Time.UnixMilli())
			}
			if rec != nil {
				for _, p := range rec.Subjects {
					if b, ok := pseudonymBytes(p); ok { // the record parsed: each is one
						r.subjects = append(r.subjects, b)
					}
				}
			}
			b.rows = append(b.rows, r)
			if len(b.rows) >= indexBatchRows {
				if err := send(b); err != nil {
					return err
				}
				b = &indexBatch{}
			}
			if n++; n >= indexChunk {
				return client.ErrPause
			}
			return nil
		})
		paused := errors.Is(err, client.ErrPause)
		if err != nil && !paused {
			return err
		}
		b.mark = &indexMark{state: f.State(), cp: cp}
		if err := send(b); err != nil {
			return err
		}
		b = &indexBatch{}
		if !paused {
			return nil
		}
	}
}

// write writes the rows it is handed and commits them, with the
// follower's state, at each mark; it returns the last mark's checkpoint.
func (x *Index) write(ctx context.Context, id int64, name string, items <-chan *indexBatch, progress func(IndexStatus)) (*tlog.Checkpoint, error) {
	var cp *tlog.Checkpoint
	for {
		more, last, err := x.commitChunk(ctx, id, items)
		if err != nil {
			return nil, err
		}
		if last != nil {
			cp = last.cp
			s := IndexStatus{Log: name, Indexed: last.state.Size, Checkpoint: last.cp.Size, Updated: time.Now()}
			x.setStatus(s)
			if progress != nil {
				progress(s)
			}
		}
		if !more {
			return cp, nil
		}
	}
}

// commitChunk writes rows in one transaction up to a mark, which it
// commits; more is false once items is closed.
func (x *Index) commitChunk(ctx context.Context, id int64, items <-chan *indexBatch) (more bool, mark *indexMark, err error) {
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return false, nil, fmt.Errorf("index: %w", err)
	}
	defer tx.Rollback()
	stmts := map[string]*sql.Stmt{}
	defer func() {
		for _, st := range stmts {
			st.Close()
		}
	}()
	exec := func(q string, args []any) error {
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
		err := tx.QueryRowContext(ctx, `INSERT INTO terms (term) VALUES (?) ON CONFLICT (term) DO UPDATE SET term = excluded.term RETURNING id`, s).Scan(&id)
		added[s] = id
		return id, err
	}
	var entries, subjects []any
	for b := range items {
		entries, subjects = entries[:0], subjects[:0]
		for _, r := range b.rows {
			var ids [5]int64
			for k, t := range [5]string{r.kind, r.principal, r.action, r.justification, r.outcome} {
				if ids[k], err = termID(t); err != nil {
					return false, nil, fmt.Errorf("index: %w", err)
				}
			}
			entries = append(entries, r.time, id, r.idx, ids[0], ids[1], ids[2], ids[3], ids[4], r.count)
			for _, s := range r.subjects {
				subjects = append(subjects, s, r.time, id, r.idx)
			}
		}
		if len(entries) > 0 {
			if err := exec(insertSQL("entries", 9, len(entries)/9), entries); err != nil {
				return false, nil, fmt.Errorf("index: %w", err)
			}
		}
		for len(subjects) > 0 { // at most indexBatchRows rows a statement
			n := min(len(subjects), indexBatchRows*4)
			if err := exec(insertSQL("subjects", 4, n/4), subjects[:n]); err != nil {
				return false, nil, fmt.Errorf("index: %w", err)
			}
			subjects = subjects[n:]
		}
		if b.mark == nil {
			continue
		}
		state, err := json.Marshal(b.mark.state)
		if err != nil {
			return false, nil, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE logs SET state = ?, size = ?, checkpoint = ? WHERE id = ?`, string(state), b.mark.state.Size, b.mark.cp.Size, id); err != nil {
			return false, nil, fmt.Errorf("index: %w", err)
		}
		if err := tx.Commit(); err != nil {
			return false, nil, fmt.Errorf("index: %w", err)
		}
		for s, id := range added {
			x.terms.Add(s, id)
		}
		return true, b.mark, nil
	}
	return false, nil, nil // closed: what is not marked is rolled back
}

// insertSQL is an INSERT of n rows into the index's table.
func insertSQL(table string, cols, n int) string {
	var b strings.Builder
	switch table {
	case "entries":
		// OR FAIL: an error ends the whole transaction anyway, so the
		// statement needs no journal of its own to undo half of it.
		b.WriteString("INSERT OR FAIL INTO entries (time, log, idx, kind, principal, action, justification, outcome, count) VALUES ")
	case "subjects":
		b.WriteString("INSERT INTO subjects (subject, time, log, idx) VALUES ")
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

// empty reports whether the index holds no entry.
func (x *Index) empty(ctx context.Context) bool {
	var one int
	return errors.Is(x.db.QueryRowContext(ctx, `SELECT 1 FROM entries LIMIT 1`).Scan(&one), sql.ErrNoRows)
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
