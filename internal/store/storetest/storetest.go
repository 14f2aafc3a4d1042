// Package storetest is the conformance suite of [store.Store]: every
// implementation runs it, as the storage implementations of
// golang.org/x/mod/sumdb run storage.TestStorage.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return openEmptyStore(t) })
//	}
//
// Implementation-specific properties — that personal fields reach only the
// personal table, that a reopened store keeps its data ([Reopen]), schema
// migrations — are checked by each implementation's own tests.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/seal"
	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/telemetry"
)

// Run runs the suite. Each call of open must return a new, empty store;
// the suite closes it. open may register further cleanup with t.Cleanup,
// and should skip t when the store's backing service is absent.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		f    func(t *testing.T, s store.Store)
	}{
		{"Idempotent", testIdempotent},
		{"BatchIDPerEndpoint", testBatchIDPerEndpoint},
		{"ConcurrentRetries", testConcurrentRetries},
		{"CanceledBeforehand", testCanceledBeforehand},
		{"AtomicAtEveryStep", testAtomicAtEveryStep},
		{"EmptyBatch", testEmptyBatch},
		{"LargeBatch", testLargeBatch},
		{"Prevalence", testPrevalence},
		{"Detections", testDetections},
		{"FirstLastSeen", testFirstLastSeen},
		{"Unknown", testUnknown},
		{"ChangedAggregatesPaging", testChangedPaging},
		{"ChangedAggregatesFollow", testChangedFollow},
		{"PutRemoteReplaces", testPutRemoteReplaces},
		{"Global", testGlobal},
		{"RemoteIsNotLocal", testRemoteIsNotLocal},
		{"CountRecords", testCountRecords},
		{"ConcurrentPutBatch", testConcurrentPutBatch},
		{"RecordsByHash", testRecordsByHash},
		{"RecordsByEndpoint", testRecordsByEndpoint},
		{"DeleteRecords", testDeleteRecords},
		{"RecordRefs", testRecordRefs},
		{"RecordRefsPaging", testRecordRefsPaging},
		{"RecordRefsAfterDelete", testRecordRefsAfterDelete},
		{"RecordRefsDuringIngest", testRecordRefsDuringIngest},
		{"Batches", testBatches},
		{"PutBatches", testPutBatches},
		{"DeleteBatches", testDeleteBatches},
		{"RecordRefsAfterDeleteBatches", testRecordRefsAfterDeleteBatches},
		{"RefusesPersonalInClear", testRefusesPersonalInClear},
		{"Closed", testClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { s.Close() })
			tt.f(t, s)
		})
	}
}

