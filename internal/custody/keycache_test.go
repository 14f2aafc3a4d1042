package custody

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// dropKeyCache forgets every cached key, for benchmarks of cold unwraps.
func dropKeyCache(s *Service) { s.keys.drop() }

func testRef(region string, i int) keyRef {
	return keyRef{region: region, sum: sha256.Sum256(fmt.Appendf(nil, "wrapped %d", i))}
}

func testDataKey(i int) []byte { return bytes.Repeat([]byte{byte(i + 1)}, DataKeySize) }

func TestKeyCacheBound(t *testing.T) {
	const max = 3
	c := newKeyCache(max)
	for i := range 10 {
		c.put(testRef("zurich", i), testDataKey(i))
		if n := c.len(); n > max {
			t.Fatalf("after %d puts the cache holds %d keys, bound %d", i+1, n, max)
		}
	}
	// The three most recent are kept; touching 7 makes 8 the oldest.
	got := make([][]byte, 10)
	refs := make([]keyRef, 10)
	for i := range refs {
		refs[i] = testRef("zurich", i)
	}
	c.lookup(refs[7:8], got[7:8])
	c.put(testRef("zurich", 10), testDataKey(10))
	c.lookup(refs, got)
	for i, k := range got {
		want := i == 7 || i == 9
		if (k != nil) != want {
			t.Errorf("key %d cached: %v, want %v", i, k != nil, want)
		}
		if k != nil && !bytes.Equal(k, testDataKey(i)) {
			t.Errorf("key %d = %x, want %x", i, k, testDataKey(i))
		}
	}
	// The same hash in another region is another key.
	other := []keyRef{testRef("moscow", 9)}
	miss := make([][]byte, 1)
	if c.lookup(other, miss); miss[0] != nil {
		t.Error("a key cached for zurich was found for moscow")
	}
	// What lookup returns is a copy.
	clear(got[9])
	c.lookup(refs[9:10], got[9:10])
	if !bytes.Equal(got[9], testDataKey(9)) {
		t.Error("clearing a returned key changed the cached one")
	}
}

func TestKeyCacheZeroes(t *testing.T) {
	c := newKeyCache(2)
	c.put(testRef("zurich", 0), testDataKey(0))
	first := c.m[testRef("zurich", 0)]
	c.put(testRef("zurich", 1), testDataKey(1))
	c.put(testRef("zurich", 2), testDataKey(2)) // evicts 0
	if bytes.Equal(first.dk[:], testDataKey(0)) {
		t.Errorf("evicted key left in memory: %x", first.dk)
	}
	var held []*cachedKey
	for _, e := range c.m {
		held = append(held, e)
	}
	c.close()
	for _, e := range held {
		if e.dk != [DataKeySize]byte{} {
			t.Errorf("key not zeroed on close: %x", e.dk)
		}
	}
	c.put(testRef("zurich", 3), testDataKey(3))
	if n := c.len(); n != 0 {
		t.Errorf("closed cache took a key: %d keys", n)
	}
	var none *keyCache // KeyCache < 0
	none.put(testRef("zurich", 0), testDataKey(0))
	got := make([][]byte, 1)
	if none.lookup([]keyRef{testRef("zurich", 0)}, got); got[0] != nil || none.len() != 0 {
		t.Error("a nil cache kept a key")
	}
}

