// Package sqlite is the embedded store: one region's telemetry in one SQLite
// database file, through modernc.org/sqlite (pure Go, so Vitrine builds with
// CGO_ENABLED=0).
//
// # Durability
//
// The database runs in WAL mode with synchronous=FULL: a commit returns
// after the write-ahead log is synced, so a batch that PutBatch acknowledged
// survives kill -9 and power loss.
//
// # Concurrency
//
// One connection writes, one goroutine at a time, so writers never meet
// SQLite's busy errors; a pool of read-only connections serves lookups,
// which WAL lets run beside the writer. PutBatch prepares its statement
// arguments before it queues for the writer, so concurrent callers overlap
// that work, and the writer stores all the batches queued meanwhile in one
// transaction (group commit): under load, batches share a sync to disk and
// the pages they append to.
//
// # Aggregates
//
// PutBatch writes a batch's records, and keeps what they add to the
// aggregates in memory until a fold writes it to the aggregate tables for
// many batches at once; reads merge the two, so a batch counts in every
// read that starts after its PutBatch returned. After a crash, Open folds
// again from the records. Open starts a goroutine that folds in the
// background; Close stops it. See fold.go.
//
// # Schema
//
// Opening a database migrates it to the current schema (see migrations);
// a database from a newer Vitrine is refused with [store.ErrSchemaNewer].
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vitrine-dev/vitrine/internal/store"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

func init() {
	store.Register("sqlite", func(ctx context.Context, path string) (store.Store, error) {
		return Open(ctx, path)
	})
}

// Store is a [store.Store] in one SQLite database. It is safe for
// concurrent use.
type Store struct {
	writeDB *sql.DB
	read    *sql.DB

	// writer holds a token while a goroutine writes (see lock); it guards
	// w, stmts and changes of pend.
	writer chan struct{}
	w      *sql.Conn // the only connection that writes
	stmts  map[stmtKey]*sql.Stmt
	// readStmts are the reads prepared on the reader pool, by query.
	readStmtsMu sync.Mutex
	readStmts   map[string]*sql.Stmt
	// readers admits reads to the reader pool in arrival order (see
	// admitReader).
	readers chan struct{}

	queueMu sync.Mutex
	queue   []*putRequest // PutBatch calls waiting for the writer

	// pendMu is held to change pend, and by readers while they read the
	// database and pend, so that a fold commits between reads, not during.
	pendMu sync.RWMutex
	pend   *pending
	// folding is what the fold under way is writing, less what it has
	// written; nil if none is. plan says how far it has come. Changed
	// under the writer and pendMu.
	folding *pending
	plan    *foldPlan
	// foldedSeq is the largest change sequence number in the changes
	// table; guarded by pendMu. A follower whose cursor is past it finds
	// every change it has not seen pending.
	foldedSeq int64
	nextSeq   int64 // the next change sequence number; guarded by writer and pendMu

	policy foldPolicy
	kick   chan struct{} // asks the folder to fold
	stop   chan struct{} // closed to stop the folder
	folded chan struct{} // closed when the folder has stopped
	closed atomic.Bool
}

var _ store.Store = (*Store)(nil)

// Open opens the store in the SQLite database at path, creating the file if
// it does not exist and migrating an older schema to the current one. It
// refuses a database from a newer Vitrine with [store.ErrSchemaNewer].
func Open(ctx context.Context, path string) (*Store, error) {
	s, err := open(ctx, path, migrations, defaultFoldPolicy)
	if err != nil {
		return nil, fmt.Errorf("opening sqlite store %s: %w", path, err)
	}
	return s, nil
}