// Reopen checks that a store keeps everything across Close: it fills s,
// closes it, and calls reopen for a store over the same data.
func Reopen(t *testing.T, s store.Store, reopen func() store.Store) {
	ctx := t.Context()
	b1 := Batch("ep-1", "b1", Record(Hash("a"), 0, "EICAR-Test-File"), Record(Hash("b"), time.Hour, ""))
	mustPut(t, s, b1, true)
	if err := s.PutRemote(ctx, "moscow", []store.Aggregate{{SHA256: Hash("a"), Prevalence: 4, FirstSeen: T0, LastSeen: T0}}, 41); err != nil {
		t.Fatal(err)
	}
	// A cursor without aggregates: the peer had nothing new.
	if err := s.PutRemote(ctx, "moscow", nil, 42); err != nil {
		t.Fatal(err)
	}
	_, cursor, err := s.ChangedAggregates(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	wantLocal := aggregates(t, s, Hash("a"), Hash("b"))
	wantGlobal := global(t, s, Hash("a"), Hash("b"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = reopen()
	defer s.Close()
	wantCount(t, s, 2)
	checkAggregates(t, "reopened Aggregates", aggregates(t, s, Hash("a"), Hash("b")), wantLocal)
	checkAggregates(t, "reopened Global", global(t, s, Hash("a"), Hash("b")), wantGlobal)
	for region, want := range map[string]int64{"moscow": 42, "singapore": 0} {
		if got, err := s.RemoteCursor(ctx, region); err != nil || got != want {
			t.Errorf("reopened RemoteCursor(%s) = %d, %v; want %d", region, got, err, want)
		}
	}
	mustPut(t, s, b1, false)
	mustPut(t, s, Batch("ep-2", "b1", Record(Hash("a"), 2*time.Hour, "")), true)
	changed, next, err := s.ChangedAggregates(ctx, cursor, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 1 || changed[0].SHA256 != Hash("a") || changed[0].Prevalence != 2 || next <= cursor {
		t.Errorf("after reopening, ChangedAggregates(%d) = %v, %d; want only %s at prevalence 2 and a later cursor", cursor, changed, next, Hash("a"))
	}
}

// T0 is the time of the suite's first record.
var T0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// Hash is a deterministic sha256 (64 lowercase hex digits) named by label.
func Hash(label string) string {
	h := sha256.Sum256([]byte(label))
	return hex.EncodeToString(h[:])
}

// Record is a record of hash at T0+at with the given detection name (none
// if empty), and personal fields that name the hash.
func Record(hash string, at time.Duration, detection string) telemetry.Record {
	kind := telemetry.KindFile
	if detection != "" {
		kind = telemetry.KindDetection
	}
	return telemetry.Record{
		Time:      T0.Add(at),
		Kind:      kind,
		SHA256:    hash,
		Size:      68,
		Detection: detection,
		URL:       "https://example.com/" + hash[:8],
		Path:      "C:/Users/someone/Downloads/" + hash[:8] + ".exe",
		Product:   "vitrine-agent/1.0.0",
		RuleDB:    42,
	}
}

// Batch is a batch of recs sent by endpoint, whose pseudonym is derived
// from it (Pseudonym), with the records' personal fields sealed as a region
// seals them, under a data key that Wrapper wraps.
func Batch(endpoint, batchID string, recs ...telemetry.Record) *store.Batch {
	recs = slices.Clone(recs)
	wrapped, sealed, err := seal.Records(Wrapper{}, endpoint, recs)
	if err != nil {
		panic(err) // Wrapper does not fail
	}
	return &store.Batch{
		Pseudonym: Pseudonym(endpoint),
		Country:   "DE",
		BatchID:   batchID,
		Received:  T0.Add(24 * time.Hour),
		Records:   recs,
		Sealed:    store.Sealed{WrappedKey: wrapped, Records: sealed},
	}
}

// Pseudonym is the pseudonym Batch gives endpoint.
func Pseudonym(endpoint string) string { return "hmac-sha256:" + Hash("pseudonym "+endpoint) }

// Wrapper stands in for a region's custody key in store tests, where a
// wrapped key is opaque: it "wraps" a data key by prefixing it, so that
// Unseal can open what a store returns.
type Wrapper struct{}

const wrapPrefix = "storetest-wrapped:"

// Wrap implements seal.Wrapper.
func (Wrapper) Wrap(key []byte) ([]byte, error) { return append([]byte(wrapPrefix), key...), nil }

// Unseal opens the personal half of a record that a store returned.
func Unseal(sr store.StoredRecord) (seal.Personal, error) {
	key, ok := bytes.CutPrefix(sr.WrappedKey, []byte(wrapPrefix))
	if !ok || len(key) < seal.KeySize {
		return seal.Personal{}, fmt.Errorf("record %d: wrapped key %q is not storetest's", sr.ID, sr.WrappedKey)
	}
	key = key[:seal.KeySize] // a rewrapped key has more after it
	bound := sr.KeyID
	if bound == "" {
		bound = seal.KeyID(sr.WrappedKey)
	}
	return seal.Open(key, seal.Binding{KeyID: bound, SHA256: sr.Record.SHA256, Time: sr.Record.Time}, sr.Sealed)
}

func mustPut(t *testing.T, s store.Store, b *store.Batch, wantStored bool) {
	t.Helper()
	stored, err := s.PutBatch(t.Context(), b)
	if err != nil {
		t.Fatalf("PutBatch(%s, %s): %v", b.Pseudonym, b.BatchID, err)
	}
	if stored != wantStored {
		t.Fatalf("PutBatch(%s, %s) stored = %v, want %v", b.Pseudonym, b.BatchID, stored, wantStored)
	}
}

// remoteCursor numbers the cursors that mustPutRemote passes.
var remoteCursor atomic.Int64

func mustPutRemote(t *testing.T, s store.Store, region string, aggs ...store.Aggregate) {
	t.Helper()
	if err := s.PutRemote(t.Context(), region, aggs, remoteCursor.Add(1)); err != nil {
		t.Fatalf("PutRemote(%s): %v", region, err)
	}
}

func aggregates(t *testing.T, s store.Store, hashes ...string) map[string]store.Aggregate {
	t.Helper()
	got, err := s.Aggregates(t.Context(), hashes)
	if err != nil {
		t.Fatalf("Aggregates: %v", err)
	}
	return got
}

func global(t *testing.T, s store.Store, hashes ...string) map[string]store.Aggregate {
	t.Helper()
	got, err := s.Global(t.Context(), hashes)
	if err != nil {
		t.Fatalf("Global: %v", err)
	}
	return got
}

func changedPage(t *testing.T, s store.Store, cursor int64, limit int) ([]store.Aggregate, int64) {
	t.Helper()
	changed, next, err := s.ChangedAggregates(t.Context(), cursor, limit)
	if err != nil {
		t.Fatalf("ChangedAggregates(%d, %d): %v", cursor, limit, err)
	}
	return changed, next
}

func wantCount(t *testing.T, s store.Store, want int64) {
	t.Helper()
	n, err := s.CountRecords(t.Context())
	if err != nil {
		t.Fatalf("CountRecords: %v", err)
	}
	if n != want {
		t.Errorf("CountRecords = %d, want %d", n, want)
	}
}

// wantNothing checks that the store holds no record and no aggregate.
func wantNothing(t *testing.T, s store.Store, hashes ...string) {
	t.Helper()
	wantCount(t, s, 0)
	if got := aggregates(t, s, hashes...); len(got) != 0 {
		t.Fatalf("aggregates after a failed PutBatch: %v", got)
	}
	if changed, _ := changedPage(t, s, 0, 10); len(changed) != 0 {
		t.Fatalf("changes after a failed PutBatch: %v", changed)
	}
}

// checkAggregates compares aggregates, taking absent and empty detections
// as equal and times by the instant.
func checkAggregates(t *testing.T, what string, got, want map[string]store.Aggregate) {
	t.Helper()
	for h, w := range want {
		g, ok := got[h]
		if !ok {
			t.Errorf("%s: %s absent, want %s", what, h, format(w))
			continue
		}
		if g.SHA256 != w.SHA256 || g.Prevalence != w.Prevalence || !g.FirstSeen.Equal(w.FirstSeen) || !g.LastSeen.Equal(w.LastSeen) ||
			!maps.Equal(nonzero(g.Detections), nonzero(w.Detections)) {
			t.Errorf("%s: got %s\nwant %s", what, format(g), format(w))
		}
	}
	for h, g := range got {
		if _, ok := want[h]; !ok {
			t.Errorf("%s: unexpected %s", what, format(g))
		}
	}
}

func nonzero(m map[string]int64) map[string]int64 {
	out := make(map[string]int64)
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

func format(a store.Aggregate) string {
	return fmt.Sprintf("{%s prevalence %d detections %v seen %s–%s}", a.SHA256[:12], a.Prevalence, a.Detections,
		a.FirstSeen.UTC().Format(time.RFC3339Nano), a.LastSeen.UTC().Format(time.RFC3339Nano))
}

// faultCtx reports itself canceled from its n-th use on, counting each call
// of Done or Err: a deterministic way to cancel an operation at each of the
// points where it checks its context.
type faultCtx struct {
	context.Context
	left atomic.Int64
	once sync.Once
	done chan struct{}
}

func newFaultCtx(parent context.Context, n int) *faultCtx {
	c := &faultCtx{Context: parent, done: make(chan struct{})}
	c.left.Store(int64(n))
	return c
}

func (c *faultCtx) tick() {
	if c.left.Add(-1) < 0 {
		c.once.Do(func() { close(c.done) })
	}
}

func (c *faultCtx) Done() <-chan struct{} {
	c.tick()
	return c.done
}

func (c *faultCtx) Err() error {
	c.tick()
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}
