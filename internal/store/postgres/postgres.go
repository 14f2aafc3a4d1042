// Package postgres is the server store: one region's telemetry in
// PostgreSQL, through pgx (pure Go, so Vitrine builds with CGO_ENABLED=0).
// Several Vitrine processes can share one store.
//
// # Durability
//
// PutBatch returns after its transaction commits, and the store's sessions
// run with synchronous_commit=on (PostgreSQL's default, set explicitly in
// case the server's configuration says otherwise), so a commit waits for
// its WAL to reach disk.
//
// # Concurrency and the change sequence
//
// Batches are written concurrently. Each updates the aggregates of its
// hashes in its own transaction, last, under a transaction-scoped advisory
// lock: so change sequence numbers are handed out in commit order, and a
// reader following ChangedAggregates never passes a number whose change
// becomes visible later. The lock is held only for the aggregate updates
// and the commit.
//
// # Schema
//
// The tables live in the first schema of the connection's search_path (set
// it with a search_path=NAME parameter in the URL). Opening a database
// migrates it to the current schema; a database from a newer Vitrine is
// refused with [store.ErrSchemaNewer].
package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vitrine-dev/vitrine/internal/store"
)

func init() {
	store.Register("postgres", func(ctx context.Context, dsn string) (store.Store, error) {
		return Open(ctx, dsn)
	})
}

// Store is a [store.Store] in PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	// aggLock is the advisory lock key that serialises aggregate updates
	// (and migrations) of this store's schema, and no other's.
	aggLock int64
	closed  atomic.Bool
}

var _ store.Store = (*Store)(nil)

// Open connects to the store at dsn, a postgres:// URL, and migrates its
// schema to the current one. It refuses a database from a newer Vitrine
// with [store.ErrSchemaNewer].
func Open(ctx context.Context, dsn string) (*Store, error) {
	s, err := open(ctx, dsn, migrations)
	if err != nil {
		return nil, fmt.Errorf("opening postgres store: %w", err)
	}
	return s, nil
}

// open is Open with the migration steps as a parameter, for tests.
func open(ctx context.Context, dsn string, steps []string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var schema string
	if err := pool.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		pool.Close()
		return nil, err
	}
	h := fnv.New64a()
	h.Write([]byte("vitrine store " + schema))
	s := &Store{pool: pool, aggLock: int64(h.Sum64())}
	if err := migrate(ctx, pool, steps, s.aggLock); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the store's connections, waiting for those in use to be
// released. The methods of a closed store return [store.ErrClosed]. Closing
// twice is not an error.
func (s *Store) Close() error {
	if !s.closed.Swap(true) {
		s.pool.Close()
	}
	return nil
}

// closedErr is store.ErrClosed if the store was closed under an operation,
// and err otherwise.
func (s *Store) closedErr(err error) error {
	var caller *store.CallerError
	if s.closed.Load() && !errors.As(err, &caller) {
		return store.ErrClosed
	}
	return err
}
