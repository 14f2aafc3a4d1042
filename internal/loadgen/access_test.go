package loadgen

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeGateway answers reads the way the access gateway does: two records,
// their endpoint shown unless personal=false, and a receipt index counting
// up. Every read with status other than 200 gets that status.
func fakeGateway(t *testing.T, status int) http.Handler {
	var index atomic.Uint64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/records" || r.Header.Get("Authorization") != "Bearer vp1.test" ||
			!strings.HasPrefix(r.Header.Get("Vitrine-Justification"), "SUPERVISOR_REVIEW; ") {
			t.Errorf("read %s %v: wrong route or headers", r.URL, r.Header)
		}
		if q := r.URL.Query(); len(q.Get("sha256")) != 64 || q.Get("limit") != "10" {
			t.Errorf("read %s: want sha256 and limit=10", r.URL)
		}
		if status != http.StatusOK {
			http.Error(w, `{"error":"the access log could not take the access record"}`, status)
			return
		}
		ep := "ep_test"
		if r.URL.Query().Get("personal") == "false" {
			ep = ""
		}
		type rec struct {
			Endpoint string `json:"endpoint,omitempty"`
		}
		json.NewEncoder(w).Encode(map[string]any{
			"count":   2,
			"receipt": map[string]any{"index": index.Add(1) - 1},
			"records": []rec{{ep}, {ep}},
		})
	})
}

func TestRead(t *testing.T) {
	w := &Workload{Seed: 1}
	hashes := []string{w.Hash(0), w.Hash(1), w.Hash(2)}
	for _, tt := range []struct {
		name       string
		status     int
		threatOnly bool
		wantOpened bool
	}{
		{"custody", http.StatusOK, false, true},
		{"threat-only", http.StatusOK, true, false},
		{"unavailable", http.StatusServiceUnavailable, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(fakeGateway(t, tt.status))
			defer srv.Close()
			res, err := Read(context.Background(), ReadConfig{Region: srv.URL, Token: "vp1.test", Justification: "SUPERVISOR_REVIEW; test",
				Clients: 4, Warmup: 20 * time.Millisecond, Duration: 200 * time.Millisecond, Hashes: hashes, ThreatOnly: tt.threatOnly})
			if err != nil {
				t.Fatal(err)
			}
			if tt.status != http.StatusOK {
				if res.Reads != 0 || res.Errors == 0 || !strings.Contains(res.FirstError, "503") {
					t.Fatalf("got %d reads, %d errors, first %q; want no reads and 503 errors", res.Reads, res.Errors, res.FirstError)
				}
				return
			}
			if res.Reads == 0 || res.Errors != 0 {
				t.Fatalf("got %d reads and %d errors (%s), want reads and no errors", res.Reads, res.Errors, res.FirstError)
			}
			if res.Records != 2*res.Reads || len(res.Receipts) != res.Reads {
				t.Errorf("got %d records and %d receipts for %d reads, want 2 records and a receipt each", res.Records, len(res.Receipts), res.Reads)
			}
			if got := res.Opened == res.Records; got != tt.wantOpened || (!tt.wantOpened && res.Opened != 0) {
				t.Errorf("opened %d of %d records, want all: %v", res.Opened, res.Records, tt.wantOpened)
			}
			if res.P50 <= 0 || res.P50 > res.P99 || res.P99 > res.Max {
				t.Errorf("latencies p50 %v, p99 %v, max %v are not ordered", res.P50, res.P99, res.Max)
			}
		})
	}
}

// TestEntrySizes serves a log of 300 entries, entry i of i+1 bytes, as a
// tlog-tiles log does: a full bundle 000 and a partial bundle 001.p/44.
func TestEntrySizes(t *testing.T) {
	bundle := func(from, to int) []byte {
		var b []byte
		for i := from; i < to; i++ {
			b = binary.BigEndian.AppendUint16(b, uint16(i+1))
			b = append(b, make([]byte, i+1)...)
		}
		return b
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /log/checkpoint", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("example.com/log\n300\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— example.com/log AAAA\n"))
	})
	mux.HandleFunc("GET /log/tile/entries/000", func(w http.ResponseWriter, r *http.Request) { w.Write(bundle(0, 256)) })
	mux.HandleFunc("GET /log/tile/entries/001.p/44", func(w http.ResponseWriter, r *http.Request) { w.Write(bundle(256, 300)) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ctx := context.Background()
	got, err := EntrySizes(ctx, srv.Client(), srv.URL+"/log/", []uint64{0, 255, 256, 299}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{1, 256, 257, 300}; !slices.Equal(got, want) {
		t.Errorf("sizes %v, want %v", got, want)
	}
	if _, err := EntrySizes(ctx, srv.Client(), srv.URL+"/log", []uint64{300}, 100*time.Millisecond); err == nil {
		t.Error("got sizes of an entry past the checkpoint, want an error")
	}
}
