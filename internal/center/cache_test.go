package center

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestDigestCache: what is kept stays within maxCacheBytes, the least
// recently read dropped first; a failed load is not kept; readers of one
// key wait for one load.
func TestDigestCache(t *testing.T) {
	ctx := context.Background()
	var d digestCache
	var loads atomic.Int32
	load := func(v string, size int64, err error) func(context.Context) (any, int64, error) {
		return func(context.Context) (any, int64, error) {
			loads.Add(1)
			return v, size, err
		}
	}
	for _, k := range []string{"a", "b"} {
		if v, err := d.get(ctx, k, load(k, maxCacheBytes/2, nil)); err != nil || v != k {
			t.Fatalf("get %s: %v %v", k, v, err)
		}
	}
	d.get(ctx, "a", load("other", 1, nil)) // a read: b is now the least recent
	if v, _ := d.get(ctx, "c", load("c", 1, nil)); v != "c" || d.used > maxCacheBytes {
		t.Fatalf("c: %v, %d bytes kept", v, d.used)
	}
	if _, kept := d.items["b"]; kept || len(d.items) != 2 || loads.Load() != 3 {
		t.Errorf("kept %d items (b: %v) after %d loads; want a and c after 3", len(d.items), kept, loads.Load())
	}
	bad := errors.New("refused")
	if _, err := d.get(ctx, "x", load("x", 1, bad)); err != bad {
		t.Fatalf("a failed load: %v", err)
	}
	if v, err := d.get(ctx, "x", load("x", 1, nil)); err != nil || v != "x" {
		t.Errorf("after a failed load: %v %v", v, err)
	}
	// One load of y blocks; every reader of y meanwhile waits for it,
	// and every one after it finds y kept: y is loaded once.
	loads.Store(0)
	release := make(chan struct{})
	get := func() {
		v, err := d.get(ctx, "y", func(context.Context) (any, int64, error) {
			loads.Add(1)
			<-release
			return "y", 1, nil
		})
		if err != nil || v != "y" {
			t.Errorf("y: %v %v", v, err)
		}
	}
	var wg sync.WaitGroup
	wg.Go(get)
	for loads.Load() == 0 {
		runtime.Gosched()
	}
	for range 7 {
		wg.Go(get)
	}
	close(release)
	wg.Wait()
	if n := loads.Load(); n != 1 {
		t.Errorf("%d loads of y, want 1", n)
	}
}
