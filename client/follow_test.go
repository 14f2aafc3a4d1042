package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/tlog"
)

// testLog is a log written by Tessera's POSIX driver into a directory and
// served over HTTP by a server that can be told to lie.
type testLog struct {
	dir     string
	skey    string
	vkey    string
	entries [][]byte
}

// buildLog writes a log signed with skey (made by newKey) holding
// entry(0..) and grown to each of sizes in turn, one checkpoint per step.
func buildLog(t *testing.T, skey string, entry func(int) []byte, sizes ...int) *testLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := &testLog{dir: t.TempDir(), skey: skey, vkey: keyPairs[skey]}
	l.grow(ctx, t, entry, sizes...)
	return l
}

// grow appends entries to the log up to each of sizes.
func (l *testLog) grow(ctx context.Context, t *testing.T, entry func(int) []byte, sizes ...int) {
	t.Helper()
	signer, err := note.NewSigner(l.skey)
	if err != nil {
		t.Fatal(err)
	}
	driver, err := posix.New(ctx, posix.Config{Path: l.dir})
	if err != nil {
		t.Fatal(err)
	}
	appender, shutdown, reader, err := tessera.NewAppender(ctx, driver, tessera.NewAppendOptions().
		WithCheckpointSigner(signer).WithBatching(1024, 50*time.Millisecond).WithCheckpointInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	awaiter := tessera.NewPublicationAwaiter(ctx, reader.ReadCheckpoint, 10*time.Millisecond)
	for _, size := range sizes {
		var last tessera.IndexFuture
		for i := len(l.entries); i < size; i++ {
			e := entry(i)
			l.entries = append(l.entries, e)
			last = appender.Add(ctx, tessera.NewEntry(e))
		}
		if _, _, err := awaiter.Await(ctx, last); err != nil {
			t.Fatal(err)
		}
	}
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// keyPairs maps the signer keys newKey made to their verifier keys.
var keyPairs = map[string]string{}

func entryN(i int) []byte { return fmt.Appendf(nil, "entry %d", i) }

// liar serves a testLog's files; once lie is set, it serves what change
// makes of them.
type liar struct {
	log    *testLog
	lie    atomic.Bool
	change func(path string, b []byte) []byte
	srv    *httptest.Server
}

func serve(t *testing.T, l *testLog) *liar {
	t.Helper()
	s := &liar{log: l}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/")
		b, err := os.ReadFile(filepath.Join(l.dir, filepath.FromSlash(p)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		if s.lie.Load() && s.change != nil {
			b = s.change(p, b)
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *liar) client(t *testing.T) *Log {
	t.Helper()
	l, err := NewLog(s.srv.URL, s.log.vkey, []byte("quorum none\n"), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// collect runs one Update and returns the entries it handed out.
func collect(t *testing.T, f *Follower) ([][]byte, *tlog.Checkpoint, error) {
	t.Helper()
	var got [][]byte
	next := f.State().Size
	cp, err := f.Update(context.Background(), func(i uint64, e []byte) error {
		if i != next {
			return fmt.Errorf("index %d handed out, want %d", i, next)
		}
		next++
		got = append(got, bytes.Clone(e))
		return nil
	})
	return got, cp, err
}

func newKey(t *testing.T, origin string) string {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	keyPairs[skey] = vkey
	return skey
}

// TestFollowerHonest: every entry, in order, across chunk boundaries and a
// partial bundle; then, resumed from the saved state after the log grew,
// exactly the new ones.
func TestFollowerHonest(t *testing.T) {
	defer setChunk(1)()
	l := buildLog(t, newKey(t, "vitrine.local/logs/test"), entryN, 300)
	s := serve(t, l)
	f, err := NewFollower(s.client(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, cp, err := collect(t, f)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != 300 || !slices.EqualFunc(got, l.entries, bytes.Equal) {
		t.Fatalf("got %d entries under a checkpoint of %d, want the log's 300", len(got), cp.Size)
	}
	dir := t.TempDir()
	path := StatePath(dir, cp.Origin, l.vkey)
	if err := SaveState(path, f.State()); err != nil {
		t.Fatal(err)
	}

	l.grow(context.Background(), t, entryN, 700)
	st, err := LoadState(path)
	if err != nil || st == nil {
		t.Fatalf("LoadState: %v, %v", st, err)
	}
	f, err = NewFollower(s.client(t), st)
	if err != nil {
		t.Fatal(err)
	}
	got, cp, err = collect(t, f)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != 700 || !slices.EqualFunc(got, l.entries[300:], bytes.Equal) {
		t.Fatalf("resumed: got %d entries, want entries 300 to 699", len(got))
	}
	if got, _, err := collect(t, f); err != nil || len(got) != 0 {
		t.Errorf("again at the same checkpoint: %d entries, %v; want none", len(got), err)
	}
}

func setChunk(n uint64) func() {
	old := chunkBundles
	chunkBundles = n
	return func() { chunkBundles = old }
}

// rebundle re-encodes a bundle with entry i replaced.
func rebundle(t *testing.T, b []byte, i int, with []byte) []byte {
	var eb api.EntryBundle
	if err := eb.UnmarshalText(b); err != nil {
		t.Errorf("parsing bundle: %v", err)
		return b
	}
	if i >= len(eb.Entries) {
		return b
	}
	eb.Entries[i] = with
	var out []byte
	for _, e := range eb.Entries {
		out = binary.BigEndian.AppendUint16(out, uint16(len(e)))
		out = append(out, e...)
	}
	return out
}

// TestFollowerRefusesLies: a server that answered honestly, then serves a
// doctored entry bundle, a doctored tile or a checkpoint of another tree
// under the same key: the follower fails, names what failed, and never
// hands out the doctored bytes.
func TestFollowerRefusesLies(t *testing.T) {
	defer setChunk(1)()
	skey := newKey(t, "vitrine.local/logs/test")
	l := buildLog(t, skey, entryN, 300)
	evil := []byte("EVIL")
	for _, tc := range []struct {
		name   string
		change func(t *testing.T) func(string, []byte) []byte
		want   error
		where  string
	}{
		{"bundle", func(t *testing.T) func(string, []byte) []byte {
			return func(p string, b []byte) []byte {
				if p == "tile/entries/001.p/44" {
					return rebundle(t, b, 3, evil)
				}
				return b
			}
		}, tlog.ErrTreeMismatch, "entries 256 to 299"},
		{"full bundle", func(t *testing.T) func(string, []byte) []byte {
			return func(p string, b []byte) []byte {
				if p == "tile/entries/000" {
					return rebundle(t, b, 7, evil)
				}
				return b
			}
		}, tlog.ErrTreeMismatch, "entries 0 to 255"},
		{"tile", func(t *testing.T) func(string, []byte) []byte {
			return func(p string, b []byte) []byte {
				if strings.HasPrefix(p, "tile/0/") {
					b = bytes.Clone(b)
					b[0] ^= 1
				}
				return b
			}
		}, tlog.ErrTreeMismatch, "entries 0 to 255"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := serve(t, l)
			// Honest first: a follower reads the log.
			f, err := NewFollower(s.client(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := collect(t, f); err != nil {
				t.Fatal(err)
			}
			// Then the lie, to a new follower. (The honest one, resumed,
			// has read everything the checkpoint covers: it reads
			// nothing more, so it is handed nothing.)
			s.change, _ = tc.change(t), s.lie.CompareAndSwap(false, true)
			f, err = NewFollower(s.client(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := collect(t, f)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.where) {
				t.Errorf("Update = %v, want %v naming %q", err, tc.want, tc.where)
			}
			for _, e := range got {
				if bytes.Equal(e, evil) {
					t.Errorf("the follower handed out the doctored entry")
				}
			}
		})
	}

	// A fork: another tree signed with the same key, served to a follower
	// that saw the first.
	s := serve(t, l)
	f, err := NewFollower(s.client(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := collect(t, f); err != nil {
		t.Fatal(err)
	}
	other := buildLog(t, skey, func(i int) []byte {
		if i == 5 {
			return evil
		}
		return entryN(i)
	}, 400)
	f2, err := NewFollower(serve(t, other).client(t), ptr(f.State()))
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := collect(t, f2)
	var fe *ForkError
	if !errors.Is(err, ErrForked) || !errors.As(err, &fe) || !bytes.Contains(fe.Seen, []byte("\n300\n")) || !bytes.Contains(fe.Now, []byte("\n400\n")) {
		t.Errorf("following a fork: %v, want a ForkError naming both checkpoints", err)
	}
	if len(got) != 0 {
		t.Errorf("a forked log handed out %d entries", len(got))
	}
}

func ptr[T any](v T) *T { return &v }

// TestFollowStateKeyedByKey: two logs with one origin (every platform
// installed with the default name is vitrine.local) get two state files,
// and a state is refused for a log of the same origin under another key,
// instead of raising a false alarm.
func TestFollowStateKeyedByKey(t *testing.T) {
	a := buildLog(t, newKey(t, "vitrine.local/logs/release"), entryN, 3)
	b := buildLog(t, newKey(t, "vitrine.local/logs/release"), entryN, 5)
	dir := t.TempDir()
	if StatePath(dir, "vitrine.local/logs/release", a.vkey) == StatePath(dir, "vitrine.local/logs/release", b.vkey) {
		t.Fatal("two keys of one origin share a state path")
	}
	fa, err := NewFollower(serve(t, a).client(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := collect(t, fa); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFollower(serve(t, b).client(t), ptr(fa.State())); err == nil || !strings.Contains(err.Error(), "another key") {
		t.Errorf("a's state for b: %v, want it refused as another key's", err)
	}
}

// TestLogAnswersLimited: a log that answers with more than a resource may
// hold (a checkpoint of 64 MiB, an endless tile) is cut off with
// ErrTooLarge, having read little more than the limit.
func TestLogAnswersLimited(t *testing.T) {
	var sent atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("a"), 64<<10)
		for i := 0; i < 1024; i++ { // 64 MiB, or until the client goes
			n, err := w.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	_, vkey, err := note.GenerateKey(rand.Reader, "example.com/log")
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLog(srv.URL, vkey, []byte("quorum none\n"), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Checkpoint(context.Background()); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a 64 MiB checkpoint: %v, want ErrTooLarge", err)
	}
	// (Tessera's fetcher keeps the cause's text, not the error.)
	if _, err := l.Fetcher.ReadTile(context.Background(), 0, 0, 0); err == nil || !strings.Contains(err.Error(), ErrTooLarge.Error()) {
		t.Errorf("a 64 MiB tile: %v, want ErrTooLarge", err)
	}
	if got := sent.Load(); got > 16<<20 {
		t.Errorf("the server sent %d bytes before the client stopped reading", got)
	}
}

// TestFollowerPause: an Update told to pause hands out the rest of what it
// read with the entry it paused on, stops there with ErrPause, and the
// next Update goes on from there: every entry once, in order, and no
// bundle read twice.
func TestFollowerPause(t *testing.T) {
	defer setChunk(1)()
	l := buildLog(t, newKey(t, "vitrine.local/logs/test"), entryN, 700)
	s := serve(t, l)
	var bundles atomic.Int32
	s.change = func(p string, b []byte) []byte { // counts, changes nothing
		if strings.Contains(p, "entries/") {
			bundles.Add(1)
		}
		return b
	}
	s.lie.Store(true)
	f, err := NewFollower(s.client(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	var sizes []uint64
	for range 10 {
		first := true
		cp, err := f.Update(context.Background(), func(i uint64, e []byte) error {
			if i != uint64(len(got)) {
				return fmt.Errorf("index %d handed out, want %d", i, len(got))
			}
			got = append(got, bytes.Clone(e))
			if first && i == 10 || i == 300 {
				return ErrPause // one pause mid-bundle, one at its start
			}
			return nil
		})
		first = false
		sizes = append(sizes, f.State().Size)
		if err == nil {
			if cp.Size != 700 {
				t.Fatalf("caught up at %d", cp.Size)
			}
			break
		}
		if !errors.Is(err, ErrPause) {
			t.Fatal(err)
		}
	}
	if !slices.EqualFunc(got, l.entries, bytes.Equal) {
		t.Fatalf("got %d entries, want the log's 700, each once", len(got))
	}
	if want := []uint64{256, 512, 700}; !slices.Equal(sizes, want) {
		t.Errorf("paused at sizes %v, want %v (the ends of the bundles read with the entries paused on)", sizes, want)
	}
	if n := bundles.Load(); n != 3 {
		t.Errorf("%d entry bundles read, want 3: none twice", n)
	}
}
