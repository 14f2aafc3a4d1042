package commitment

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/logserver"
	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/internal/store/sqlite"
	"github.com/vitrine-dev/vitrine/internal/store/storetest"
	"github.com/vitrine-dev/vitrine/internal/witness"
	"github.com/vitrine-dev/vitrine/telemetry"
	"github.com/vitrine-dev/vitrine/tlog"
)

// openLog opens a real access log whose checkpoints a real witness, over
// HTTP, must cosign, as in a region.
func openLog(t *testing.T) *logserver.Log {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	const origin = "example.com/access-zurich"
	vkey, err := logserver.LoadOrCreateKey(dir, origin)
	if err != nil {
		t.Fatal(err)
	}
	w, err := witness.Open(ctx, witness.Config{Dir: t.TempDir(), Name: "example.com/witness", Logs: []witness.LogKey{{Origin: origin, VKey: vkey}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	wsrv := httptest.NewServer(w.Handler())
	t.Cleanup(wsrv.Close)
	policy, err := tlog.SingleWitnessPolicy("w", w.VKey(), wsrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	l, err := logserver.Open(ctx, logserver.Config{Dir: dir, Origin: origin, WitnessPolicy: policy,
		CheckpointInterval: 100 * time.Millisecond, WitnessTimeout: 5 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := l.Close(ctx); err != nil {
			t.Errorf("closing the log: %v", err)
		}
	})
	return l
}

var quiet = slog.New(slog.DiscardHandler)

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "zurich.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newCommitter(t *testing.T, s store.Store, l Log) *Committer {
	t.Helper()
	c, err := New(Config{Region: "zurich", Store: s, Log: l, Logger: quiet,
		Now: func() time.Time { return time.Date(2026, 11, 22, 10, 0, 0, 123_456_789, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// put stores a batch of endpoint with one record of each hash label,
// a minute apart.
func put(t *testing.T, s store.Store, endpoint, batch string, labels ...string) {
	t.Helper()
	recs := make([]telemetry.Record, len(labels))
	for i, l := range labels {
		recs[i] = storetest.Record(storetest.Hash(l), time.Duration(i)*time.Minute, "")
	}
	if _, err := s.PutBatch(t.Context(), storetest.Batch(endpoint, batch, recs...)); err != nil {
		t.Fatal(err)
	}
}

// refsOf returns the refs of s's records, read through Records, not
// RecordRefs, endpoint by endpoint.
func refsOf(t *testing.T, s store.Store, endpoints ...string) []store.RecordRef {
	t.Helper()
	var out []store.RecordRef
	for _, ep := range endpoints {
		recs, _, err := s.Records(t.Context(), store.RecordQuery{Pseudonym: storetest.Pseudonym(ep)})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			out = append(out, store.RecordRef{ID: r.ID, SHA256: r.Record.SHA256, Time: r.Record.Time})
		}
	}
	slices.SortFunc(out, func(a, b store.RecordRef) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// readEntry reads entry index of l back from its published tiles, once a
// witnessed checkpoint covers it, and checks its inclusion proof.
func readEntry(t *testing.T, l *logserver.Log, index uint64) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cp, err := l.AwaitWitnessed(ctx, index)
	if err != nil {
		t.Fatal(err)
	}
	width := uint8(0) // a full bundle
	if cp.Size/256 == index/256 {
		width = uint8(cp.Size % 256)
	}
	bundle, err := l.Reader().ReadEntryBundle(ctx, index/256, width)
	if err != nil {
		t.Fatal(err)
	}
	var entries [][]byte
	for len(bundle) >= 2 {
		n := int(bundle[0])<<8 | int(bundle[1])
		if len(bundle) < 2+n {
			t.Fatalf("truncated entry bundle")
		}
		entries = append(entries, bundle[2:2+n])
		bundle = bundle[2+n:]
	}
	if int(index%256) >= len(entries) {
		t.Fatalf("bundle of %d entries has no entry %d", len(entries), index)
	}
	entry := entries[index%256]
	p, err := l.Prove(ctx, index)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Verify(tlog.LeafHash(entry), l.Verifier(), l.Policy()); err != nil {
		t.Fatalf("inclusion proof of entry %d: %v", index, err)
	}
	return entry
}

// TestCommitToRealLog commits to a store's records in a real, witnessed
// access log, reads the entry back from the log's tiles, and checks that
// it is the canonical commitment to those records.
func TestCommitToRealLog(t *testing.T) {
	s, l := openStore(t), openLog(t)
	ctx := t.Context()
	// An access record first, as the gateway writes them, so that the
	// commitment is not at index 0.
	rec, err := os.ReadFile("../../access/testdata/valid.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, bytes.SplitN(rec, []byte("\n"), 2)[0]); err != nil {
		t.Fatal(err)
	}
	put(t, s, "ep-1", "b1", "a", "b", "c")
	put(t, s, "ep-2", "b1", "a", "d")
	refs := refsOf(t, s, "ep-1", "ep-2")
	if _, err := s.DeleteRecords(ctx, []int64{refs[1].ID}); err != nil {
		t.Fatal(err)
	}
	refs = slices.Delete(refs, 1, 2)

	c := newCommitter(t, s, l)
	index, cm, err := c.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if index != 1 {
		t.Errorf("commitment at index %d, want 1", index)
	}
	want := &access.Commitment{Time: time.Date(2026, 11, 22, 10, 0, 0, 123_456_789, time.UTC), Region: "zurich", Dataset: "telemetry",
		Count: 4, Through: refs[3].ID}
	tree := access.NewDatasetTree()
	for _, r := range refs {
		if err := tree.Append(r.ID, r.SHA256, r.Time); err != nil {
			t.Fatal(err)
		}
	}
	want.Root = tree.Root()
	if !reflect.DeepEqual(cm, want) {
		t.Errorf("Commit = %+v\nwant %+v", cm, want)
	}

	entry := readEntry(t, l, index)
	if k := access.EntryKind(entry); k != access.KindCommitment {
		t.Errorf("EntryKind(entry) = %q", k)
	}
	wantEntry, err := cm.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(entry, wantEntry) {
		t.Errorf("entry in the log = %s\nwant %s", entry, wantEntry)
	}
	back, err := access.ParseCommitment(entry)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(back, refs); err != nil {
		t.Errorf("Verify(the logged commitment, the records) = %v", err)
	}
	if err := VerifyStore(ctx, s, back); err != nil {
		t.Errorf("VerifyStore(the logged commitment) = %v", err)
	}
	if !strings.Contains(string(entry), `"time":"2026-11-22T10:00:00.123Z"`) {
		t.Errorf("entry %s: want the time to the millisecond", entry)
	}
}

// TestCommitFollowsChanges commits after each change to the records: a
// record added, one deleted, the same again. Each changes the root; a
// record added past a commitment's bound leaves it verifiable against the
// store, a deletion does not.
func TestCommitFollowsChanges(t *testing.T) {
	s, l := openStore(t), &memLog{}
	ctx := t.Context()
	c := newCommitter(t, s, l)
	commit := func() *access.Commitment {
		t.Helper()
		_, cm, err := c.Commit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return cm
	}
	empty := commit()
	if empty.Count != 0 || empty.Root != access.EmptyRoot {
		t.Fatalf("commitment to an empty store = %+v", empty)
	}
	put(t, s, "ep-1", "b1", "a", "b")
	two := commit()
	put(t, s, "ep-1", "b2", "c")
	three := commit()
	if err := VerifyStore(ctx, s, two); err != nil {
		t.Errorf("an earlier commitment, after records were only added: VerifyStore = %v", err)
	}
	refs := refsOf(t, s, "ep-1")
	if _, err := s.DeleteRecords(ctx, []int64{refs[0].ID}); err != nil {
		t.Fatal(err)
	}
	afterDelete := commit()
	if err := VerifyStore(ctx, s, three); !errors.Is(err, access.ErrMismatch) {
		t.Errorf("VerifyStore(a commitment made before a deletion) = %v, want ErrMismatch", err)
	}
	if err := Verify(three, refs); err != nil {
		t.Errorf("Verify(the records as they were) = %v", err)
	}
	// The record that was deleted, back with the same hash and time
	// under a new id, is not the same dataset.
	if _, err := s.PutBatch(ctx, storetest.Batch("ep-1", "b1-again", storetest.Record(refs[0].SHA256, 0, ""))); err != nil {
		t.Fatal(err)
	}
	readded := commit()
	roots := map[string]string{}
	for name, cm := range map[string]*access.Commitment{"empty": empty, "two": two, "three": three, "after delete": afterDelete, "readded": readded} {
		if other, dup := roots[cm.Root]; dup {
			t.Errorf("commitments %q and %q have the same root %s", name, other, cm.Root)
		}
		roots[cm.Root] = name
	}
	if readded.Count != three.Count || readded.Through <= three.Through {
		t.Errorf("after a delete and a put, count %d through %d; want count %d and a bound beyond %d", readded.Count, readded.Through, three.Count, three.Through)
	}
	if len(l.entries) != 5 {
		t.Errorf("%d entries in the log, want 5", len(l.entries))
	}
	for i, e := range l.entries {
		if _, err := access.ParseCommitment(e); err != nil {
			t.Errorf("entry %d: %v", i, err)
		}
	}
}

// memLog is an access log in memory that fails while err is set.
type memLog struct {
	mu      sync.Mutex
	entries [][]byte
	err     error
	calls   int
}

func (l *memLog) Append(ctx context.Context, entry []byte) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if l.err != nil {
		return 0, l.err
	}
	l.entries = append(l.entries, slices.Clone(entry))
	return uint64(len(l.entries) - 1), nil
}

func (l *memLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

// faultStore is a store whose RecordRefs hands over pages of two refs and
// fails once it has handed over pages of them, or at once if pages is
// negative.
type faultStore struct {
	store.Store
	pages int
}

var errBroken = errors.New("disk on fire")

func (s *faultStore) RecordRefs(ctx context.Context, pageSize int, f func([]store.RecordRef) error) (int64, error) {
	if s.pages < 0 {
		return 0, errBroken
	}
	n := 0
	return s.Store.RecordRefs(ctx, 2, func(page []store.RecordRef) error {
		if n == s.pages {
			return errBroken
		}
		n++
		return f(page)
	})
}

func TestCommitFailsClosed(t *testing.T) {
	s := openStore(t)
	put(t, s, "ep-1", "b1", "a", "b", "c", "d", "e")
	for _, tc := range []struct {
		name  string
		store store.Store
		log   *memLog
		want  error
	}{
		{"store down", &faultStore{s, -1}, &memLog{}, ErrStore},
		{"store fails mid-read", &faultStore{s, 1}, &memLog{}, ErrStore},
		{"log down", s, &memLog{err: fmt.Errorf("appending: %w", logserver.ErrUnavailable)}, ErrLog},
		{"log busy", s, &memLog{err: logserver.ErrBusy}, ErrLog},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCommitter(t, tc.store, tc.log)
			_, cm, err := c.Commit(t.Context())
			if !errors.Is(err, tc.want) || cm != nil {
				t.Errorf("Commit = %v, %v; want no commitment and %v", cm, err, tc.want)
			}
			if n := tc.log.len(); n != 0 {
				t.Errorf("%d entries appended", n)
			}
			if tc.want == ErrStore && tc.log.calls != 0 {
				t.Errorf("the log was asked to append %d times after the store failed", tc.log.calls)
			}
		})
	}
}

func TestHandler(t *testing.T) {
	s := openStore(t)
	put(t, s, "ep-1", "b1", "a", "b")
	const token = "Bearer supervisor"
	authorized := func(r *http.Request) bool { return r.Header.Get("Authorization") == token }
	do := func(t *testing.T, c *Committer, method, auth string) (*http.Response, []byte) {
		t.Helper()
		req := httptest.NewRequest(method, "/v1/commitments", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		c.Handler(authorized).ServeHTTP(rec, req)
		resp := rec.Result()
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}

	t.Run("committed", func(t *testing.T) {
		l := &memLog{}
		l.entries = [][]byte{[]byte("an earlier entry")}
		resp, body := do(t, newCommitter(t, s, l), "POST", token)
		if resp.StatusCode != 200 {
			t.Fatalf("answer %d %s, want 200", resp.StatusCode, body)
		}
		var a Answer
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatal(err)
		}
		if l.len() != 2 {
			t.Fatalf("%d entries in the log, want 2", l.len())
		}
		cm, err := access.ParseCommitment(l.entries[1])
		if err != nil {
			t.Fatal(err)
		}
		want := Answer{Index: 1, Time: "2026-11-22T10:00:00.123Z", Count: cm.Count, Through: cm.Through, Root: cm.Root}
		if a != want || cm.Count != 2 {
			t.Errorf("answer %+v, want %+v for the entry %s", a, want, l.entries[1])
		}
		var raw map[string]any
		json.Unmarshal(body, &raw)
		for _, k := range []string{"index", "count", "through", "root"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("answer %s has no %q", body, k)
			}
		}
	})
	for _, tc := range []struct {
		name   string
		store  store.Store
		log    *memLog
		method string
		auth   string
		status int
		says   string
	}{
		{"no token", s, &memLog{}, "POST", "", 401, "bearer token"},
		{"wrong token", s, &memLog{}, "POST", "Bearer analyst", 401, "bearer token"},
		{"GET", s, &memLog{}, "GET", token, 405, ""},
		{"log down", s, &memLog{err: logserver.ErrUnavailable}, "POST", token, 503, "access log"},
		{"store down", &faultStore{s, -1}, &memLog{}, "POST", token, 503, "store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, newCommitter(t, tc.store, tc.log), tc.method, tc.auth)
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.says) {
				t.Fatalf("answer %d %s, want %d mentioning %q", resp.StatusCode, body, tc.status, tc.says)
			}
			if n := tc.log.len(); n != 0 {
				t.Errorf("%d entries committed", n)
			}
			switch tc.status {
			case 503:
				if resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "nothing was committed") {
					t.Errorf("503 without Retry-After or without saying nothing was committed: %v %s", resp.Header, body)
				}
				if strings.Contains(string(body), errBroken.Error()) {
					t.Errorf("503 body %s shows the store's own error", body)
				}
			case 401:
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			}
		})
	}
}

// TestRun checks that Run commits at start and then again, keeps trying
// after failures, and stops when its context ends.
func TestRun(t *testing.T) {
	s := openStore(t)
	put(t, s, "ep-1", "b1", "a")
	l := &memLog{err: logserver.ErrBusy}
	c, err := New(Config{Region: "zurich", Store: s, Log: l, Interval: 20 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("still waiting for %s", what)
			}
		}
	}
	attempts := func() int { l.mu.Lock(); defer l.mu.Unlock(); return l.calls }
	waitFor("two attempts while the log is busy", func() bool { return attempts() >= 2 })
	l.mu.Lock()
	l.err = nil
	l.mu.Unlock()
	waitFor("three commitments", func() bool { return l.len() >= 3 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}

func TestCommitWaitsItsTurn(t *testing.T) {
	c := newCommitter(t, openStore(t), &memLog{})
	c.turn <- struct{}{} // a commitment under way
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := c.Commit(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Commit while another is under way, until ctx ends = %v, want DeadlineExceeded", err)
	}
	<-c.turn
	if _, _, err := c.Commit(t.Context()); err != nil {
		t.Errorf("Commit once the other finished: %v", err)
	}
}

func TestNewRefuses(t *testing.T) {
	s, l := openStore(t), &memLog{}
	for name, cfg := range map[string]Config{
		"no store":          {Region: "zurich", Log: l},
		"no log":            {Region: "zurich", Store: s},
		"bad region":        {Region: "Zurich", Store: s, Log: l},
		"bad dataset":       {Region: "zurich", Dataset: "tele metry", Store: s, Log: l},
		"negative interval": {Region: "zurich", Store: s, Log: l, Interval: -time.Second},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestVerifyRefuses(t *testing.T) {
	cm := &access.Commitment{Count: 2, Through: 10, Root: access.EmptyRoot}
	refs := []store.RecordRef{{ID: 5, SHA256: storetest.Hash("a")}, {ID: 3, SHA256: storetest.Hash("b")}}
	if err := Verify(cm, refs); err == nil || errors.Is(err, access.ErrMismatch) {
		t.Errorf("Verify(refs out of order) = %v, want an error other than a mismatch", err)
	}
	if err := Verify(cm, refs[:1]); !errors.Is(err, access.ErrMismatch) {
		t.Errorf("Verify(one ref for a count of 2) = %v, want ErrMismatch", err)
	}
}
