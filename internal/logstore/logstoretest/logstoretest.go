// Package logstoretest gives tests a MySQL or MariaDB database of their
// own, and an S3 bucket.
//
// The MySQL server is the one $VITRINE_TEST_MYSQL names (a log store
// location, default mysql://root@127.0.0.1:3306/test, the password as for
// any location); each test gets a new database on it, dropped when the
// test ends. Where no server answers, the test skips and says so; .ci/run
// starts the machine's MariaDB.
//
// The S3 server is, by default, a gofakes3 process of the test's own
// (github.com/johannesboyne/gofakes3/cmd/gofakes3 on $PATH, which .ci/run
// installs), storing into a bolt database under the test's temporary
// directory, or else the one $VITRINE_TEST_S3 names (an s3:// location
// whose bucket, prefix, endpoint, region and credentials_file are used;
// each test gets a prefix of its own under it).
package logstoretest

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/vitrine-dev/vitrine/internal/logstore"
)

// Server returns the location of the test server's database.
func Server() string {
	if s := os.Getenv("VITRINE_TEST_MYSQL"); s != "" {
		return s
	}
	return "mysql://root@127.0.0.1:3306/test"
}

// NewDatabase creates an empty database on the test server, drops it when
// the test ends, and returns its location.
func NewDatabase(tb testing.TB) logstore.Location {
	tb.Helper()
	base, err := logstore.ParseLocation(Server())
	if err != nil {
		tb.Fatalf("VITRINE_TEST_MYSQL: %v", err)
	}
	pw, err := base.Password()
	if err != nil {
		tb.Fatal(err)
	}
	c := gomysql.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr, c.DBName = base.User, pw, "tcp", fmt.Sprintf("%s:%d", base.Host, base.Port), base.Database
	c.Timeout = 3 * time.Second
	db, err := sql.Open("mysql", c.FormatDSN())
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		tb.Skipf("no MySQL or MariaDB server at %s (set VITRINE_TEST_MYSQL; .ci/run starts the machine's MariaDB): %v", base, err)
	}
	name := fmt.Sprintf("vitrine_test_%d_%08x", os.Getpid(), rand.Uint32())
	if _, err := db.ExecContext(ctx, "CREATE DATABASE `"+name+"`"); err != nil {
		tb.Fatalf("creating test database: %v", err)
	}
	tb.Cleanup(func() {
		db, err := sql.Open("mysql", c.FormatDSN())
		if err != nil {
			tb.Error(err)
			return
		}
		defer db.Close()
		if _, err := db.Exec("DROP DATABASE IF EXISTS `" + name + "`"); err != nil {
			tb.Errorf("dropping test database %s: %v", name, err)
		}
	})
	loc := base
	loc.Database = name
	return loc
}
