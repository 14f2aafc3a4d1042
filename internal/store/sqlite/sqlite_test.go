package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/internal/store/storetest"
	"github.com/vitrine-dev/vitrine/telemetry"
)

func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) })
}

func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	storetest.Reopen(t, s, func() store.Store {
		s, err := Open(t.Context(), path)
		if err != nil {
			t.Fatalf("reopening: %v", err)
		}
		return s
	})
}

func TestOpenPathNeedsNoEscaping(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a dir?#%", "store.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("no database at %q", path)
	}
}

// TestDurableSettings checks the settings that make a returned PutBatch
// durable: WAL with a sync at every commit.
func TestDurableSettings(t *testing.T) {
	s := openTemp(t)
	for _, db := range []interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}{s.w, s.read} {
		var mode string
		var sync int
		if err := db.QueryRowContext(t.Context(), "PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRowContext(t.Context(), "PRAGMA synchronous").Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if mode != "wal" || sync != 2 {
			t.Errorf("journal_mode %s, synchronous %d; want wal, 2 (FULL)", mode, sync)
		}
	}
	var pageSize int
	if err := s.read.QueryRowContext(t.Context(), "PRAGMA page_size").Scan(&pageSize); err != nil || pageSize != PageSize {
		t.Errorf("page_size = %d, %v; want %d", pageSize, err, PageSize)
	}
}

// TestNoPersonalFieldInClear checks that no endpoint id, URL or path is in
// the database in clear: not in any column of any table, nor anywhere in
// the database and WAL files read as bytes; and that the sealed halves
// the store returns open to them.
func TestNoPersonalFieldInClear(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs := []telemetry.Record{
		storetest.Record(storetest.Hash("a"), 0, "EICAR-Test-File"),
		storetest.Record(storetest.Hash("b"), 0, ""),
	}
	recs[0].URL, recs[0].Path = "https://PERSONAL-URL.example/x", "C:/Users/PERSONAL-PATH/eicar.com"
	recs[1].URL, recs[1].Path = "https://PERSONAL-URL.example/y", "/home/PERSONAL-PATH/b"
	if _, err := s.PutBatch(t.Context(), storetest.Batch("endpoint-PERSONAL-ID", "b1", recs...)); err != nil {
		t.Fatal(err)
	}
	s.lock()
	if err := s.foldLocked(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	s.unlock()
	markers := []string{"PERSONAL-URL", "PERSONAL-PATH", "PERSONAL-ID"}
	for table, cols := range tables(t, s.read) {
		rows, err := s.read.QueryContext(t.Context(), "SELECT * FROM "+table)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				if b, ok := v.([]byte); ok {
					v = string(b)
				}
				for _, m := range markers {
					if strings.Contains(fmt.Sprint(v), m) {
						t.Errorf("%s in clear in %s.%s", m, table, cols[i])
					}
				}
			}
		}
		rows.Close()
	}
	for _, f := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range markers {
			if strings.Contains(string(b), m) {
				t.Errorf("%s in clear in %s", m, filepath.Base(f))
			}
		}
	}
	got, _, err := s.Records(t.Context(), store.RecordQuery{Pseudonym: storetest.Pseudonym("endpoint-PERSONAL-ID")})
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

