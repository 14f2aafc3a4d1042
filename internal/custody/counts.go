package custody

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"sync"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// busyTimeoutMillis is how long a count waits for a database another
// process has locked before it fails closed. Tests shorten it.
var busyTimeoutMillis = 10000

// counts is the durable tally of unwrapped keys per access-log entry, in a
// SQLite database in WAL mode with synchronous=FULL: an add that returns nil
// has been fsynced and survives kill -9 and power loss.
//
// Adds are committed in groups: one goroutine takes every add waiting when
// it is free and commits them in one transaction, one fsync for all, then
// answers each. An add returns nil only once the transaction holding it has
// committed; if that fails, the whole group fails and none of it counts.
type counts struct {
	db     *sql.DB
	insert *sql.Stmt
	adds   chan *countAdd
	done   chan struct{} // closed when the committer has stopped

	// mu guards closed, and adds against a send after close.
	mu     sync.RWMutex
	closed bool
}

// countAdd is one add waiting for its group to commit.
type countAdd struct {
	region string
	index  int64
	n      int64
	// err gets the outcome of the commit. It is buffered, so that the
	// committer never waits for a caller that has given up.
	err chan error
}

// maxCountGroup bounds the adds committed in one transaction.
const maxCountGroup = 256

var errCountsClosed = errors.New("unwrap counts closed")

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
	insert, err := db.PrepareContext(ctx, `INSERT INTO unwrap_counts (region, log_index, keys) VALUES (?, ?, ?)
		ON CONFLICT (region, log_index) DO UPDATE SET keys = keys + excluded.keys`)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("opening unwrap counts %s: %w", path, err)
	}
	c := &counts{db: db, insert: insert, adds: make(chan *countAdd, maxCountGroup), done: make(chan struct{})}
	go c.commitGroups()
	return c, nil
}

// add adds n keys to the count of the entry at index of region's access log
// and returns once the new count is durable. If ctx ends first, add returns
// its error, and the keys may still be counted: a count can exceed the keys
// released, never fall short of them.
func (c *counts) add(ctx context.Context, region string, index uint64, n int) error {
	if index > math.MaxInt64 {
		return fmt.Errorf("log index %d out of range", index)
	}
	if n < 0 {
		return fmt.Errorf("adding %d keys", n)
	}
	a := &countAdd{region: region, index: int64(index), n: int64(n), err: make(chan error, 1)}
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return errCountsClosed
	}
	select {
	case c.adds <- a:
	case <-ctx.Done():
		c.mu.RUnlock()
		return ctx.Err()
	}
	c.mu.RUnlock()
	select {
	case err := <-a.err:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// commitGroups commits the adds that wait, in groups, until close.
func (c *counts) commitGroups() {
	defer close(c.done)
	group := make([]*countAdd, 0, maxCountGroup)
	for a := range c.adds {
		group = append(group[:0], a)
	gather:
		for len(group) < maxCountGroup {
			select {
			case a, ok := <-c.adds:
				if !ok {
					break gather
				}
				group = append(group, a)
			default:
				break gather
			}
		}
		err := c.commit(group)
		for _, a := range group {
			a.err <- err
		}
		clear(group)
	}
}

// commit adds a group of counts in one transaction. It does not take a
// caller's context: one caller giving up must not fail the others' adds.
func (c *counts) commit(group []*countAdd) (err error) {
	ctx := context.Background()
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	insert := tx.StmtContext(ctx, c.insert)
	for _, a := range group {
		if _, err := insert.ExecContext(ctx, a.region, a.index, a.n); err != nil {
			return err
		}
	}
	return tx.Commit()
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

// ping reads the database: it answers, or the counts are closed.
func (c *counts) ping(ctx context.Context) error {
	var one int
	return c.db.QueryRowContext(ctx, `SELECT 1 FROM unwrap_counts UNION ALL SELECT 1 LIMIT 1`).Scan(&one)
}

// close stops taking adds, lets the committer answer those it has, and
// closes the database.
func (c *counts) close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.adds)
	c.mu.Unlock()
	<-c.done
	c.insert.Close()
	return c.db.Close()
}
