package custody

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"net/url"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// busyTimeoutMillis is how long a count waits for a database another
// process has locked before it fails closed. Tests shorten it.
var busyTimeoutMillis = 10000

// counts is the durable tally of unwrapped keys per access-log entry, in a
// SQLite database in WAL mode with synchronous=FULL: an add that returns nil
// has been fsynced and survives kill -9 and power loss.
type counts struct {
	db *sql.DB
}

func openCounts(ctx context.Context, path string) (*counts, error) {
	q := url.Values{}
	for _, p := range []string{
		"journal_mode(WAL)",
		"synchronous(FULL)",
		fmt.Sprintf("busy_timeout(%d)", busyTimeoutMillis),
	} {
		q.Add("_pragma", p)
	}
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	db, err := sql.Open("sqlite", "file:"+esc+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("opening unwrap counts %s: %w", path, err)
	}
	// One connection: adds are serialised here rather than by SQLite's
	// lock, and the pragmas hold on every statement.
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	const schema = `CREATE TABLE IF NOT EXISTS unwrap_counts (
		region TEXT NOT NULL,
		log_index INTEGER NOT NULL CHECK (log_index >= 0),
		keys INTEGER NOT NULL CHECK (keys >= 0),
		PRIMARY KEY (region, log_index)
	) STRICT`
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening unwrap counts %s: %w", path, err)
	}
	return &counts{db: db}, nil
}

// add adds n keys to the count of the entry at index of region's access log
// and returns once the new count is durable.
func (c *counts) add(ctx context.Context, region string, index uint64, n int) error {
	if index > math.MaxInt64 {
		return fmt.Errorf("log index %d out of range", index)
	}
	_, err := c.db.ExecContext(ctx, `INSERT INTO unwrap_counts (region, log_index, keys) VALUES (?, ?, ?)
		ON CONFLICT (region, log_index) DO UPDATE SET keys = keys + excluded.keys`,
		region, int64(index), int64(n))
	return err
}

// all returns every count: region, then access-log index, then keys.
func (c *counts) all(ctx context.Context) (map[string]map[uint64]int64, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT region, log_index, keys FROM unwrap_counts`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	m := make(map[string]map[uint64]int64)
	for rows.Next() {
		var (
			region string
			index  int64
			n      int64
		)
		if err := rows.Scan(&region, &index, &n); err != nil {
			return nil, err
		}
		if m[region] == nil {
			m[region] = make(map[uint64]int64)
		}
		m[region][uint64(index)] = n
	}
	return m, rows.Err()
}

func (c *counts) close() error { return c.db.Close() }
