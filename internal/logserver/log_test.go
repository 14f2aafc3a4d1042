package logserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"github.com/transparency-dev/tessera/fsck"
	sumtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/vitrine-dev/vitrine/internal/logstore"
	"github.com/vitrine-dev/vitrine/internal/logstore/logstoretest"
	"github.com/vitrine-dev/vitrine/tlog"
)

const testToken = "0123456789abcdef0123456789abcdef"

// openTest opens a log without witnesses and serves it.
func openTest(t *testing.T) (*Log, *httptest.Server) {
	t.Helper()
	return openTestOn(t, testStorages[0])
}

// testStorage is a storage driver the log's tests run on.
type testStorage struct {
	name string
	// open returns the driver (nil: the journaled tiles) and the
	// checkpoint interval to use with it.
	open func(t *testing.T) (tessera.Driver, time.Duration)
}

var testStorages = []testStorage{
	{"journal", func(*testing.T) (tessera.Driver, time.Duration) { return nil, 100 * time.Millisecond }},
	{"mysql", func(t *testing.T) (tessera.Driver, time.Duration) {
		m, err := logstore.OpenMySQL(context.Background(), logstoretest.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		return m, logstore.MinCheckpointInterval
	}},
}

func openTestOn(t *testing.T, st testStorage) (*Log, *httptest.Server) {
	t.Helper()
	driver, interval := st.open(t)
	l, err := Open(context.Background(), Config{Dir: t.TempDir(), Origin: "example.com/test", Storage: driver, CheckpointInterval: interval})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(l.Handler(func(r *http.Request) bool {
		return r.Header.Get("Authorization") == "Bearer "+testToken
	}))
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := l.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l, srv
}

func do(t *testing.T, method, u, token string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestAddAnswers(t *testing.T) {
	_, srv := openTest(t)
	tests := []struct {
		name      string
		method    string
		token     string
		body      []byte
		want      int
		wantInErr string
	}{
		{"no token", "POST", "", []byte("x"), 401, "bearer token"},
		{"wrong token", "POST", strings.Repeat("f", 32), []byte("x"), 401, "bearer token"},
		{"empty entry", "POST", testToken, nil, 400, "empty"},
		{"oversized entry", "POST", testToken, make([]byte, MaxEntrySize+1), 413, "larger than"},
		{"largest entry", "POST", testToken, bytes.Repeat([]byte{7}, MaxEntrySize), 200, ""},
		{"GET add", "GET", testToken, nil, 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, tc.method, srv.URL+"/add", tc.token, tc.body)
			if resp.StatusCode != tc.want {
				t.Fatalf("status = %d (%s), want %d", resp.StatusCode, body, tc.want)
			}
			if tc.wantInErr != "" && !strings.Contains(string(body), tc.wantInErr) {
				t.Errorf("body = %s, want it to mention %q", body, tc.wantInErr)
			}
			if tc.want == 200 {
				if _, err := strconv.ParseUint(string(body), 10, 64); err != nil {
					t.Errorf("body = %q, want a decimal index", body)
				}
			}
		})
	}
}

// TestLogInterop appends entries over HTTP and checks the served log with
// code we did not write: Tessera's client and fsck, and x/mod's sumdb/tlog.
func TestLogInterop(t *testing.T) {
	for _, st := range testStorages {
		t.Run(st.name, func(t *testing.T) {
			l, srv := openTestOn(t, st)
			testLogInterop(t, l, srv)
		})
	}
}

