package monitor

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vitrine-dev/vitrine/internal/store/sqlite"
)

// TestUnreconciledUnwrap: custody's count for a read that released keys
// reconciles; a count that custody's store holds for an entry that is no
// granted access naming keys (written into its store behind its back) is
// a critical alert grounded in the access log, raised once; so is a
// read's count that says its keys were unwrapped twice.
func TestUnreconciledUnwrap(t *testing.T) {
	tp := startPlatform(t)
	ctx := context.Background()
	tp.read(t, "CUSTOMER_INITIATED_SUPPORT; case 5") // releases the record's key
	token, err := os.ReadFile(filepath.Join(tp.data, "custody.token"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(ctx, Config{Dir: t.TempDir(), Platforms: []string{tp.URL()},
		Custody: []Custody{{Platform: tp.URL(), URL: tp.URL() + "/custody", Token: strings.TrimSpace(string(token))}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	unreconciled := func() []Alert {
		t.Helper()
		a, err := passFor(m, "unreconciled-unwrap")
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	// The read's own count is accounted for.
	passUntil(t, m, "unknown-entry", 0)
	if got := unreconciled(); len(got) != 0 {
		t.Fatalf("a read's unwrap: %+v", got)
	}
	if checked, err := m.store.unwrapCounts(ctx, tp.URL()); err != nil || len(checked) != 1 {
		t.Fatalf("counts checked: %v, %v; want the read's", checked, err)
	}
	// Entry 0 of access-zurich is the region's first commitment.
	db, err := sql.Open("sqlite", sqlite.DSN(filepath.Join(tp.data, "custody", "counts.db"), "busy_timeout(5000)"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`INSERT INTO unwrap_counts (region, log_index, keys) VALUES ('zurich', 0, 3)`)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	got := unreconciled()
	if len(got) != 1 || got[0].Index == nil || *got[0].Index != 0 || got[0].Log != "access-zurich" || !strings.Contains(got[0].Detail, "3 keys released") {
		t.Fatalf("a count for a commitment: %+v", got)
	}
	if !strings.Contains(got[0].Entry, `"kind":"commitment"`) {
		t.Errorf("the alert's entry: %s", got[0].Entry)
	}
	checkGrounded(t, tp.Platform, got[0])
	if again := unreconciled(); len(again) != 0 {
		t.Errorf("the next pass: %+v, want nothing new", again)
	}

	// The read's keys unwrapped a second time (its entry and proof
	// presented to custody again): released keys no access needed.
	db, err = sql.Open("sqlite", sqlite.DSN(filepath.Join(tp.data, "custody", "counts.db"), "busy_timeout(5000)"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := db.Exec(`UPDATE unwrap_counts SET keys = keys * 2 WHERE log_index != 0`)
	db.Close()
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("doubling the read's count: %v, %d rows", err, n)
	}
	got = unreconciled()
	if len(got) != 1 || !strings.Contains(got[0].Detail, "unwrapped more than once") || !strings.Contains(got[0].Entry, `"action":"read"`) {
		t.Fatalf("a read's keys unwrapped twice: %+v", got)
	}
	checkGrounded(t, tp.Platform, got[0])
}
