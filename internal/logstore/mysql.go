package logstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
	tmysql "github.com/transparency-dev/tessera/storage/mysql"

	"github.com/vitrine-dev/vitrine/internal/tilestore"
)

// MinCheckpointInterval is the shortest checkpoint interval Tessera's MySQL
// driver accepts.
const MinCheckpointInterval = time.Second

// schema is Tessera's storage/mysql/schema.sql at v1.0.4, one statement
// each (so that the connection needs no multiStatements), with the engine
// named: Tessera serializes appenders with SELECT … FOR UPDATE on the tree
// state row, which only a transactional engine honours.
var schema = []string{
	"CREATE TABLE IF NOT EXISTS `Tessera` (`id` TINYINT UNSIGNED NOT NULL, `compatibilityVersion` BIGINT UNSIGNED NOT NULL, PRIMARY KEY (`id`)) ENGINE=InnoDB",
	"INSERT IGNORE INTO `Tessera` (`id`, `compatibilityVersion`) VALUES (0, 1)",
	"CREATE TABLE IF NOT EXISTS `Checkpoint` (`id` TINYINT UNSIGNED NOT NULL, `note` MEDIUMBLOB NOT NULL, `published_at` BIGINT NOT NULL, PRIMARY KEY(`id`)) ENGINE=InnoDB",
	"CREATE TABLE IF NOT EXISTS `TreeState` (`id` TINYINT UNSIGNED NOT NULL, `size` BIGINT UNSIGNED NOT NULL, `root` TINYBLOB NOT NULL, PRIMARY KEY(`id`)) ENGINE=InnoDB",
	"CREATE TABLE IF NOT EXISTS `Subtree` (`level` TINYINT UNSIGNED NOT NULL, `index` BIGINT UNSIGNED NOT NULL, `nodes` MEDIUMBLOB NOT NULL, PRIMARY KEY(`level`, `index`)) ENGINE=InnoDB",
	"CREATE TABLE IF NOT EXISTS `TiledLeaves` (`tile_index` BIGINT UNSIGNED NOT NULL, `size` SMALLINT UNSIGNED NOT NULL, `data` LONGBLOB NOT NULL, PRIMARY KEY(`tile_index`)) ENGINE=InnoDB",
}

var mysqlSchema = driverSchema{
	name:       "MySQL",
	statements: schema,
	tables:     []string{"Tessera", "Checkpoint", "TreeState", "Subtree", "TiledLeaves"},
	others:     []string{"SeqCoord", "IntCoord"},
	otherKind:  "s3",
}

// MySQL is Tessera's MySQL storage driver for one log's database, with the
// read side trimmed to what tlog-tiles requests name and a health report.
// Its methods are safe for concurrent use.
type MySQL struct {
	loc      Location
	db       *sql.DB
	storage  *tmysql.Storage
	maxEntry int
	health   *healthProbe
}

// dsn returns the go-sql-driver data source name of loc's MySQL database
// with password.
// It holds the password: never log it.
func (loc Location) dsn(password string) (string, error) {
	if loc.Kind != "mysql" && loc.Kind != "aws" {
		return "", fmt.Errorf("log store %s has no MySQL database", loc)
	}
	c := gomysql.NewConfig()
	c.User, c.Passwd = loc.User, password
	c.Net, c.Addr, c.DBName = "tcp", fmt.Sprintf("%s:%d", loc.Host, loc.Port), loc.Database
	c.TLSConfig = loc.TLS
	c.Timeout = 5 * time.Second
	c.ReadTimeout, c.WriteTimeout = 60*time.Second, 60*time.Second
	return c.FormatDSN(), nil
}