func testLogInterop(t *testing.T, l *Log, srv *httptest.Server) {
	ctx := context.Background()
	const n = 700
	entries := make([][]byte, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				e := []byte(fmt.Sprintf("entry %d", i))
				resp, body := do(t, "POST", srv.URL+"/add", testToken, e)
				if resp.StatusCode != 200 {
					t.Errorf("add: %d %s", resp.StatusCode, body)
					return
				}
				idx, _ := strconv.ParseUint(string(body), 10, 64)
				mu.Lock()
				if entries[idx] != nil {
					t.Errorf("index %d given twice", idx)
				}
				entries[idx] = e
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	cp, err := l.AwaitWitnessed(ctx, n-1)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != n {
		t.Fatalf("checkpoint size %d, want %d", cp.Size, n)
	}

	// Headers of the tlog-tiles API.
	for _, tc := range []struct{ path, ctype, cache string }{
		{"/checkpoint", "text/plain; charset=utf-8", cacheCheckpoint},
		{"/" + layout.TilePath(0, 0, 0), "application/octet-stream", cacheImmutable},
		{"/" + layout.TilePath(0, 2, uint8(n%256)), "application/octet-stream", cachePartial},
		{"/" + layout.EntriesPath(1, 0), "application/octet-stream", cacheImmutable},
		{"/" + layout.EntriesPath(2, uint8(n%256)), "application/octet-stream", cachePartial},
	} {
		resp, body := do(t, "GET", srv.URL+tc.path, "", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", tc.path, resp.StatusCode, body)
		}
		if got := resp.Header.Get("Content-Type"); got != tc.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, tc.ctype)
		}
		if got := resp.Header.Get("Cache-Control"); got != tc.cache {
			t.Errorf("GET %s: Cache-Control %q, want %q", tc.path, got, tc.cache)
		}
	}
	for _, bad := range []string{"/tile/0/x000/001", "/tile/64/000", "/tile/01/000", "/tile/0/000.p/0", "/tile/0/000.p/256", "/tile/entries/abc", "/tile/"} {
		if resp, body := do(t, "GET", srv.URL+bad, "", nil); resp.StatusCode != 400 && resp.StatusCode != 404 {
			t.Errorf("GET %s: %d (%d bytes), want 400 or 404", bad, resp.StatusCode, len(body))
		}
	}

	// Tessera's fsck over HTTP.
	u, _ := url.Parse(srv.URL + "/")
	f, err := client.NewHTTPFetcher(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := fsck.New(l.Origin(), l.Verifier(), f, bundleHashes, fsck.Opts{N: 4}).Check(ctx); err != nil {
		t.Errorf("tessera fsck: %v", err)
	}

	// x/mod's sumdb/tlog: tree hash from our entries, tiles read as sumdb tiles.
	hashes := make([]sumtlog.Hash, 0, 2*n)
	for i, e := range entries {
		h, err := sumtlog.StoredHashes(int64(i), e, sumtlog.HashReaderFunc(func(idx []int64) ([]sumtlog.Hash, error) {
			out := make([]sumtlog.Hash, len(idx))
			for k, x := range idx {
				out[k] = hashes[x]
			}
			return out, nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, h...)
	}
	memReader := sumtlog.HashReaderFunc(func(idx []int64) ([]sumtlog.Hash, error) {
		out := make([]sumtlog.Hash, len(idx))
		for k, x := range idx {
			out[k] = hashes[x]
		}
		return out, nil
	})
	want, err := sumtlog.TreeHash(n, memReader)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want[:], cp.Hash) {
		t.Fatalf("checkpoint root %x, x/mod tlog computes %x", cp.Hash, want)
	}
	tree := sumtlog.Tree{N: n, Hash: want}
	tiles := sumtlog.TileHashReader(tree, &tileReader{f: f})
	for _, idx := range []int64{0, 1, 255, 256, 511, 512, n - 1} {
		p, err := sumtlog.ProveRecord(n, idx, tiles)
		if err != nil {
			t.Fatalf("x/mod ProveRecord(%d) over our tiles: %v", idx, err)
		}
		if err := sumtlog.CheckRecord(p, n, want, idx, sumtlog.RecordHash(entries[idx])); err != nil {
			t.Errorf("x/mod CheckRecord(%d): %v", idx, err)
		}
		// Our own proof, checked by x/mod too.
		proof, err := l.Prove(ctx, uint64(idx))
		if err != nil {
			t.Fatal(err)
		}
		rp := make(sumtlog.RecordProof, len(proof.Hashes))
		for k, h := range proof.Hashes {
			copy(rp[k][:], h)
		}
		if err := sumtlog.CheckRecord(rp, n, want, idx, sumtlog.RecordHash(entries[idx])); err != nil {
			t.Errorf("our inclusion proof for %d rejected by x/mod: %v", idx, err)
		}
		if _, err := proof.Verify(tlog.LeafHash(entries[idx]), l.Verifier(), l.Policy()); err != nil {
			t.Errorf("our proof for %d: %v", idx, err)
		}
	}
	// Consistency proofs from our tiles, checked by x/mod.
	for _, old := range []int64{1, 256, 300} {
		tp, err := sumtlog.ProveTree(n, old, tiles)
		if err != nil {
			t.Fatal(err)
		}
		oldHash, err := sumtlog.TreeHash(old, memReader)
		if err != nil {
			t.Fatal(err)
		}
		if err := sumtlog.CheckTree(tp, n, want, old, oldHash); err != nil {
			t.Errorf("x/mod CheckTree(%d -> %d): %v", old, n, err)
		}
		ours, err := tlog.ConsistencyProof(ctx, f, uint64(old), n)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.VerifyConsistency(uint64(old), n, oldHash[:], want[:], ours); err != nil {
			t.Errorf("our consistency proof %d -> %d: %v", old, n, err)
		}
	}
}

// tileReader serves our tlog-tiles hash tiles to x/mod's sumdb/tlog, whose
// tile format (8-high tiles of concatenated hashes) is the same.
type tileReader struct{ f *client.HTTPFetcher }

func (r *tileReader) Height() int { return 8 }

func (r *tileReader) ReadTiles(tiles []sumtlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		p := uint8(0)
		if t.W < 256 {
			p = uint8(t.W)
		}
		b, err := r.f.ReadTile(context.Background(), uint64(t.L), uint64(t.N), p)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (r *tileReader) SaveTiles([]sumtlog.Tile, [][]byte) {}

// bundleHashes turns an entry bundle into leaf hashes, for fsck.
func bundleHashes(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, fmt.Errorf("truncated bundle")
		}
		n := int(b[0])<<8 | int(b[1])
		if len(b) < 2+n {
			return nil, fmt.Errorf("truncated entry")
		}
		h := sha256.Sum256(append([]byte{0}, b[2:2+n]...))
		out = append(out, h[:])
		b = b[2+n:]
	}
	return out, nil
}

