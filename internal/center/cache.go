package center

import (
	"container/list"
	"context"
	"sync"
)

// digestCache keeps what the Center read and verified, by the digest it
// verified it against (unpacked source archives, opened rule databases,
// and the diffs made of them), up to maxCacheBytes, dropping the least recently used first. What is
// in it was checked before it was put there; a failed load is not kept.
// Loads of one key wait for each other, and at most two run at once, so
// that many readers of a large archive do not unpack it many times over.
// The zero value is ready to use; it is safe for concurrent use.
type digestCache struct {
	mu      sync.Mutex
	used    int64
	items   map[string]*list.Element // of *cached
	order   list.List                // most recently used first
	loading map[string]*loadingItem
	slots   chan struct{}
}

type cached struct {
	key  string
	v    any
	size int64
}

type loadingItem struct {
	done chan struct{}
	v    any
	err  error
}

// get returns the value kept under key, or loads it (size is what it
// weighs in memory).
func (d *digestCache) get(ctx context.Context, key string, load func(context.Context) (v any, size int64, err error)) (any, error) {
	d.mu.Lock()
	if d.items == nil {
		d.items, d.loading, d.slots = map[string]*list.Element{}, map[string]*loadingItem{}, make(chan struct{}, 2)
	}
	if e, ok := d.items[key]; ok {
		d.order.MoveToFront(e)
		d.mu.Unlock()
		return e.Value.(*cached).v, nil
	}
	if l, ok := d.loading[key]; ok {
		d.mu.Unlock()
		select {
		case <-l.done:
			if l.err != nil {
				// The other reader's failure may be its own (it went
				// away): try once more, as this reader.
				return d.get(ctx, key, load)
			}
			return l.v, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	l := &loadingItem{done: make(chan struct{})}
	d.loading[key] = l
	d.mu.Unlock()

	var size int64
	select {
	case d.slots <- struct{}{}:
		l.v, size, l.err = load(ctx)
		<-d.slots
	case <-ctx.Done():
		l.err = ctx.Err()
	}
	d.mu.Lock()
	delete(d.loading, key)
	if l.err == nil && size <= maxCacheBytes {
		d.items[key] = d.order.PushFront(&cached{key: key, v: l.v, size: size})
		d.used += size
		for d.used > maxCacheBytes {
			last := d.order.Back()
			c := last.Value.(*cached)
			d.order.Remove(last)
			delete(d.items, c.key)
			d.used -= c.size
		}
	}
	d.mu.Unlock()
	close(l.done)
	return l.v, l.err
}
