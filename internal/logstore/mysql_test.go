package logstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/transparency-dev/tessera"
	tmysql "github.com/transparency-dev/tessera/storage/mysql"
	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/internal/logstore"
	"github.com/vitrine-dev/vitrine/internal/logstore/logstoretest"
)

func rawDB(t *testing.T, loc logstore.Location) *sql.DB {
	t.Helper()
	c := gomysql.NewConfig()
	pw, _ := loc.Password()
	c.User, c.Passwd, c.Net, c.Addr, c.DBName = loc.User, pw, "tcp", fmt.Sprintf("%s:%d", loc.Host, loc.Port), loc.Database
	db, err := sql.Open("mysql", c.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func appendOpts(t *testing.T, batch uint) *tessera.AppendOptions {
	t.Helper()
	skey, _, err := note.GenerateKey(rand.Reader, "example.com/mysql")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return tessera.NewAppendOptions().WithCheckpointSigner(signer).WithCheckpointInterval(time.Second).WithBatching(batch, 50*time.Millisecond)
}

func TestOpenMySQL(t *testing.T) {
	loc := logstoretest.NewDatabase(t)
	ctx := context.Background()
	for i := range 2 { // the second open finds the schema made by the first
		m, err := logstore.OpenMySQL(ctx, loc)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		if !m.OK() {
			t.Errorf("open %d: not healthy: %+v", i, m.Health())
		}
		if got := m.MaxEntrySize(); got < 60_000 || got > 1<<16-1 {
			t.Errorf("MaxEntrySize = %d", got)
		}
		m.Wait()
		if m.Health().OK() {
			// Health is cached for a second; after it, a closed pool fails.
			time.Sleep(1100 * time.Millisecond)
			if m.Health().OK() {
				t.Errorf("closed driver reports healthy")
			}
		}
	}
}

func TestOpenMySQLRefusesMyISAM(t *testing.T) {
	loc := logstoretest.NewDatabase(t)
	db := rawDB(t, loc)
	if _, err := db.Exec("CREATE TABLE `TreeState` (`id` TINYINT UNSIGNED NOT NULL, `size` BIGINT UNSIGNED NOT NULL, `root` TINYBLOB NOT NULL, PRIMARY KEY(`id`)) ENGINE=MyISAM"); err != nil {
		t.Fatal(err)
	}
	_, err := logstore.OpenMySQL(context.Background(), loc)
	if err == nil || !strings.Contains(err.Error(), "TreeState uses the MyISAM engine") {
		t.Fatalf("OpenMySQL over a MyISAM tree state = %v, want a refusal naming the table", err)
	}
}

// TestOpenMySQLRefusesAWSDatabase: a database that holds a log of
// Tessera's AWS driver (its tables share the name Tessera) is not opened as
// a MySQL driver's.
func TestOpenMySQLRefusesAWSDatabase(t *testing.T) {
	loc := logstoretest.NewDatabase(t)
	if _, err := rawDB(t, loc).Exec("CREATE TABLE SeqCoord (id INT UNSIGNED NOT NULL, next BIGINT UNSIGNED NOT NULL, PRIMARY KEY (id)) ENGINE=InnoDB"); err != nil {
		t.Fatal(err)
	}
	_, err := logstore.OpenMySQL(context.Background(), loc)
	if err == nil || !strings.Contains(err.Error(), "other driver (s3://)") {
		t.Fatalf("OpenMySQL over an AWS driver's database = %v, want a refusal", err)
	}
}

func TestOpenMySQLBadPassword(t *testing.T) {
	loc := logstoretest.NewDatabase(t)
	loc.User = "vitrine_nobody"
	pf := t.TempDir() + "/pw"
	if err := os.WriteFile(pf, []byte("hunter2-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	loc.PasswordFile = pf
	_, err := logstore.OpenMySQL(context.Background(), loc)
	if err == nil {
		t.Fatal("OpenMySQL as an unknown user succeeded")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the error shows the password: %v", err)
	}
	loc.PasswordFile = pf + ".missing"
	if _, err := logstore.OpenMySQL(context.Background(), loc); err == nil || !strings.Contains(err.Error(), "password file") {
		t.Errorf("missing password file: %v", err)
	}
}

// TestMaxAllowedPacket shows why a MySQL-backed log takes smaller entries
// than the journaled tiles: Tessera rewrites an entry bundle whole in one
// statement, and MariaDB 10.11's default max_allowed_packet (16 MiB, where
// MySQL 8's is 64 MiB) cannot hold a bundle of 256 entries of 64 KiB. With
// Tessera's driver alone, such a batch fails; the log refuses such entries
// up front (MaxEntrySize), so that no bundle outgrows the packet.
func TestMaxAllowedPacket(t *testing.T) {
	loc := logstoretest.NewDatabase(t)
	ctx := context.Background()
	m, err := logstore.OpenMySQL(ctx, loc)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Wait()
	var packet int64
	if err := rawDB(t, loc).QueryRow("SELECT @@max_allowed_packet").Scan(&packet); err != nil {
		t.Fatal(err)
	}
	if limit := m.MaxEntrySize(); int64(256*(limit+2)) > packet {
		t.Fatalf("MaxEntrySize %d: a full bundle (%d bytes) exceeds max_allowed_packet %d", limit, 256*(limit+2), packet)
	}
	if packet >= 256*(1<<16+1) {
		t.Skipf("max_allowed_packet is %d: a full bundle of the largest entries fits", packet)
	}
	// Tessera's driver alone, one batch of 256 entries of 65535 bytes.
	s, err := tmysql.New(ctx, rawDB(t, loc))
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The batch is cut at 256 entries, never by age: under -race on a
	// busy machine, hashing 256 entries of 64 KiB can outlast any short
	// age and split the bundle over two batches.
	a, _, err := s.Appender(actx, appendOpts(t, 256).WithBatching(256, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	entry := bytes.Repeat([]byte("x"), 1<<16-1)
	futures := make([]tessera.IndexFuture, 256)
	for i := range futures {
		futures[i] = a.Add(ctx, tessera.NewEntry(entry))
	}
	_, err = futures[0]()
	// The server answers with its packet error and drops the connection;
	// the client may see either first.
	var me *gomysql.MySQLError
	if err == nil || !(errors.As(err, &me) || strings.Contains(err.Error(), "packet") || errors.Is(err, driver.ErrBadConn)) {
		t.Fatalf("Tessera's driver appending a 16 MiB bundle on max_allowed_packet=%d: %v; want the server's packet error or its dropping the connection", packet, err)
	}
	t.Logf("as expected, Tessera's MySQL driver on max_allowed_packet=%d: %v", packet, err)
}

// TestTrimmedReads checks that partial tiles and bundles come back at the
// width requested, though the driver's row has grown past it.
func TestTrimmedReads(t *testing.T) {
	loc := logstoretest.NewDatabase(t)
	ctx := context.Background()
	m, err := logstore.OpenMySQL(ctx, loc)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Wait()
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	a, r, err := m.Appender(actx, appendOpts(t, 16))
	if err != nil {
		t.Fatal(err)
	}
	var entries [][]byte
	for i := range 10 {
		e := fmt.Appendf(nil, "entry %d", i)
		entries = append(entries, e)
		if _, err := a.Add(ctx, tessera.NewEntry(e))(); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []uint8{1, 3, 10} {
		tile, err := r.ReadTile(ctx, 0, 0, p)
		if err != nil {
			t.Fatal(err)
		}
		if len(tile) != int(p)*32 {
			t.Errorf("tile 0/0.p/%d: %d bytes, want %d", p, len(tile), int(p)*32)
		}
		for i := range int(p) {
			h := sha256.Sum256(append([]byte{0}, entries[i]...))
			if !bytes.Equal(tile[i*32:(i+1)*32], h[:]) {
				t.Errorf("tile 0/0.p/%d: hash %d is not entry %d's", p, i, i)
			}
		}
		b, err := r.ReadEntryBundle(ctx, 0, p)
		if err != nil {
			t.Fatal(err)
		}
		var want []byte
		for i := range int(p) {
			want = append(want, byte(len(entries[i])>>8), byte(len(entries[i])))
			want = append(want, entries[i]...)
		}
		if !bytes.Equal(b, want) {
			t.Errorf("bundle 0.p/%d = %q, want %q", p, b, want)
		}
	}
	for _, p := range []uint8{0, 11} {
		if _, err := r.ReadTile(ctx, 0, 0, p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("tile 0/0.p/%d of 10 entries: %v, want ErrNotExist", p, err)
		}
		if _, err := r.ReadEntryBundle(ctx, 0, p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("bundle 0.p/%d of 10 entries: %v, want ErrNotExist", p, err)
		}
	}
}