// open is Open with the migration steps and the fold policy as parameters,
// for tests.
func open(ctx context.Context, path string, steps []string, policy foldPolicy) (*Store, error) {
	// The writer's page cache holds the upper levels of the aggregate
	// b-trees, which every batch updates at random; readers need little.
	if err := create(ctx, path); err != nil {
		return nil, err
	}
	writeDB, err := sql.Open("sqlite", DSN(path, append(pragmas, "cache_size(-32768)")...))
	if err != nil {
		return nil, err
	}
	writeDB.SetMaxOpenConns(1)
	writeDB.SetConnMaxIdleTime(0)
	s := &Store{
		writeDB: writeDB,
		writer:  make(chan struct{}, 1),
		stmts:   make(map[stmtKey]*sql.Stmt),
		pend:    newPending(),
		policy:  policy,
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		folded:  make(chan struct{}),
	}
	if s.w, err = writeDB.Conn(ctx); err != nil {
		writeDB.Close()
		return nil, err
	}
	if err := migrate(ctx, s.w, steps); err != nil {
		s.w.Close()
		writeDB.Close()
		return nil, err
	}
	if err := s.recoverPending(ctx); err != nil {
		s.w.Close()
		writeDB.Close()
		return nil, fmt.Errorf("reading records not folded yet: %w", err)
	}
	if err := s.foldLocked(ctx, false); err != nil {
		s.w.Close()
		writeDB.Close()
		return nil, err
	}
	// A reader's cache lasts one read transaction when anything was
	// committed since the last one, which under ingest is always: SQLite
	// empties it then. Larger caches only meant more to allocate and free
	// each time (see create).
	s.read, err = sql.Open("sqlite", DSN(path, append(pragmas, "query_only(1)", "cache_size(64)")...))
	if err != nil {
		s.w.Close()
		writeDB.Close()
		return nil, err
	}
	n := max(4, runtime.GOMAXPROCS(0))
	s.read.SetMaxOpenConns(n)
	s.read.SetMaxIdleConns(n)
	s.readers = make(chan struct{}, n)
	go s.folder(s.stop, s.folded)
	return s, nil
}

// lock takes the writer. It is a channel rather than a mutex so that
// PutBatch can wait for the writer or for another writer to store its
// batch, whichever comes first.
func (s *Store) lock() { s.writer <- struct{}{} }

// unlock releases the writer.
func (s *Store) unlock() { <-s.writer }

// pragmas are those of every connection.
var pragmas = []string{
	"journal_mode(WAL)",
	"synchronous(FULL)",
	"busy_timeout(10000)",
	"temp_store(MEMORY)",
}

// PageSize is the page size of the databases the store creates.
const PageSize = 8192

// create makes the database at path if there is none, with PageSize pages:
// 8 KiB.
// The page size is a trade between SQLite's system calls and
// modernc.org/memory, the allocator under modernc.org/sqlite: SQLite
// writes a WAL frame per page, so smaller pages mean more writes for the
// same bytes (4 KiB pages took 27% longer in BenchmarkPutBatch500), but
// the allocator serves up to 16 KiB from slots and maps anything larger on
// its own, so a 16 KiB page with its cache header costs an mmap of 32 KiB
// per cached page, and reader caches, emptied at every read transaction
// that follows a commit, made the server spend a fifth of its time in
// munmap and madvise. An 8 KiB page fits a slot. A page size is fixed
// once a database is in WAL mode, which every other connection puts it in.
func create(ctx context.Context, path string) error {
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// Made private first: SQLite gives its -wal and -shm files the
	// database file's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", DSN(path, fmt.Sprintf("page_size(%d)", PageSize)))
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, "PRAGMA journal_mode=WAL")
	return err
}

// DSN is the modernc.org/sqlite data source name for the database at path
// with the given pragmas.
func DSN(path string, pragmas ...string) string {
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	// A file: URI, so that SQLite decodes the path; escape what a URI
	// would otherwise read as its own syntax.
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return "file:" + esc + "?" + q.Encode()
}

// Close folds what is pending and closes the store. It waits for a write in
// progress to finish; the methods of a closed store return
// [store.ErrClosed]. Closing twice is not an error.
func (s *Store) Close() error {
	s.lock()
	defer s.unlock()
	if s.closed.Swap(true) {
		return nil
	}
	close(s.stop)
	s.unlock()
	<-s.folded // the folder takes the writer
	s.lock()
	// What is pending is safe in the records either way; folding now
	// saves the next Open the work.
	errs := []error{s.foldLocked(context.Background(), false)}
	for _, st := range s.stmts {
		errs = append(errs, st.Close())
	}
	s.readStmtsMu.Lock()
	for _, st := range s.readStmts {
		errs = append(errs, st.Close())
	}
	s.readStmtsMu.Unlock()
	errs = append(errs, s.w.Close(), s.writeDB.Close(), s.read.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing sqlite store: %w", err)
	}
	return nil
}
