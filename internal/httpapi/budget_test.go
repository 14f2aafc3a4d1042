package httpapi

import (
	"bytes"
	"cmp"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestBodyBudgetReserve: the rules of reserve, one sequence of
// reservations per case, each with the error it should get.
func TestBodyBudgetReserve(t *testing.T) {
	const MiB = 1 << 20
	type step struct {
		key  string
		n    int64
		want error
	}
	for _, tc := range []struct {
		name          string
		total, perKey int64
		steps         []step
	}{
		{"within", 32 * MiB, 16 * MiB, []step{{"a", 16 * MiB, nil}, {"b", 8 * MiB, nil}, {"c", MiB, nil}}},
		{"per key first", 32 * MiB, 16 * MiB, []step{{"a", 16 * MiB, nil}, {"a", 1, errSenderBudget}, {"b", 16 * MiB, errBudgetFull}, {"a", 2 * MiB, errSenderBudget}}},
		{"large share", 32 * MiB, 16 * MiB, []step{{"a", 16 * MiB, nil}, {"b", 8 * MiB, nil}, {"c", MiB + 1, errBudgetFull}, {"c", MiB, nil}, {"d", MiB, nil}}},
		{"small fill the rest", 4 * MiB, 4 * MiB, []step{{"a", MiB, nil}, {"b", MiB, nil}, {"c", MiB, nil}, {"d", MiB, nil}, {"e", 1, errBudgetFull}}},
		{"never fits", 32 * MiB, 16 * MiB, []step{{"a", 16*MiB + 1, errNeverFits}, {"b", 16 * MiB, nil}}},
		{"never fits the large share", 8 * MiB, 8 * MiB, []step{{"a", 7 * MiB, errNeverFits}, {"a", 6 * MiB, nil}}},
		{"defaults", 0, 0, []step{{"a", 48 * MiB, nil}, {"b", MiB + 1, errBudgetFull}, {"b", MiB, nil}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBodyBudget(tc.total, tc.perKey)
			var held int64
			for i, s := range tc.steps {
				if err := b.reserve(s.key, 0, s.n); err != s.want {
					t.Fatalf("step %d: reserve(%q, %d) = %v, want %v", i, s.key, s.n, err, s.want)
				}
				if s.want == nil {
					held += s.n
				}
			}
			if got := b.InUse(); got != held {
				t.Errorf("InUse() = %d, want %d", got, held)
			}
			for _, s := range tc.steps {
				if s.want == nil {
					b.free(s.key, s.n)
				}
			}
			if b.InUse() != 0 || b.inLarge != 0 || len(b.byKey) != 0 {
				t.Errorf("after freeing everything: in use %d, large %d, %d keys; want all 0", b.InUse(), b.inLarge, len(b.byKey))
			}
			if got := b.Peak(); got != held {
				t.Errorf("Peak() = %d, want %d", got, held)
			}
		})
	}
}

// TestBodyBudgetGrow: a reservation that grows past 1 MiB moves to the
// large share whole, and counts once, not beside its former size.
func TestBodyBudgetGrow(t *testing.T) {
	const MiB = 1 << 20
	b := NewBodyBudget(8*MiB, 4*MiB) // large share: 6 MiB
	steps := []struct {
		have, want int64
		err        error
		inUse      int64
		inLarge    int64
	}{
		{0, MiB / 2, nil, MiB / 2, 0},
		{MiB / 2, MiB, nil, MiB, 0},
		{MiB, 2 * MiB, nil, 2 * MiB, 2 * MiB},
		{2 * MiB, 4 * MiB, nil, 4 * MiB, 4 * MiB},
		{4 * MiB, 4*MiB + 1, errNeverFits, 4 * MiB, 4 * MiB},
	}
	for i, s := range steps {
		if err := b.reserve("a", s.have, s.want); err != s.err {
			t.Fatalf("step %d: reserve(%d → %d) = %v, want %v", i, s.have, s.want, err, s.err)
		}
		if b.inUse != s.inUse || b.inLarge != s.inLarge || b.byKey["a"] != s.inUse {
			t.Fatalf("step %d: in use %d, large %d, key %d; want %d, %d, %d", i, b.inUse, b.inLarge, b.byKey["a"], s.inUse, s.inLarge, s.inUse)
		}
	}
	if err := b.reserve("b", 0, 3*MiB); err != errBudgetFull {
		t.Errorf("3 MiB beside 4 MiB in a large share of 6: %v, want %v", err, errBudgetFull)
	}
	b.free("a", 4*MiB)
	if b.InUse() != 0 || b.inLarge != 0 || len(b.byKey) != 0 {
		t.Errorf("after free: in use %d, large %d, %d keys; want all 0", b.InUse(), b.inLarge, len(b.byKey))
	}
}

// TestBodyBudgetRead: Read's answers, and that it holds the budget until
// release and no longer.
func TestBodyBudgetRead(t *testing.T) {
	const limit = 1 << 20
	for _, tc := range []struct {
		name     string
		body     string
		chunked  bool
		held     int64 // reserved by another request of the same key
		full     bool  // other keys hold the whole budget
		perKey   int64 // a key's share; 0: 2 MiB
		want     int   // 0: read
		wantHold int64 // reserved while the body is held
	}{
		{name: "declared", body: "hello", wantHold: 5},
		{name: "empty", body: ""},
		{name: "declared at the limit", body: strings.Repeat("x", limit), wantHold: limit},
		{name: "declared over the limit", body: strings.Repeat("x", limit+1), want: http.StatusRequestEntityTooLarge},
		{name: "chunked", body: "hello", chunked: true, wantHold: chunkedStep},
		{name: "chunked grows", body: strings.Repeat("x", 200<<10), chunked: true, wantHold: 256 << 10},
		{name: "chunked at the limit", body: strings.Repeat("x", limit), chunked: true, wantHold: limit},
		// A key's share of exactly the limit (the platform's default)
		// takes a whole batch sent without a length.
		{name: "chunked at the limit, share of the limit", body: strings.Repeat("x", limit), chunked: true, perKey: limit, wantHold: limit},
		{name: "chunked over the limit, share of the limit", body: strings.Repeat("x", limit+1), chunked: true, perKey: limit, want: http.StatusRequestEntityTooLarge},
		{name: "chunked over the limit", body: strings.Repeat("x", limit+1), chunked: true, want: http.StatusRequestEntityTooLarge},
		{name: "key's share in use", body: "hello", held: 2 << 20, want: http.StatusTooManyRequests},
		{name: "budget full", body: "hello", full: true, want: http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBodyBudget(6<<20, cmp.Or(tc.perKey, 2<<20))
			if tc.held > 0 {
				if err := b.reserve("a", 0, tc.held); err != nil {
					t.Fatal(err)
				}
			}
			if tc.full {
				for _, k := range []string{"b", "c", "d", "e", "f", "g"} {
					if err := b.reserve(k, 0, 1<<20); err != nil {
						t.Fatal(err)
					}
				}
			}
			before := b.InUse()
			var r io.Reader = strings.NewReader(tc.body)
			if tc.chunked {
				r = io.MultiReader(r) // no length known
			}
			req := httptest.NewRequest("POST", "/", r)
			if tc.chunked {
				req.ContentLength = -1
			}
			w := httptest.NewRecorder()
			body, release, ok := b.Read(w, req, "a", limit)
			if tc.want != 0 {
				if ok || w.Code != tc.want {
					t.Fatalf("Read: ok=%v, answered %d %s; want %d", ok, w.Code, w.Body, tc.want)
				}
				if tc.want == http.StatusTooManyRequests || tc.want == http.StatusServiceUnavailable {
					if w.Header().Get("Retry-After") == "" || w.Header().Get("Connection") != "close" || !strings.Contains(w.Body.String(), "nothing was stored") {
						t.Errorf("%d answer: headers %v, body %s; want Retry-After, Connection: close and that nothing was stored", tc.want, w.Header(), w.Body)
					}
				}
				if got := b.InUse(); got != before {
					t.Errorf("after a refused Read, %d bytes reserved; want %d", got, before)
				}
				return
			}
			if !ok {
				t.Fatalf("Read answered %d %s; want the body", w.Code, w.Body)
			}
			if string(body) != tc.body {
				t.Errorf("Read returned %d bytes, want %d", len(body), len(tc.body))
			}
			if got := b.InUse() - before; got != tc.wantHold {
				t.Errorf("while the body is held, %d bytes reserved for it; want %d", got, tc.wantHold)
			}
			release()
			release()
			if got := b.InUse(); got != before {
				t.Errorf("after release (twice), %d bytes reserved; want %d", got, before)
			}
		})
	}
}

// BenchmarkReadBody reads a body the size of a batch of 500 records (what
// `vitrine-bench ingest` sends) through the budget, and as ReadLimited
// did before it.
func BenchmarkReadBody(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 122<<10)
	run := func(b *testing.B, read func(w http.ResponseWriter, r *http.Request) bool) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			rd := bytes.NewReader(body)
			req := httptest.NewRequest("POST", "/", rd)
			w := httptest.NewRecorder()
			for pb.Next() {
				rd.Reset(body)
				req.Body = io.NopCloser(rd)
				req.ContentLength = int64(len(body))
				if !read(w, req) {
					b.Fatal(w.Body)
				}
			}
		})
	}
	b.Run("budget", func(b *testing.B) {
		bb := NewBodyBudget(0, 16<<20)
		run(b, func(w http.ResponseWriter, r *http.Request) bool {
			_, release, ok := bb.Read(w, r, "endpoint", 16<<20)
			if ok {
				release()
			}
			return ok
		})
	})
	b.Run("ReadLimited", func(b *testing.B) {
		run(b, func(w http.ResponseWriter, r *http.Request) bool {
			_, ok := ReadLimited(w, r, 16<<20)
			return ok
		})
	})
}
