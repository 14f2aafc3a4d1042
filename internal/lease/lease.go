// Package lease runs background work in exactly one of the processes that
// share a PostgreSQL database: the exchange of aggregates between regions,
// a region's dataset commitments. Several processes of one region's
// service run against one database; each asks for the work's lease, one
// holds it and does the work, and when that one dies another takes over.
//
// A lease is a session-level advisory lock (pg_try_advisory_lock) held on
// a connection of its own. PostgreSQL releases it when the session ends:
// at once when the holder's process dies (its socket closes), and within
// the TCP keepalive time (about 10 s, set on the session) when the holder
// is cut off. The holder pings its session every second and stops the
// work as soon as a ping fails: when it is cut off, that is before the
// server hands the lease to another process. When the server ends the
// session itself (a restart, pg_terminate_backend), it frees the lease at
// once, and the new holder may start up to one ping before the old one
// stops.
//
// The work itself must be safe to resume: a holder can die in the middle
// of it. The exchange resumes from the cursor its store keeps with the
// aggregates, and a commitment is made whole or not at all.
package lease

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Locker hands out leases on one database. It is safe for concurrent
// use. A nil *Locker runs every work at once, in this process: the
// embedded stores serve one process only.
type Locker struct {
	pool   *pgxpool.Pool
	schema string
	logger *slog.Logger
	// Retry is how long a process that did not get a lease waits before
	// asking again, and Ping how often a holder checks its session
	// (defaults 1s).
	retry, ping time.Duration
}

// Open connects to the database at dsn, a postgres:// URL. Leases are
// scoped to the first schema of the connection's search path, so that
// deployments sharing a server do not share leases.
func Open(ctx context.Context, dsn string, logger *slog.Logger) (*Locker, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("opening leases: %w", err)
	}
	// A cut-off holder's session ends within about 10 s on the server's
	// side, which frees its leases; a holder stops working after its
	// first failed ping, a second or two after the cut.
	cfg.ConnConfig.RuntimeParams["tcp_keepalives_idle"] = "4"
	cfg.ConnConfig.RuntimeParams["tcp_keepalives_interval"] = "2"
	cfg.ConnConfig.RuntimeParams["tcp_keepalives_count"] = "3"
	cfg.MinConns = 0
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening leases: %w", err)
	}
	var schema string
	if err := pool.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("opening leases: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Locker{pool: pool, schema: schema, logger: logger, retry: time.Second, ping: time.Second}, nil
}

// Close releases the database connections. Call it after every Run has
// returned.
func (l *Locker) Close() {
	if l != nil {
		l.pool.Close()
	}
}

// key is the advisory lock key of the lease name in l's schema.
func (l *Locker) key(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("vitrine-lease\x00" + l.schema + "\x00" + name))
	return int64(h.Sum64())
}

// Run does work under the lease name until ctx ends: it waits for the
// lease, runs work with a context that ends when the lease is lost or ctx
// ends, and asks for the lease again when work returns or the lease was
// lost. held, if not nil, is called with true when this process takes the
// lease and false when it lets it go or loses it.
func (l *Locker) Run(ctx context.Context, name string, work func(context.Context), held func(bool)) {
	if held == nil {
		held = func(bool) {}
	}
	if l == nil {
		held(true)
		work(ctx)
		held(false)
		return
	}
	for ctx.Err() == nil {
		err := l.hold(ctx, name, work, held)
		if err != nil && ctx.Err() == nil {
			l.logger.WarnContext(ctx, "lease", "name", name, "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(l.retry):
		}
	}
}

// hold takes the lease if it is free and runs work until work returns,
// ctx ends or the lease's session fails.
func (l *Locker) hold(ctx context.Context, name string, work func(context.Context), held func(bool)) error {
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := l.pool.Acquire(actx)
	cancel()
	if err != nil {
		return err
	}
	key := l.key(name)
	var got bool
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = conn.QueryRow(qctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&got)
	cancel()
	if err != nil {
		conn.Release()
		return err
	}
	if !got {
		conn.Release()
		return nil // another process works; ask again later
	}
	held(true)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		work(wctx)
	}()
	tick := time.NewTicker(l.ping)
	defer tick.Stop()
	var lost error
loop:
	for {
		select {
		case <-done:
			break loop
		case <-ctx.Done():
			break loop
		case <-tick.C:
			pctx, cancel := context.WithTimeout(ctx, l.ping)
			err := conn.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				lost = fmt.Errorf("lost: %w", err)
				break loop
			}
		}
	}
	stop()
	<-done
	held(false)
	if lost != nil {
		// The session may be half-alive: end it, which frees the lock
		// on the server's side if it still holds it.
		_ = conn.Conn().Close(context.Background())
		conn.Release()
		return lost
	}
	uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", key); err != nil {
		_ = conn.Conn().Close(context.Background())
	}
	conn.Release()
	return nil
}