// TestCachedKeysStillChecked makes decapsulation impossible once keys are
// cached, so that every answer below comes from the cache, and checks that
// the cache never stands in for a rule: a cached key is released only for
// a witnessed entry of its region that names it, and is counted every time.
func TestCachedKeysStillChecked(t *testing.T) {
	e := newEnv(t)
	dataKeys, wrapped := e.wrap("zurich", 3)
	_, uncached := e.wrap("zurich", 1)
	first := record("zurich", "read", "granted", wrapped)
	second := record("zurich", "export", "granted", wrapped[1:])
	partial := record("zurich", "read", "granted", [][]byte{wrapped[0], uncached[0]})
	relocate := record("zurich", "relocate", "granted", wrapped[:1])
	denied := record("zurich", "read", "denied", wrapped)
	idx, proofs := e.prove("zurich", first, second, partial, relocate, denied)
	// Zurich's keys in moscow's log, and a moscow access naming them.
	moscowEntry := record("moscow", "read", "granted", wrapped)
	_, moscowProofs := e.prove("moscow", moscowEntry)

	if _, err := e.svc.Unwrap(t.Context(), &UnwrapRequest{Region: "zurich", Entry: first, Proof: proofs[0], Keys: wrapped}); err != nil {
		t.Fatal(err)
	}
	if n := e.svc.keys.len(); n != 3 {
		t.Fatalf("cache holds %d keys after unwrapping 3", n)
	}
	// From here on zurich's private key opens nothing custody is given.
	bogus, err := loadOrCreateKey(t.TempDir(), "zurich")
	if err != nil {
		t.Fatal(err)
	}
	e.svc.regions["zurich"].key.sk = bogus.sk

	// Another valid entry naming cached keys: released, from the cache, and
	// counted against that entry.
	resp, err := e.svc.Unwrap(t.Context(), &UnwrapRequest{Region: "zurich", Entry: second, Proof: proofs[1], Keys: [][]byte{wrapped[2], wrapped[1]}})
	if err != nil {
		t.Fatalf("unwrapping cached keys under another entry: %v", err)
	}
	if !bytes.Equal(resp.Keys[0], dataKeys[2]) || !bytes.Equal(resp.Keys[1], dataKeys[1]) {
		t.Error("cached keys differ from the data keys")
	}
	// Rewrapping takes the cached key too.
	resp, err = e.svc.Unwrap(t.Context(), &UnwrapRequest{Region: "zurich", Entry: relocate, Proof: proofs[3], Keys: wrapped[:1], RewrapFor: "moscow"})
	if err != nil {
		t.Fatalf("rewrapping a cached key: %v", err)
	}
	if dk, err := e.svc.regions["moscow"].key.unwrap(resp.Keys[0]); err != nil || !bytes.Equal(dk, dataKeys[0]) {
		t.Errorf("rewrapped cached key opens as %x, %v; want %x", dk, err, dataKeys[0])
	}

	refusals := []struct {
		name string
		req  *UnwrapRequest
	}{
		{"entry does not name the key", &UnwrapRequest{Region: "zurich", Entry: second, Proof: proofs[1], Keys: wrapped[:1]}},
		{"entry names only some keys", &UnwrapRequest{Region: "zurich", Entry: second, Proof: proofs[1], Keys: wrapped}},
		{"proof of another entry", &UnwrapRequest{Region: "zurich", Entry: first, Proof: proofs[1], Keys: wrapped[1:]}},
		{"checkpoint not cosigned", &UnwrapRequest{Region: "zurich", Entry: first, Proof: stripCosignatures(t, proofs[0], logOrigin("zurich")), Keys: wrapped}},
		{"no proof", &UnwrapRequest{Region: "zurich", Entry: first, Keys: wrapped}},
		{"denied entry", &UnwrapRequest{Region: "zurich", Entry: denied, Proof: proofs[4], Keys: wrapped}},
		{"uncached key beside a cached one (decapsulation disabled)", &UnwrapRequest{Region: "zurich", Entry: partial, Proof: proofs[2], Keys: [][]byte{wrapped[0], uncached[0]}}},
		{"cached key asked of another region", &UnwrapRequest{Region: "moscow", Entry: moscowEntry, Proof: moscowProofs[0], Keys: wrapped}},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.svc.Unwrap(t.Context(), tc.req)
			if !errors.Is(err, ErrRefused) || resp != nil {
				t.Fatalf("Unwrap = %v, %v; want a refusal and no keys", resp, err)
			}
		})
	}

	got, err := e.svc.Counts()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[uint64]int64{"zurich": {idx[0]: 3, idx[1]: 2, idx[3]: 1}}
	if !equalCounts(got, want) {
		t.Errorf("Counts = %v, want %v", got, want)
	}

	if err := e.svc.Close(); err != nil {
		t.Fatal(err)
	}
	if n := e.svc.keys.len(); n != 0 {
		t.Errorf("%d keys cached after Close", n)
	}
}

// TestKeyCacheBoundService unwraps more keys than the cache holds.
func TestKeyCacheBoundService(t *testing.T) {
	e := newEnv(t)
	e.svc.Close()
	e.cfg.KeyCache = 4
	e.svc = e.open()
	dataKeys, wrapped := e.wrap("zurich", 10)
	entry := record("zurich", "read", "granted", wrapped)
	_, proofs := e.prove("zurich", entry)
	for range 2 {
		resp, err := e.svc.Unwrap(t.Context(), &UnwrapRequest{Region: "zurich", Entry: entry, Proof: proofs[0], Keys: wrapped})
		if err != nil {
			t.Fatal(err)
		}
		for i := range dataKeys {
			if !bytes.Equal(resp.Keys[i], dataKeys[i]) {
				t.Errorf("key %d = %x, want %x", i, resp.Keys[i], dataKeys[i])
			}
		}
		if n := e.svc.keys.len(); n > 4 {
			t.Fatalf("cache holds %d keys, bound 4", n)
		}
	}
}

// TestConcurrentUnwrapsCounted unwraps from many goroutines at once, so
// that counts are committed in groups, and finds every one counted, also
// after reopening.
func TestConcurrentUnwrapsCounted(t *testing.T) {
	e := newEnv(t)
	const entries, workers, rounds = 4, 16, 5
	var reqs []*UnwrapRequest
	var list [][]byte
	for range entries {
		_, wrapped := e.wrap("zurich", 2)
		list = append(list, record("zurich", "read", "granted", wrapped))
		reqs = append(reqs, &UnwrapRequest{Region: "zurich", Keys: wrapped})
	}
	idx, proofs := e.prove("zurich", list...)
	for i, r := range reqs {
		r.Entry, r.Proof = list[i], proofs[i]
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for k := range rounds {
				r := reqs[(w+k)%entries]
				if _, err := e.svc.Unwrap(t.Context(), &UnwrapRequest{Region: r.Region, Entry: r.Entry, Proof: r.Proof, Keys: r.Keys[:1+k%2]}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	want := map[string]map[uint64]int64{"zurich": {}}
	for w := range workers {
		for k := range rounds {
			want["zurich"][idx[(w+k)%entries]] += int64(1 + k%2)
		}
	}
	e.svc.Close()
	got, err := e.open().Counts()
	if err != nil {
		t.Fatal(err)
	}
	if !equalCounts(got, want) {
		t.Errorf("Counts = %v, want %v", got, want)
	}
}
