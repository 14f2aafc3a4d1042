package logstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transparency-dev/tessera"
)

// slowDriver stands for a Tessera driver's queue whose first batch takes
// until gate closes. Each entry handed to it records how many answers the
// driver had given by then, so that entries handed over together share
// that count.
type slowDriver struct {
	gate    chan struct{}
	started chan struct{}

	mu       sync.Mutex
	next     uint64
	answered atomic.Int64
	handed   map[string]int64 // entry → answers given when it was handed over
}

func newSlowDriver() *slowDriver {
	return &slowDriver{gate: make(chan struct{}), started: make(chan struct{}, 1), handed: map[string]int64{}}
}

func (d *slowDriver) add(_ context.Context, e *tessera.Entry) tessera.IndexFuture {
	d.mu.Lock()
	idx := d.next
	d.next++
	d.handed[string(e.Data())] = d.answered.Load()
	d.mu.Unlock()
	return func() (tessera.Index, error) {
		if idx == 0 {
			d.started <- struct{}{}
			<-d.gate
		}
		defer d.answered.Add(1)
		if string(e.Data()) == "bad" {
			return tessera.Index{}, errors.New("driver refused")
		}
		return tessera.Index{Index: idx}, nil
	}
}

// TestFollowLoad checks that appends arriving while the driver works on a
// batch reach it together, once it has answered, in order, each with its
// own answer.
func TestFollowLoad(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := newSlowDriver()
	f := newFollowLoad(ctx, d.add, 64)
	first := f.Add(ctx, tessera.NewEntry([]byte("first")))
	<-d.started
	var futures []tessera.IndexFuture
	for i := range 10 {
		data := fmt.Sprintf("e%d", i)
		if i == 5 {
			data = "bad"
		}
		futures = append(futures, f.Add(ctx, tessera.NewEntry([]byte(data))))
	}
	time.Sleep(10 * time.Millisecond)
	d.mu.Lock()
	if d.next != 1 {
		t.Errorf("the driver was handed %d entries while its first batch was in flight, want 1", d.next)
	}
	d.mu.Unlock()
	close(d.gate)
	if idx, err := first(); err != nil || idx.Index != 0 {
		t.Fatalf("first append: %v, %v; want index 0", idx, err)
	}
	for i, fut := range futures {
		idx, err := fut()
		switch {
		case i == 5 && err == nil:
			t.Errorf("append %d: no error, want the driver's", i)
		case i != 5 && (err != nil || idx.Index != uint64(i+1)):
			t.Errorf("append %d: %v, %v; want index %d", i, idx, err, i+1)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for e, answered := range d.handed {
		want := int64(1)
		if e == "first" {
			want = 0
		}
		if answered != want {
			t.Errorf("entry %q was handed over after %d answers, want %d (all queued entries in one hand-over after the first batch)", e, answered, want)
		}
	}
}

// TestFollowLoadMax checks that a hand-over holds at most the batch size.
func TestFollowLoadMax(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := newSlowDriver()
	f := newFollowLoad(ctx, d.add, 4)
	first := f.Add(ctx, tessera.NewEntry([]byte("first")))
	<-d.started
	var futures []tessera.IndexFuture
	for i := range 10 {
		futures = append(futures, f.Add(ctx, tessera.NewEntry(fmt.Appendf(nil, "e%d", i))))
	}
	close(d.gate)
	if _, err := first(); err != nil {
		t.Fatal(err)
	}
	for i, fut := range futures {
		if idx, err := fut(); err != nil || idx.Index != uint64(i+1) {
			t.Errorf("append %d: %v, %v; want index %d", i, idx, err, i+1)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	count := map[int64]int{}
	for _, answered := range d.handed {
		count[answered]++
	}
	// Hand-overs of 1, 4, 4 and 2 entries, each after the previous one's
	// answers.
	want := map[int64]int{0: 1, 1: 4, 5: 4, 9: 2}
	if fmt.Sprint(count) != fmt.Sprint(want) {
		t.Errorf("entries per hand-over (keyed by answers given before it) = %v, want %v", count, want)
	}
}

// TestFollowLoadMaxBytes checks that a hand-over holds at most maxBytes
// of entries, and at least one entry whatever its size.
func TestFollowLoadMaxBytes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := newSlowDriver()
	f := newFollowLoad(ctx, d.add, 64)
	f.maxBytes = 10
	f.size = func(e *tessera.Entry) int { return len(e.Data()) }
	first := f.Add(ctx, tessera.NewEntry([]byte("first")))
	<-d.started
	var futures []tessera.IndexFuture
	for _, e := range []string{"aaaa", "bbbb", "cc", "a much longer entry", "dddd"} {
		futures = append(futures, f.Add(ctx, tessera.NewEntry([]byte(e))))
	}
	close(d.gate)
	if _, err := first(); err != nil {
		t.Fatal(err)
	}
	for i, fut := range futures {
		if _, err := fut(); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// Hand-overs: [first], [aaaa bbbb cc] (10 bytes), [a much longer
	// entry] (alone, over the limit), [dddd].
	want := map[string]int64{"first": 0, "aaaa": 1, "bbbb": 1, "cc": 1, "a much longer entry": 4, "dddd": 5}
	for e, answered := range d.handed {
		if answered != want[e] {
			t.Errorf("entry %q was handed over after %d answers, want %d", e, answered, want[e])
		}
	}
}

// TestFollowLoadStop checks that appends queued or made after the
// appender's context ends fail rather than wait for a driver that has
// stopped.
func TestFollowLoadStop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	d := newSlowDriver()
	f := newFollowLoad(ctx, d.add, 64)
	first := f.Add(ctx, tessera.NewEntry([]byte("first")))
	<-d.started
	queued := f.Add(ctx, tessera.NewEntry([]byte("queued")))
	cancel()
	close(d.gate)
	if _, err := first(); err != nil {
		t.Fatalf("the batch in flight: %v", err)
	}
	if _, err := queued(); !errors.Is(err, errStopped) || !errors.Is(err, context.Canceled) {
		t.Errorf("append queued when the context ended: %v, want errStopped and context.Canceled", err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		f.mu.Lock()
		stopped := f.stopped
		f.mu.Unlock()
		if stopped || time.Now().After(deadline) {
			break
		}
	}
	if _, err := f.Add(context.Background(), tessera.NewEntry([]byte("late")))(); !errors.Is(err, errStopped) {
		t.Errorf("append after the context ended: %v, want errStopped", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.next != 1 {
		t.Errorf("the driver was handed %d entries, want only the first", d.next)
	}
}