// tables returns every table of the database and its columns.
func tables(t *testing.T, db *sql.DB) map[string][]string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), `SELECT name FROM sqlite_schema WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	rows.Close()
	out := map[string][]string{}
	for _, n := range names {
		rows, err := db.QueryContext(t.Context(), `SELECT name FROM pragma_table_info(?)`, n)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				t.Fatal(err)
			}
			out[n] = append(out[n], c)
		}
		rows.Close()
	}
	if len(out) < 5 {
		t.Fatalf("found only tables %v", out)
	}
	return out
}

func TestMigrations(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutBatch(ctx, storetest.Batch("ep-1", "b1", storetest.Record(storetest.Hash("a"), 0, ""))); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// A later version adds a step: opening the older database applies it
	// and keeps the data.
	next := append(append([]string(nil), migrations...), `CREATE TABLE added_later (x INTEGER); INSERT INTO added_later VALUES (7);`)
	s, err = open(ctx, path, next, defaultFoldPolicy)
	if err != nil {
		t.Fatalf("opening with one more migration: %v", err)
	}
	var x, version int
	if err := s.read.QueryRowContext(ctx, "SELECT x FROM added_later").Scan(&x); err != nil || x != 7 {
		t.Errorf("the new step did not run: %d, %v", x, err)
	}
	if err := s.read.QueryRowContext(ctx, "SELECT version FROM schema_version").Scan(&version); err != nil || version != len(next) {
		t.Errorf("schema_version = %d, %v; want %d", version, err, len(next))
	}
	if n, err := s.CountRecords(ctx); err != nil || n != 1 {
		t.Errorf("CountRecords after migrating = %d, %v; want 1", n, err)
	}
	s.Close()

	// That database is now newer than this Vitrine.
	_, err = Open(ctx, path)
	if !errors.Is(err, store.ErrSchemaNewer) {
		t.Fatalf("opening a newer database: %v, want ErrSchemaNewer", err)
	}
	t.Logf("error: %v", err)

	// A failing step leaves the database as it was.
	broken := append(append([]string(nil), next...), `CREATE TABLE fine (x INTEGER); SELECT no_such_function();`)
	if _, err := open(ctx, path, broken, defaultFoldPolicy); err == nil {
		t.Fatal("a failing migration step succeeded")
	}
	s, err = open(ctx, path, next, defaultFoldPolicy)
	if err != nil {
		t.Fatalf("reopening after a failed migration: %v", err)
	}
	defer s.Close()
	if err := s.read.QueryRowContext(ctx, "SELECT count(*) FROM fine").Scan(&x); err == nil {
		t.Error("table of the failed step exists")
	}
}

func TestStatementsPerKindBounded(t *testing.T) {
	s := openTemp(t)
	for n := 1; n <= 600; n += 37 {
		var recs []telemetry.Record
		for i := range n {
			recs = append(recs, storetest.Record(storetest.Hash(fmt.Sprint(i)), time.Duration(i), ""))
		}
		if _, err := s.PutBatch(t.Context(), storetest.Batch("ep-1", fmt.Sprint(n), recs...)); err != nil {
			t.Fatal(err)
		}
	}
	perKind := map[stmtKind]int{}
	s.lock() // the writer's background work prepares statements too
	for k := range s.stmts {
		perKind[k.kind]++
	}
	s.unlock()
	for k, n := range perKind {
		if n > 9 { // 256, 128, …, 1
			t.Errorf("%d statements of kind %d prepared, want at most 9", n, k)
		}
	}
}

// TestConformanceFoldingOften runs the suite with folds in the background
// after every batch, a hash per transaction, and in PutBatch itself,
// racing with every read.
func TestConformanceFoldingOften(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := open(t.Context(), filepath.Join(t.TempDir(), "store.db"), migrations,
			foldPolicy{records: 1, interval: time.Millisecond, maxPending: 50, chunk: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// crashAndReopen crashes s and opens the store at path again, to be
// closed when the test ends.
func crashAndReopen(t *testing.T, s *Store, path string) *Store {
	t.Helper()
	crash(t, s)
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// crash stops s as kill -9 would: without folding what is pending.
func crash(t *testing.T, s *Store) {
	t.Helper()
	s.lock()
	s.closed.Store(true)
	close(s.stop)
	s.unlock()
	<-s.folded
	for _, st := range s.stmts {
		st.Close()
	}
	if err := errors.Join(s.w.Close(), s.writeDB.Close(), s.read.Close()); err != nil {
		t.Fatal(err)
	}
}

// TestCrashBeforeFold checks that Open rebuilds the aggregates of batches
// stored but not folded when the process died, and numbers their changes
// after every number handed out before.
func TestCrashBeforeFold(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := open(ctx, path, migrations, foldPolicy{records: 1 << 30, interval: time.Hour, maxPending: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := storetest.Hash("a"), storetest.Hash("b"), storetest.Hash("c")
	put := func(s *Store, bt *store.Batch) {
		t.Helper()
		if ok, err := s.PutBatch(ctx, bt); err != nil || !ok {
			t.Fatalf("PutBatch = %v, %v", ok, err)
		}
	}
	put(s, storetest.Batch("ep-1", "1", storetest.Record(a, 0, "X"), storetest.Record(b, time.Hour, "")))
	s.lock()
	if err := s.foldLocked(ctx, false); err != nil {
		t.Fatal(err)
	}
	s.unlock()
	// Not folded: a sighting by ep-1 again (no new prevalence), a new one
	// by ep-2, and one sighted twice while pending.
	put(s, storetest.Batch("ep-1", "2", storetest.Record(a, 2*time.Hour, "X")))
	put(s, storetest.Batch("ep-2", "1", storetest.Record(a, -time.Hour, "Y"), storetest.Record(c, 0, "")))
	put(s, storetest.Batch("ep-2", "2", storetest.Record(c, time.Minute, "")))
	hashes := []string{a, b, c}
	want, err := s.Aggregates(ctx, hashes)
	if err != nil {
		t.Fatal(err)
	}
	_, cursor, err := s.ChangedAggregates(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	s = crashAndReopen(t, s, path)
	got, err := s.Aggregates(ctx, hashes)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after the crash:\n%v\nwant\n%v", got, want)
	}
	if want[a].Prevalence != 2 || want[c].Prevalence != 1 {
		t.Errorf("before the crash: %v", want)
	}
	// The recovered changes are numbered after the cursor a follower may
	// hold from before the crash.
	changed, _, err := s.ChangedAggregates(ctx, cursor, 100)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ch := range changed {
		names = append(names, ch.SHA256[:8])
	}
	if len(changed) != 2 {
		t.Errorf("after the crash, ChangedAggregates(%d) = %v, want a and c again", cursor, names)
	}
	if n, err := s.CountRecords(ctx); err != nil || n != 6 {
		t.Errorf("CountRecords = %d, %v; want 6", n, err)
	}
}

// TestGroupCommit stores queued batches in one transaction: a canceled one
// and a duplicate are left out without harming the others, and a hash
// sighted twice by one endpoint in the group counts once.
func TestGroupCommit(t *testing.T) {
	s := openTemp(t)
	a, b := storetest.Hash("a"), storetest.Hash("b")
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	reqs := []*putRequest{
		{ctx: t.Context(), b: storetest.Batch("ep-1", "1", storetest.Record(a, 0, "X"), storetest.Record(b, 0, ""))},
		{ctx: canceled, b: storetest.Batch("ep-2", "1", storetest.Record(a, 0, "X"))},
		{ctx: t.Context(), b: storetest.Batch("ep-1", "2", storetest.Record(a, time.Hour, "X"))},
		{ctx: t.Context(), b: storetest.Batch("ep-1", "1", storetest.Record(b, 0, ""))},
		{ctx: t.Context(), b: storetest.Batch("ep-3", "1", storetest.Record(b, 0, ""))},
	}
	for _, r := range reqs {
		r.w, r.done = newBatchWrite(r.b), make(chan struct{})
	}
	s.queue = reqs
	s.lock()
	s.writeQueued()
	s.unlock()
	want := []struct {
		stored bool
		err    bool
	}{{true, false}, {false, true}, {true, false}, {false, false}, {true, false}}
	for i, r := range reqs {
		select {
		case <-r.done:
		default:
			t.Errorf("request %d not done", i)
		}
		if r.stored != want[i].stored || (r.err != nil) != want[i].err {
			t.Errorf("request %d: stored %v, err %v; want stored %v, an error %v", i, r.stored, r.err, want[i].stored, want[i].err)
		}
	}
	if n, err := s.CountRecords(t.Context()); err != nil || n != 4 {
		t.Errorf("CountRecords = %d, %v; want 4", n, err)
	}
	got, err := s.Aggregates(t.Context(), []string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if got[a].Prevalence != 1 || got[a].Detections["X"] != 2 || got[b].Prevalence != 2 {
		t.Errorf("aggregates = %v; want a at prevalence 1 with 2 X, b at prevalence 2", got)
	}
}

// TestCrashBeforeRemoteFold checks that remote aggregates and their cursor
// become durable together: after a crash before the fold, the cursor is
// the one of the last fold, and Global holds nothing given after it, so
// that pulling again from the cursor restores exactly what was lost.
func TestCrashBeforeRemoteFold(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := open(ctx, path, migrations, foldPolicy{records: 1 << 30, interval: time.Hour, maxPending: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	a, b := storetest.Hash("a"), storetest.Hash("b")
	agg := func(sha string, prevalence int64) store.Aggregate {
		return store.Aggregate{SHA256: sha, Prevalence: prevalence, FirstSeen: storetest.T0, LastSeen: storetest.T0}
	}
	if err := s.PutRemote(ctx, "moscow", []store.Aggregate{agg(a, 1)}, 10); err != nil {
		t.Fatal(err)
	}
	s.lock()
	if err := s.foldLocked(ctx, false); err != nil {
		t.Fatal(err)
	}
	s.unlock()
	if err := s.PutRemote(ctx, "moscow", []store.Aggregate{agg(a, 5), agg(b, 2)}, 20); err != nil {
		t.Fatal(err)
	}
	if g, err := s.Global(ctx, []string{a, b}); err != nil || g[a].Prevalence != 5 || g[b].Prevalence != 2 {
		t.Fatalf("Global before the crash = %v, %v; want a at 5 and b at 2", g, err)
	}
	s = crashAndReopen(t, s, path)
	if c, err := s.RemoteCursor(ctx, "moscow"); err != nil || c != 10 {
		t.Errorf("RemoteCursor after the crash = %d, %v; want 10, the last folded", c, err)
	}
	g, err := s.Global(ctx, []string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := g[b]; ok || g[a].Prevalence != 1 {
		t.Errorf("Global after the crash = %v; want only a at 1, as of cursor 10", g)
	}
}

// TestFoldFailureKeepsRemote checks that remote aggregates a failed fold
// took out of pending still count, that what PutRemote gives meanwhile
// replaces them, and that the fold is resumed.
func TestFoldFailureKeepsRemote(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	a := storetest.Hash("a")
	agg := func(prevalence int64) []store.Aggregate {
		return []store.Aggregate{{SHA256: a, Prevalence: prevalence, FirstSeen: storetest.T0, LastSeen: storetest.T0}}
	}
	s.lock()
	if err := s.PutRemote(ctx, "moscow", agg(3), 7); err != nil {
		t.Fatal(err)
	}
	// A fold that fails after taking the remote part: a canceled context
	// makes inTx roll back.
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.foldLocked(canceled, false); err == nil {
		t.Fatal("fold with a canceled context succeeded")
	}
	s.unlock()
	if g, err := s.Global(ctx, []string{a}); err != nil || g[a].Prevalence != 3 {
		t.Fatalf("Global after a failed fold = %v, %v; want prevalence 3", g, err)
	}
	if err := s.PutRemote(ctx, "moscow", agg(4), 8); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if c, err := s.RemoteCursor(ctx, "moscow"); err != nil || c != 8 {
		t.Errorf("RemoteCursor = %d, %v; want 8", c, err)
	}
	if g, err := s.Global(ctx, []string{a}); err != nil || g[a].Prevalence != 4 {
		t.Errorf("Global = %v, %v; want prevalence 4", g, err)
	}
}

// TestLookupsSearchByKey checks that every lookup query finds its rows by
// primary key rather than scanning a table: with a scan, a verdict costs
// time in proportion to the store's size.
func TestLookupsSearchByKey(t *testing.T) {
	s := openTemp(t)
	ctx := t.Context()
	// Some rows, so that the planner has tables to choose between.
	for i := range 50 {
		h := storetest.Hash(fmt.Sprint(i))
		if _, err := s.PutBatch(ctx, storetest.Batch("ep-1", fmt.Sprint(i), storetest.Record(h, 0, "X"))); err != nil {
			t.Fatal(err)
		}
		if err := s.PutRemote(ctx, "moscow", []store.Aggregate{{SHA256: h, Prevalence: 1, FirstSeen: storetest.T0, LastSeen: storetest.T0}}, int64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	s.lock()
	if err := s.foldLocked(ctx, false); err != nil {
		t.Fatal(err)
	}
	s.unlock()
	type query struct {
		sql  string
		args []any
	}
	queries := map[string]query{}
	for name, q := range map[string]string{"local": localQuery, "local detections": localDetectionsQuery, "remote": remoteQuery} {
		queries[name] = query{q, []any{`["` + storetest.Hash("1") + `"]`}}
	}
	for name, rq := range map[string]store.RecordQuery{
		"records by hash":                    {SHA256: storetest.Hash("1"), Limit: 10},
		"records by hash, endpoint and time": {SHA256: storetest.Hash("1"), Pseudonym: storetest.Pseudonym("ep-1"), From: storetest.T0, To: storetest.T0.Add(time.Hour), Limit: 10},
		"records by endpoint":                {Pseudonym: storetest.Pseudonym("ep-1"), Limit: 10},
		"records by endpoint and time":       {Pseudonym: storetest.Pseudonym("ep-1"), From: storetest.T0, To: storetest.T0.Add(time.Hour), After: 3, Limit: 10},
	} {
		args, err := recordsArgs(rq, []int64{1, 2})
		if err != nil {
			t.Fatal(err)
		}
		queries[name] = query{recordsSQL(rq), args}
	}
	queries["hash records deleted"] = query{specs[deleteHashRecords].sql(2), []any{storetest.Hash("1"), 1, storetest.Hash("2"), 2}}
	for name, q := range queries {
		rows, err := s.read.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q.sql, q.args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		searched := false
		for _, step := range plan {
			for _, table := range []string{"aggregates", "detections", "remote_aggregates", "batches", "records"} {
				if strings.HasPrefix(step, "SCAN "+table) || strings.HasPrefix(step, "SCAN "+table[:1]+" ") || step == "SCAN "+table[:1] {
					t.Errorf("%s query scans %s: %q", name, table, plan)
				}
			}
			if strings.HasPrefix(step, "SCAN hash_records") {
				t.Errorf("%s query scans hash_records: %q", name, plan)
			}
			if strings.HasPrefix(step, "SEARCH ") && strings.Contains(step, "PRIMARY KEY") {
				searched = true
			}
		}
		if !searched {
			t.Errorf("%s query: no search by primary key in %q", name, plan)
		}
	}
}

// TestRemoteDuringFold checks what Global reads while a fold is writing
// remote aggregates: what PutRemote gave since the fold started counts,
// and replaces, not adds to, what the fold holds.
func TestRemoteDuringFold(t *testing.T) {
	s := openTemp(t)
	ctx := t.Context()
	a, b := storetest.Hash("a"), storetest.Hash("b")
	agg := func(sha string, prevalence int64) store.Aggregate {
		return store.Aggregate{SHA256: sha, Prevalence: prevalence, FirstSeen: storetest.T0, LastSeen: storetest.T0}
	}
	if err := s.PutRemote(ctx, "moscow", []store.Aggregate{agg(a, 1), agg(b, 1)}, 1); err != nil {
		t.Fatal(err)
	}
	// A fold's first step, as foldLocked takes it.
	s.lock()
	defer s.unlock()
	s.pendMu.Lock()
	s.folding, s.pend = s.pend, newPending()
	s.plan = newFoldPlan(s.folding)
	s.pendMu.Unlock()
	if err := s.PutRemote(ctx, "moscow", []store.Aggregate{agg(a, 2)}, 2); err != nil {
		t.Fatal(err)
	}
	g, err := s.Global(ctx, []string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if g[a].Prevalence != 2 || g[b].Prevalence != 1 {
		t.Errorf("Global during a fold = %v; want a at 2 (the newer), b at 1 (the folding)", g)
	}
}

// TestCrashDuringFold checks that Open completes a fold that was under way
// when the process died, counting what the fold had written once: the
// aggregates after the crash are those before it.
func TestCrashDuringFold(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := open(ctx, path, migrations, foldPolicy{records: 1 << 30, interval: time.Hour, maxPending: 1 << 30, chunk: 3})
	if err != nil {
		t.Fatal(err)
	}
	var hashes []string
	for i := range 10 {
		hashes = append(hashes, storetest.Hash(fmt.Sprint(i)))
	}
	put := func(ep, id string, recs ...telemetry.Record) {
		t.Helper()
		if ok, err := s.PutBatch(ctx, storetest.Batch(ep, id, recs...)); err != nil || !ok {
			t.Fatalf("PutBatch = %v, %v", ok, err)
		}
	}
	var recs []telemetry.Record
	for i, h := range hashes {
		recs = append(recs, storetest.Record(h, time.Duration(i)*time.Minute, "X"))
	}
	put("ep-1", "1", recs...)
	put("ep-2", "1", recs[:5]...)
	if err := s.PutRemote(ctx, "moscow", []store.Aggregate{{SHA256: hashes[0], Prevalence: 7, FirstSeen: storetest.T0, LastSeen: storetest.T0}}, 5); err != nil {
		t.Fatal(err)
	}
	// Start a fold, write two chunks of three hashes, and let a batch in
	// between, as the folder does.
	s.lock()
	s.pendMu.Lock()
	s.folding, s.pend = s.pend, newPending()
	s.plan = newFoldPlan(s.folding)
	s.pendMu.Unlock()
	for range 2 {
		if last, err := s.foldStep(ctx, 3); err != nil || last {
			t.Fatalf("foldStep = %v, %v", last, err)
		}
	}
	s.unlock()
	put("ep-3", "1", storetest.Record(hashes[1], time.Hour, "Y"), storetest.Record(hashes[9], 0, ""))
	put("ep-1", "2", storetest.Record(hashes[2], 2*time.Hour, "X")) // sighted before: no new prevalence
	want, err := s.Global(ctx, hashes)
	if err != nil {
		t.Fatal(err)
	}
	if want[hashes[1]].Prevalence != 3 || want[hashes[2]].Prevalence != 2 || want[hashes[9]].Prevalence != 2 ||
		want[hashes[0]].Prevalence != 9 || want[hashes[2]].Detections["X"] != 3 {
		t.Fatalf("before the crash: %v", want)
	}
	s = crashAndReopen(t, s, path)
	got, err := s.Global(ctx, hashes)
	if err != nil {
		t.Fatal(err)
	}
	// The remote aggregate was not written: its cursor, 5, is not durable,
	// and pulling from the durable one (0) brings it again.
	if c, err := s.RemoteCursor(ctx, "moscow"); err != nil || c != 0 {
		t.Errorf("RemoteCursor = %d, %v; want 0", c, err)
	}
	w0 := want[hashes[0]]
	w0.Prevalence -= 7
	want[hashes[0]] = w0
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after the crash:\n%v\nwant\n%v", got, want)
	}
	var target int64
	var done string
	if err := s.read.QueryRowContext(ctx, `SELECT target, done_through FROM fold_state`).Scan(&target, &done); err != nil || target != 0 || done != "" {
		t.Errorf("fold_state after recovery: target %d, done_through %q, %v; want none under way", target, done, err)
	}
}

// TestMigrateToSealed migrates a version-3 database, whose personal halves
// are in clear, to the current schema: batches keep their records, found
// by endpoint (through first_id) and by hash (through hash_records), and
// the clear halves move to legacy_personal, out of the personal table.
func TestMigrateToSealed(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "store.db")
	if err := create(ctx, path); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", DSN(path, pragmas...))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, conn, migrations[:3]); err != nil {
		t.Fatal(err)
	}
	a, b := storetest.Hash("a"), storetest.Hash("b")
	ps := storetest.Pseudonym("ep-1")
	for _, q := range []string{
		`INSERT INTO batches (pk, endpoint_id, batch_id, pseudonym, country, received, count) VALUES (1, 'ep-1', 'b1', '` + ps + `', 'DE', 1, 2), (2, 'ep-2', 'b1', 'other', 'DE', 2, 1)`,
		`INSERT INTO records VALUES (1, 1, 10, 'file', '` + a + `', 1, '', 'p', 1), (2, 1, 20, 'file', '` + b + `', 1, '', 'p', 1), (3, 2, 30, 'file', '` + a + `', 1, '', 'p', 1)`,
		`INSERT INTO personal VALUES (1, 'ep-1', '', 'C:/x'), (2, 'ep-1', '', 'C:/y'), (3, 'ep-2', '', 'C:/z')`,
		`UPDATE fold_state SET record_id = 3`,
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	conn.Close()
	db.Close()

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ids := func(q store.RecordQuery) []int64 {
		t.Helper()
		recs, _, err := s.Records(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, r := range recs {
			if old := r.ID <= 3; old != (len(r.Sealed) == 0 && len(r.WrappedKey) == 0) {
				t.Errorf("record %d: sealed half %d bytes, wrapped key %d bytes", r.ID, len(r.Sealed), len(r.WrappedKey))
			}
			out = append(out, r.ID)
		}
		return out
	}
	if got := ids(store.RecordQuery{Pseudonym: ps}); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("ep-1's records after migrating = %v, want [1 2]", got)
	}
	if got := ids(store.RecordQuery{SHA256: a}); !slices.Equal(got, []int64{1, 3}) {
		t.Errorf("records of a after migrating = %v, want [1 3]", got)
	}
	var legacy, personal int
	if err := s.read.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM legacy_personal), (SELECT count(*) FROM personal)`).Scan(&legacy, &personal); err != nil {
		t.Fatal(err)
	}
	if legacy != 3 || personal != 0 {
		t.Errorf("legacy_personal holds %d rows and personal %d; want 3 and 0", legacy, personal)
	}
	// New batches go on as usual, with ids after the old ones.
	if ok, err := s.PutBatch(ctx, storetest.Batch("ep-1", "b2", storetest.Record(a, 0, ""))); err != nil || !ok {
		t.Fatalf("PutBatch after migrating = %v, %v", ok, err)
	}
	if got := ids(store.RecordQuery{Pseudonym: ps}); len(got) != 3 || got[2] != 4 {
		t.Errorf("ep-1's records = %v, want [1 2 4]", got)
	}
}

// TestEngineFailureIsUnavailable breaks the database file under an open
// store: what SQLite then returns reaches callers as fault.ErrUnavailable,
// which the region answers 503, with its text kept for the log.
func TestEngineFailureIsUnavailable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.PutBatch(t.Context(), storetest.Batch("ep-1", "b1", storetest.Record(storetest.Hash("a"), 0, ""))); err != nil {
		t.Fatal(err)
	}
	garbage := bytes.Repeat([]byte{0xa5}, 1<<16)
	for _, p := range []string{path, path + "-wal"} {
		if err := os.WriteFile(p, garbage, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err = s.Records(t.Context(), store.RecordQuery{SHA256: storetest.Hash("a")})
	if err == nil {
		t.Fatal("Records on a garbled database file succeeded")
	}
	if fault.Kind(err) != fault.ErrUnavailable || err.Error() == "" {
		t.Errorf("Records on a garbled database file = %v (kind %v), want kind unavailable", err, fault.Kind(err))
	}
}
