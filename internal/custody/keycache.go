package custody

import (
	"crypto/sha256"
	"sync"
)

// DefaultKeyCache is how many data keys a Service keeps in memory when
// Config.KeyCache is zero: 65,536 keys take about 14 MiB.
const DefaultKeyCache = 1 << 16

// keyCache keeps the data keys custody has decapsulated, by region and
// SHA-256 of the wrapped key, least recently used first out, so that a key
// asked for again is not decapsulated again: the ML-KEM-768+X25519
// decapsulation is most of the CPU of an unwrap. It only saves work, never
// a check: custody already holds the private keys, and Unwrap looks keys up
// only once the proof, the entry and the KeyIDs it lists have allowed them,
// and releases them only once they are counted.
//
// The region is part of the key because a wrapped key opens under one
// region's key only: a key cached for one region must not be found for a
// request that names another. Keys are zeroed when evicted and on close.
//
// A nil *keyCache keeps nothing. Its methods are safe for concurrent use.
type keyCache struct {
	mu     sync.Mutex
	max    int
	m      map[keyRef]*cachedKey
	ring   cachedKey // ring.next is the most recently used, ring.prev the least
	closed bool
}

// keyRef names a wrapped key of a region by the SHA-256 of its bytes, which
// KeyID spells out.
type keyRef struct {
	region string
	sum    [sha256.Size]byte
}

type cachedKey struct {
	ref        keyRef
	dk         [DataKeySize]byte
	prev, next *cachedKey
}

// newKeyCache returns a cache of at most max keys, or nil if max < 1.
func newKeyCache(max int) *keyCache {
	if max < 1 {
		return nil
	}
	c := &keyCache{max: max, m: make(map[keyRef]*cachedKey)}
	c.ring.prev, c.ring.next = &c.ring, &c.ring
	return c
}

// lookup sets out[i] to a copy of the data key of refs[i] where the cache
// has it, and leaves the other elements of out as they are.
func (c *keyCache) lookup(refs []keyRef, out [][]byte) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, ref := range refs {
		e, ok := c.m[ref]
		if !ok {
			continue
		}
		c.unlink(e)
		c.pushFront(e)
		out[i] = append([]byte(nil), e.dk[:]...)
	}
}

// put keeps a copy of the data key dk of ref, evicting the least recently
// used key if the cache is full. It does nothing once the cache is closed.
func (c *keyCache) put(ref keyRef, dk []byte) {
	if c == nil || len(dk) != DataKeySize {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	e, ok := c.m[ref]
	switch {
	case ok:
		c.unlink(e)
	case len(c.m) >= c.max:
		e = c.ring.prev
		c.unlink(e)
		delete(c.m, e.ref)
		clear(e.dk[:])
		e.ref = ref
		c.m[ref] = e
	default:
		e = &cachedKey{ref: ref}
		c.m[ref] = e
	}
	copy(e.dk[:], dk)
	c.pushFront(e)
}

// close zeroes every key and keeps no more.
func (c *keyCache) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.dropLocked()
}

// drop zeroes and forgets every key; the cache stays usable.
func (c *keyCache) drop() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked()
}

func (c *keyCache) dropLocked() {
	for e := c.ring.next; e != &c.ring; e = e.next {
		clear(e.dk[:])
	}
	clear(c.m)
	c.ring.prev, c.ring.next = &c.ring, &c.ring
}

// len returns how many keys the cache holds.
func (c *keyCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

func (c *keyCache) unlink(e *cachedKey) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *keyCache) pushFront(e *cachedKey) {
	e.prev, e.next = &c.ring, c.ring.next
	c.ring.next.prev = e
	c.ring.next = e
}
