package postgres

import (
	"errors"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/vitrine-dev/vitrine/internal/gotest"
	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/internal/store/storetest"
	"github.com/vitrine-dev/vitrine/telemetry"
)

// testDSN returns the URL of a new, empty schema on the test server,
// dropped when t ends.
func testDSN(t testing.TB) string { return gotest.PostgresDSN(t) }

func redact(dsn string) string { return gotest.Redact(dsn) }

func openTest(t *testing.T) (*Store, string) {
	t.Helper()
	dsn := testDSN(t)
	s, err := Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dsn
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openTest(t)
		return s
	})
}

func TestReopen(t *testing.T) {
	s, dsn := openTest(t)
	storetest.Reopen(t, s, func() store.Store {
		s, err := Open(t.Context(), dsn)
		if err != nil {
			t.Fatalf("reopening: %v", err)
		}
		return s
	})
}

func TestOpenThroughSpec(t *testing.T) {
	dsn := testDSN(t)
	s, err := store.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*Store); !ok {
		t.Errorf("store.Open(%q) = %T, want *postgres.Store", redact(dsn), s)
	}
}

// TestDurableSettings checks that commits wait for the WAL to be flushed,
// whatever the server's default.
func TestDurableSettings(t *testing.T) {
	s, _ := openTest(t)
	var v string
	if err := s.pool.QueryRow(t.Context(), "SHOW synchronous_commit").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != "on" {
		t.Errorf("synchronous_commit = %s, want on", v)
	}
}

// TestNoPersonalFieldInClear reads every column of every table of the
// store's schema and checks that no endpoint id, URL or path is in any in
// clear, and that the sealed halves the store returns open to them.
func TestNoPersonalFieldInClear(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	recs := []telemetry.Record{
		storetest.Record(storetest.Hash("a"), 0, "EICAR-Test-File"),
		storetest.Record(storetest.Hash("b"), 0, ""),
	}
	recs[0].URL, recs[0].Path = "https://PERSONAL-URL.example/x", "C:/Users/PERSONAL-PATH/eicar.com"
	recs[1].URL, recs[1].Path = "https://PERSONAL-URL.example/y", "/home/PERSONAL-PATH/b"
	if _, err := s.PutBatch(ctx, storetest.Batch("endpoint-PERSONAL-ID", "b1", recs...)); err != nil {
		t.Fatal(err)
	}
	rows, err := s.pool.Query(ctx, `SELECT table_name, column_name, data_type FROM information_schema.columns
		WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position`)
	if err != nil {
		t.Fatal(err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ Table, Column, Type string }])
	if err != nil {
		t.Fatal(err)
	}
	if len(cols) < 20 {
		t.Fatalf("found only columns %v", cols)
	}
	for _, c := range cols {
		for _, marker := range []string{"PERSONAL-URL", "PERSONAL-PATH", "PERSONAL-ID"} {
			// bytea columns are searched as bytes, the others as text.
			col := pgx.Identifier{c.Column}.Sanitize()
			cond := `position($1 IN ` + col + `::text) > 0`
			if c.Type == "bytea" {
				cond = `position(convert_to($1, 'UTF8') IN ` + col + `) > 0`
			}
			var n int
			if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{c.Table}.Sanitize()+` WHERE `+cond, marker).Scan(&n); err != nil {
				t.Fatalf("%s.%s: %v", c.Table, c.Column, err)
			}
			if n > 0 {
				t.Errorf("%s in clear in %s.%s", marker, c.Table, c.Column)
			}
		}
	}
	got, _, err := s.Records(ctx, store.RecordQuery{Pseudonym: storetest.Pseudonym("endpoint-PERSONAL-ID")})
	if err != nil || len(got) != 2 {
		t.Fatalf("Records = %d, %v", len(got), err)
	}
	for i, sr := range got {
		p, err := storetest.Unseal(sr)
		if err != nil || p.EndpointID != "endpoint-PERSONAL-ID" || p.URL != recs[i].URL || p.Path != recs[i].Path {
			t.Errorf("record %d opens to %+v, %v", i, p, err)
		}
	}
}

func TestMigrations(t *testing.T) {
	ctx := t.Context()
	dsn := testDSN(t)
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutBatch(ctx, storetest.Batch("ep-1", "b1", storetest.Record(storetest.Hash("a"), 0, ""))); err != nil {
		t.Fatal(err)
	}
	s.Close()

	next := append(slices.Clone(migrations), `CREATE TABLE added_later (x integer); INSERT INTO added_later VALUES (7);`)
	s, err = open(ctx, dsn, next)
	if err != nil {
		t.Fatalf("opening with one more migration: %v", err)
	}
	var x, version int
	if err := s.pool.QueryRow(ctx, "SELECT x FROM added_later").Scan(&x); err != nil || x != 7 {
		t.Errorf("the new step did not run: %d, %v", x, err)
	}
	if err := s.pool.QueryRow(ctx, "SELECT version FROM schema_version").Scan(&version); err != nil || version != len(next) {
		t.Errorf("schema_version = %d, %v; want %d", version, err, len(next))
	}
	if n, err := s.CountRecords(ctx); err != nil || n != 1 {
		t.Errorf("CountRecords after migrating = %d, %v; want 1", n, err)
	}
	s.Close()

	_, err = Open(ctx, dsn)
	if !errors.Is(err, store.ErrSchemaNewer) {
		t.Fatalf("opening a newer database: %v, want ErrSchemaNewer", err)
	}
	t.Logf("error: %v", err)

	broken := append(slices.Clone(next), `CREATE TABLE fine (x integer); SELECT no_such_function();`)
	if _, err := open(ctx, dsn, broken); err == nil {
		t.Fatal("a failing migration step succeeded")
	}
	s, err = open(ctx, dsn, next)
	if err != nil {
		t.Fatalf("reopening after a failed migration: %v", err)
	}
	defer s.Close()
	var exists bool
	if err := s.pool.QueryRow(ctx, "SELECT to_regclass('fine') IS NOT NULL").Scan(&exists); err != nil || exists {
		t.Errorf("table of the failed step exists: %v, %v", exists, err)
	}
}

// TestConcurrentOpen opens one schema from several goroutines at once, as
// several Vitrine processes starting together would.
func TestConcurrentOpen(t *testing.T) {
	dsn := testDSN(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			s, err := Open(t.Context(), dsn)
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
