package custody

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
)

// TestCountGroups adds from many goroutines at once: while the database is
// locked every add fails and none counts; once it is free every add counts,
// durably.
func TestCountGroups(t *testing.T) {
	defer func(old int) { busyTimeoutMillis = old }(busyTimeoutMillis)
	busyTimeoutMillis = 200
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "counts.db")
	c, err := openCounts(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	addAll := func(n int) []error {
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { errs[i] = c.add(ctx, "zurich", uint64(i%4), 1+i%3) })
		}
		wg.Wait()
		return errs
	}

	other, err := openCounts(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.close()
	conn, err := other.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	for i, err := range addAll(32) {
		if err == nil {
			t.Errorf("add %d succeeded with the database locked", i)
		}
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if got, err := c.all(ctx); err != nil || len(got) != 0 {
		t.Fatalf("after failed adds, counts = %v, %v; want none", got, err)
	}

	for i, err := range addAll(64) {
		if err != nil {
			t.Errorf("add %d: %v", i, err)
		}
	}
	want := map[string]map[uint64]int64{"zurich": {}}
	for i := range 64 {
		want["zurich"][uint64(i%4)] += int64(1 + i%3)
	}
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	if err := c.add(ctx, "zurich", 0, 1); !errors.Is(err, errCountsClosed) {
		t.Errorf("add after close = %v, want %v", err, errCountsClosed)
	}
	again, err := openCounts(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer again.close()
	got, err := again.all(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !equalCounts(got, want) {
		t.Errorf("counts after reopening = %v, want %v", got, want)
	}
}