// openDB returns a pool of at most maxConns connections to loc's MySQL
// database (none made yet), and its DSN, which holds the password: never
// log it.
func (loc Location) openDB(maxConns int) (*sql.DB, string, error) {
	password, err := loc.Password()
	if err != nil {
		return nil, "", err
	}
	dsn, err := loc.dsn(password)
	if err != nil {
		return nil, "", err
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, "", fmt.Errorf("log store %s: %w", loc, err)
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxLifetime(3 * time.Minute)
	return db, dsn, nil
}

// Password returns the password for loc: the content of its password_file
// (one trailing newline removed), else $VITRINE_MYSQL_PASSWORD, else "".
func (loc Location) Password() (string, error) {
	if loc.PasswordFile == "" {
		return os.Getenv(PasswordEnv), nil
	}
	b, err := os.ReadFile(loc.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("log store %s: reading the password file: %w", loc, err)
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), nil
}

// OpenMySQL connects to the database loc names, creates Tessera's schema if
// it is missing and checks that the server keeps what it commits: InnoDB
// tables and innodb_flush_log_at_trx_commit=1, without which an
// acknowledged append could be lost in a crash of the database server. It
// refuses to open otherwise.
func OpenMySQL(ctx context.Context, loc Location) (*MySQL, error) {
	db, _, err := loc.openDB(64)
	if err != nil {
		return nil, err
	}
	m, err := openMySQL(ctx, loc, db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("log store %s: %w", loc, err)
	}
	return m, nil
}

func openMySQL(ctx context.Context, loc Location, db *sql.DB) (*MySQL, error) {
	packet, err := prepareDatabase(ctx, db, mysqlSchema)
	if err != nil {
		return nil, err
	}
	maxEntry := maxEntryFor(packet)
	if maxEntry < 1024 {
		return nil, fmt.Errorf("the server's max_allowed_packet (%d bytes) cannot hold an entry bundle of %d entries of 1 KiB; raise it", packet, layout.EntryBundleWidth)
	}
	s, err := tmysql.New(ctx, db)
	if err != nil {
		return nil, err
	}
	m := &MySQL{loc: loc, db: db, storage: s, maxEntry: maxEntry}
	m.health = newHealthProbe(func(ctx context.Context) error {
		if err := db.PingContext(ctx); err != nil {
			return fmt.Errorf("log database unreachable: %w", err)
		}
		return nil
	})
	return m, nil
}

// maxEntryFor is the largest entry for which a full entry bundle (256
// entries, each with its 2-byte length) still fits in one statement of
// packet bytes, with room for the statement around it. Tessera rewrites a
// bundle whole with every batch, so a bundle that does not fit would fail
// every later batch of the log, not just the large entry's.
func maxEntryFor(packet int64) int {
	const statement = 1024
	n := (packet-statement)/layout.EntryBundleWidth - 2
	return int(min(max(n, 0), 1<<16-1))
}

// Location returns where the driver stores the log.
func (m *MySQL) Location() Location { return m.loc }

// MaxEntrySize is the largest entry the database can take (see OpenMySQL).
func (m *MySQL) MaxEntrySize() int { return m.maxEntry }

// MinCheckpointInterval is the shortest checkpoint interval the driver
// accepts.
func (m *MySQL) MinCheckpointInterval() time.Duration { return MinCheckpointInterval }

// Appender returns Tessera's MySQL appender, with batches that follow
// load (see followLoad: opts' batch age should be short), and a reader
// that serves tlog-tiles partial resources at exactly the width
// requested.
func (m *MySQL) Appender(ctx context.Context, opts *tessera.AppendOptions) (*tessera.Appender, tessera.LogReader, error) {
	a, r, err := m.storage.Appender(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	return &tessera.Appender{Add: newFollowLoad(ctx, a.Add, opts.BatchMaxSize()).Add}, trimmed{r}, nil
}

// Health reports whether the database answers, checking at most once a
// second.
func (m *MySQL) Health() tilestore.Health { return m.health.get() }

// OK reports whether Health is healthy.
func (m *MySQL) OK() bool { return m.Health().OK() }

// Wait releases the database connections. Call it once the context given
// to Appender has ended.
func (m *MySQL) Wait() { _ = m.db.Close() }

// trimmed serves partial tiles and entry bundles at the width requested.
// Tessera's MySQL driver keeps one row per tile or bundle, which grows as
// the log does, and answers a request for width p with the whole row once
// it holds at least p entries. C2SP tlog-tiles says a partial resource
// holds exactly p: a client reading the bundle of a checkpoint's last,
// partial, tile must not be handed entries the checkpoint does not cover
// (they exist once the tree has grown past the published checkpoint).
type trimmed struct{ tessera.LogReader }

func (t trimmed) ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	b, err := t.LogReader.ReadTile(ctx, level, index, p)
	if err != nil || p == 0 {
		return b, err
	}
	if len(b) < int(p)*sha256.Size {
		return nil, fmt.Errorf("tile %d/%d.p/%d: %w", level, index, p, os.ErrNotExist)
	}
	return b[:int(p)*sha256.Size], nil
}

func (t trimmed) ReadEntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error) {
	b, err := t.LogReader.ReadEntryBundle(ctx, index, p)
	if err != nil {
		return b, err
	}
	want := int(p)
	if want == 0 {
		want = layout.EntryBundleWidth
	}
	n, off := 0, 0
	for n < want {
		if len(b)-off < 2 {
			return nil, fmt.Errorf("entry bundle %d holds %d entries, want %d: %w", index, n, want, os.ErrNotExist)
		}
		l := int(binary.BigEndian.Uint16(b[off:]))
		if len(b)-off-2 < l {
			return nil, fmt.Errorf("entry bundle %d: entry %d is truncated", index, n)
		}
		off += 2 + l
		n++
	}
	return b[:off], nil
}