func TestParseTilePath(t *testing.T) {
	tests := []struct {
		in   string
		want TileResource
		ok   bool
	}{
		{"0/000", TileResource{Level: 0, Index: 0}, true},
		{"3/x001/x234/067", TileResource{Level: 3, Index: 1234067}, true},
		{"0/001.p/5", TileResource{Index: 1, Width: 5}, true},
		{"entries/x001/002", TileResource{Entries: true, Index: 1002}, true},
		{"entries/002.p/255", TileResource{Entries: true, Index: 2, Width: 255}, true},
		{"63/000", TileResource{Level: 63}, true},
		{"64/000", TileResource{}, false},
		{"00/000", TileResource{}, false},
		{"0/0", TileResource{}, false},
		{"0/x000/001", TileResource{}, false},
		{"0/001.p/0", TileResource{}, false},
		{"0/001.p/256", TileResource{}, false},
		{"0/001.p/05", TileResource{}, false},
		{"0/001/", TileResource{}, false},
		{"0", TileResource{}, false},
		{"entries", TileResource{}, false},
		{"-1/000", TileResource{}, false},
		{"0/../000", TileResource{}, false},
	}
	for _, tc := range tests {
		got, err := ParseTilePath(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseTilePath(%q) error = %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && got != tc.want {
			t.Errorf("ParseTilePath(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func FuzzParseTilePath(f *testing.F) {
	for _, s := range []string{"0/000", "1/x001/002.p/7", "entries/003", "entries/x999/999.p/255", "0/000.p/", "x/y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		res, err := ParseTilePath(p)
		if err != nil {
			return
		}
		var canon string
		if res.Entries {
			canon = layout.EntriesPath(res.Index, res.Width)
		} else {
			canon = layout.TilePath(res.Level, res.Index, res.Width)
		}
		if canon != "tile/"+p {
			t.Fatalf("ParseTilePath(%q) accepted a non-canonical path (canonical %q)", p, canon)
		}
	})
}

// TestEntryLimitMySQL: a log on a MySQL server whose max_allowed_packet
// cannot hold a bundle of 256 entries of 64 KiB (MariaDB's default) refuses
// such entries up front, with 413, and goes on taking the others.
func TestEntryLimitMySQL(t *testing.T) {
	l, srv := openTestOn(t, testStorages[1])
	if l.maxEntry == MaxEntrySize {
		t.Skip("the server's max_allowed_packet holds full bundles of the largest entries")
	}
	resp, body := do(t, "POST", srv.URL+"/add", testToken, bytes.Repeat([]byte("x"), l.maxEntry+1))
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), strconv.Itoa(l.maxEntry)) {
		t.Fatalf("entry of %d bytes: %d %s, want 413 naming the limit %d", l.maxEntry+1, resp.StatusCode, body, l.maxEntry)
	}
	for i := range 3 {
		if resp, body := do(t, "POST", srv.URL+"/add", testToken, bytes.Repeat([]byte{byte('a' + i)}, l.maxEntry)); resp.StatusCode != 200 {
			t.Fatalf("entry of %d bytes: %d %s", l.maxEntry, resp.StatusCode, body)
		}
	}
}
