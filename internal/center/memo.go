package center

import (
	"context"
	"fmt"
	"sync"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/tlog"
)

// memoFetcher reads each tile and entry bundle of a log once for the life
// of one request: a page of 50 entries reads their bundle once, not 50
// times. What it keeps is what the log served; every use still verifies.
type memoFetcher struct {
	tlog.Fetcher
	mu   sync.Mutex
	seen map[string][]byte
}

func (m *memoFetcher) get(ctx context.Context, key string, read func(context.Context) ([]byte, error)) ([]byte, error) {
	m.mu.Lock()
	b, ok := m.seen[key]
	m.mu.Unlock()
	if ok {
		return b, nil
	}
	b, err := read(ctx)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.seen[key] = b
	m.mu.Unlock()
	return b, nil
}

func (m *memoFetcher) ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	return m.get(ctx, fmt.Sprintf("t %d %d %d", level, index, p), func(ctx context.Context) ([]byte, error) { return m.Fetcher.ReadTile(ctx, level, index, p) })
}

func (m *memoFetcher) ReadEntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error) {
	return m.get(ctx, fmt.Sprintf("e %d %d", index, p), func(ctx context.Context) ([]byte, error) { return m.Fetcher.ReadEntryBundle(ctx, index, p) })
}

// memoized returns l reading through a memoFetcher: for one request.
func memoized(l *client.Log) *client.Log {
	m := *l
	m.Fetcher = &memoFetcher{Fetcher: l.Fetcher, seen: map[string][]byte{}}
	return &m
}

// followed is a small log (release, policy) the Center keeps every entry
// of, proven, following it on as it grows: a page that needs the whole
// log reads only what is new.
type followed struct {
	mu      sync.Mutex
	key     string // the log's origin and key hash: another log starts afresh
	f       *client.Follower
	entries [][]byte
}

// entries returns every entry of l up to its latest checkpoint, proven,
// reading only those the Center has not followed yet. Only the release and
// policy logs are kept this way; they hold one entry per release or
// policy version.
func (c *Center) entries(ctx context.Context, name string, l *client.Log) ([][]byte, error) {
	c.followMu.Lock()
	fl := c.follows[name]
	if fl == nil {
		fl = &followed{}
		c.follows[name] = fl
	}
	c.followMu.Unlock()
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if key := l.Origin() + " " + l.KeyHash(); fl.f == nil || fl.key != key {
		f, err := client.NewFollower(l, nil)
		if err != nil {
			return nil, err
		}
		fl.key, fl.f, fl.entries = key, f, nil
	}
	var fresh [][]byte
	if _, err := fl.f.Update(ctx, func(_ uint64, e []byte) error {
		fresh = append(fresh, e)
		return nil
	}); err != nil {
		// What was proven before stays; nothing of this update is kept
		// unless the follower took it (its state moved with it).
		fl.entries = append(fl.entries, fresh...)
		return nil, err
	}
	fl.entries = append(fl.entries, fresh...)
	return fl.entries[:len(fl.entries):len(fl.entries)], nil
}
