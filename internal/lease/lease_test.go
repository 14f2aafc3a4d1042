package lease

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/gotest"
)

// holders counts the processes that work under one lease at once, and
// fails the test if ever two do.
type holders struct {
	t     *testing.T
	now   atomic.Int32
	taken atomic.Int32 // how many times the lease was taken
	// overlap allows two holders for a moment: after the server ends
	// the holder's session, until the holder's next ping.
	overlap atomic.Bool
	mu      sync.Mutex
	who     []string
}

func (h *holders) work(name string) func(context.Context) {
	return func(ctx context.Context) {
		if n := h.now.Add(1); n != 1 && !h.overlap.Load() {
			h.t.Errorf("%d processes hold the lease at once", n)
		}
		h.taken.Add(1)
		h.mu.Lock()
		h.who = append(h.who, name)
		h.mu.Unlock()
		<-ctx.Done()
		h.mu.Lock()
		h.who = slices.DeleteFunc(h.who, func(w string) bool { return w == name })
		h.mu.Unlock()
		h.now.Add(-1)
	}
}

// holder returns the one holder, or "" if none or several work.
func (h *holders) holder() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.who) != 1 {
		return ""
	}
	return h.who[0]
}

func (h *holders) waitHolder(t *testing.T, not string) string {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if w := h.holder(); w != "" && w != not {
			return w
		}
	}
	t.Fatalf("no process other than %q took the lease", not)
	return ""
}

func open(t *testing.T, dsn string) *Locker {
	t.Helper()
	l, err := Open(t.Context(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.retry, l.ping = 20*time.Millisecond, 50*time.Millisecond
	t.Cleanup(l.Close)
	return l
}

// TestOneHolder runs one work under one lease in three lockers (three
// processes' worth of sessions) and takes the lease from its holder in
// the ways a process loses it: it stops, and its session dies (as when
// the process is killed or cut off). Every time exactly one other takes
// over, and never do two work at once.
func TestOneHolder(t *testing.T) {
	dsn := gotest.PostgresDSN(t)
	h := &holders{t: t}
	stops := map[string]context.CancelFunc{}
	lockers := map[string]*Locker{}
	var wg sync.WaitGroup
	for _, name := range []string{"a", "b", "c"} {
		l := open(t, dsn)
		ctx, cancel := context.WithCancel(t.Context())
		stops[name], lockers[name] = cancel, l
		wg.Go(func() { l.Run(ctx, "region/zurich/exchange", h.work(name), nil) })
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
		wg.Wait()
	}()

	first := h.waitHolder(t, "")
	// The holder stops: it lets the lease go.
	stops[first]()
	second := h.waitHolder(t, first)

	// The holder's session is ended from the server's side: the server
	// frees the lease at once, and another may take it before the holder
	// learns of it at its next ping; then the holder stops working.
	h.overlap.Store(true)
	var pid int32
	key := lockers[second].key("region/zurich/exchange")
	if err := lockers[second].pool.QueryRow(t.Context(),
		"SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid::bigint = $1 AND objid::bigint = $2",
		int64(uint32(key>>32)), int64(uint32(key))).Scan(&pid); err != nil {
		t.Fatalf("finding the lease's session: %v", err)
	}
	if _, err := lockers[first].pool.Exec(t.Context(), "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	third := h.waitHolder(t, second)
	h.overlap.Store(false)
	if third == first {
		t.Fatalf("the stopped locker %s took the lease again", first)
	}
	// The locker whose session died asks again, and may take it when
	// the third lets go.
	stops[third]()
	if got := h.waitHolder(t, third); got != second {
		t.Fatalf("after %s let go, %s holds the lease; want %s, whose session was ended and who asks again", third, got, second)
	}
	if n := h.taken.Load(); n != 4 {
		t.Errorf("the lease was taken %d times, want 4", n)
	}
}

// TestLeasesIndependent checks that two leases are held at once, and
// that one schema's lease does not stop another schema's.
func TestLeasesIndependent(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	l1, l2 := open(t, gotest.PostgresDSN(t)), open(t, gotest.PostgresDSN(t))
	got := make(chan string, 3)
	var wg sync.WaitGroup
	run := func(l *Locker, name, tag string) {
		wg.Go(func() {
			l.Run(ctx, name, func(ctx context.Context) { got <- tag; <-ctx.Done() }, nil)
		})
	}
	run(l1, "exchange", "l1 exchange")
	run(l1, "commitments", "l1 commitments")
	run(l2, "exchange", "l2 exchange")
	seen := map[string]bool{}
	for len(seen) < 3 {
		select {
		case tag := <-got:
			seen[tag] = true
		case <-time.After(30 * time.Second):
			t.Fatalf("only %v hold their leases", seen)
		}
	}
	cancel()
	wg.Wait()
}

// TestNilLocker: without a shared database the work runs at once.
func TestNilLocker(t *testing.T) {
	var l *Locker
	var ran, heldTrue, heldFalse bool
	l.Run(t.Context(), "x", func(context.Context) { ran = true }, func(h bool) {
		if h {
			heldTrue = true
		} else {
			heldFalse = true
		}
	})
	if !ran || !heldTrue || !heldFalse {
		t.Fatalf("ran %v, held %v, let go %v", ran, heldTrue, heldFalse)
	}
	l.Close()
}
