package logstore

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/transparency-dev/tessera"
)

// errStopped is returned for appends made after the appender's context
// ended.
var errStopped = errors.New("log store appender stopped")

// followLoad makes the batches of a Tessera driver follow load, as the
// journaled tiles' sequencer does, in front of a driver whose own queue
// cuts them with a timer.
//
// Tessera's MySQL and AWS drivers queue appends in a batch that is cut
// when it holds BatchMaxSize entries or its oldest entry is BatchMaxAge
// old, and hand batches one at a time to a single worker; each batch is
// one transaction (MySQL) or one sequencing round (AWS). A short age
// answers a lone client quickly but, under load, cuts the entries that
// arrive during one transaction into many small batches that queue up for
// the worker, each paying a commit; a long age (Tessera's default, 250 ms)
// fills batches but makes every lone append wait for it. The log uses a
// 1 ms age; on MySQL, 256 clients got a seventh of the appends per second
// of Tessera's conformance server, with its 250 ms (docs/performance.md).
//
// followLoad holds appends in a queue of its own and hands the driver
// everything queued at once, only when the driver has finished the
// previous hand-over: a lone client waits for one batch age and one
// transaction, and appends that arrive during a transaction form the next
// batch, whole. The driver's batch age should be short (the log's 1 ms):
// it is only the time the hand-over takes.
type followLoad struct {
	add  tessera.AddFn
	max  int
	wake chan struct{}
	// maxBytes, if not 0, bounds the sum of size over a hand-over (a
	// hand-over holds at least one entry).
	maxBytes int
	size     func(*tessera.Entry) int

	mu      sync.Mutex
	queue   []*queued
	stopped bool
}

// queued is one append waiting in a followLoad queue; done closes when idx
// and err are set.
type queued struct {
	ctx   context.Context
	entry *tessera.Entry
	done  chan struct{}
	idx   tessera.Index
	err   error
}

// newFollowLoad starts handing appends to add, at most max at a time,
// until ctx ends. The driver's queue behind add must stop with the same
// ctx.
func newFollowLoad(ctx context.Context, add tessera.AddFn, max uint) *followLoad {
	f := &followLoad{add: add, max: int(max), wake: make(chan struct{}, 1)}
	if f.max < 1 {
		f.max = tessera.DefaultBatchMaxSize
	}
	go f.run(ctx)
	return f
}

// Add queues entry and returns its future. It is a tessera.AddFn.
func (f *followLoad) Add(ctx context.Context, entry *tessera.Entry) tessera.IndexFuture {
	q := &queued{ctx: ctx, entry: entry, done: make(chan struct{})}
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		return func() (tessera.Index, error) { return tessera.Index{}, errStopped }
	}
	f.queue = append(f.queue, q)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return func() (tessera.Index, error) {
		<-q.done
		return q.idx, q.err
	}
}

// run hands the queue to the driver, everything at once, each time the
// driver has answered the previous hand-over.
func (f *followLoad) run(ctx context.Context) {
	var batch []*queued
	futures := make([]tessera.IndexFuture, 0, f.max)
	for {
		select {
		case <-ctx.Done():
			f.stop(ctx)
			return
		case <-f.wake:
		}
		for {
			if ctx.Err() != nil {
				f.stop(ctx)
				return
			}
			f.mu.Lock()
			if n := f.take(); n == len(f.queue) {
				batch, f.queue = f.queue, batch[:0]
			} else {
				batch = append(batch[:0], f.queue[:n]...)
				rest := copy(f.queue, f.queue[n:])
				clear(f.queue[rest:])
				f.queue = f.queue[:rest]
			}
			f.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			futures = futures[:0]
			for _, q := range batch {
				futures = append(futures, f.add(q.ctx, q.entry))
			}
			for i, q := range batch {
				q.idx, q.err = futures[i]()
				close(q.done)
			}
			clear(batch)
		}
	}
}

// take returns how many of the queued entries the next hand-over takes.
// f.mu must be held.
func (f *followLoad) take() int {
	n := min(len(f.queue), f.max)
	if f.maxBytes <= 0 {
		return n
	}
	total := 0
	for i, q := range f.queue[:n] {
		total += f.size(q.entry)
		if total > f.maxBytes && i > 0 {
			return i
		}
	}
	return n
}

// stop fails what is still queued once the appender's context has ended.
func (f *followLoad) stop(ctx context.Context) {
	f.mu.Lock()
	f.stopped = true
	queue := f.queue
	f.queue = nil
	f.mu.Unlock()
	for _, q := range queue {
		q.err = fmt.Errorf("%w: %w", errStopped, context.Cause(ctx))
		close(q.done)
	}
}
