package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"github.com/vitrine-dev/vitrine/tlog"
	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/logserver"
)

func startTestLogService(t *testing.T, name string) *LogService {
	t.Helper()
	s, err := StartLogService(t.Context(), LogServiceConfig{Data: t.TempDir(), Name: name, Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return s
}

// TestRemoteLog: the platform's process appends to a log of the logs'
// own process and gets its proofs, through a server that answers honestly
// first, then lies in each way it can, then is honest again. Each lie is
// refused as unavailable, and nothing of it is taken for a proof.
func TestRemoteLog(t *testing.T) {
	real, impostor := startTestLogService(t, "remote.test"), startTestLogService(t, "remote.test")
	var mode atomic.Value // "honest", "impostor", "index", "old", "garbage", "down", "busy"
	mode.Store("honest")
	proxy := func(s *LogService) *httputil.ReverseProxy {
		u, _ := url.Parse(s.URL())
		return httputil.NewSingleHostReverseProxy(u)
	}
	realProxy, impostorProxy := proxy(real), proxy(impostor)
	var readAuth atomic.Value // the Authorization of the last read passed on
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && !strings.HasSuffix(r.URL.Path, "/prove") {
			readAuth.Store(r.Header.Get("Authorization") + r.Header.Get("Cookie"))
		}
		switch mode.Load() {
		case "impostor":
			// Another process, with other keys, takes the token too.
			r.Header.Set("Authorization", "Bearer "+impostor.Token())
			impostorProxy.ServeHTTP(w, r)
		case "index":
			q := r.URL.Query()
			if q.Has("index") {
				q.Set("index", "0")
				r.URL.RawQuery = q.Encode()
			}
			realProxy.ServeHTTP(w, r)
		case "garbage":
			// Appends are taken; proofs are not proofs.
			if !strings.HasSuffix(r.URL.Path, "/prove") {
				realProxy.ServeHTTP(w, r)
				return
			}
			_, _ = w.Write([]byte("c2sp.org/tlog-proof@v1\nindex 7\nnot a proof\n"))
		case "old":
			// The append is answered with an index whose entry is
			// already witnessed, and nothing is stored; the rest is
			// honest.
			if strings.HasSuffix(r.URL.Path, "/add") {
				_, _ = w.Write([]byte("0"))
				return
			}
			realProxy.ServeHTTP(w, r)
		case "busy":
			w.Header().Set("Retry-After", "1")
			httpapi.Error(w, http.StatusServiceUnavailable, "the log is busy; nothing was stored, retry shortly")
		case "down":
			panic(http.ErrAbortHandler)
		default:
			realProxy.ServeHTTP(w, r)
		}
	}))
	defer front.Close()

	d := real.Description()
	dl, _ := d.log("access-zurich")
	r, err := logserver.NewRemote(front.URL+"/logs/access-zurich/", dl.VKey, []byte(d.WitnessPolicy), real.Token(), &http.Client{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r.Origin() != "remote.test/logs/access-zurich" {
		t.Fatalf("origin %q", r.Origin())
	}
	ctx := t.Context()
	appendProve := func(entry string) (uint64, error) {
		i, err := r.Append(ctx, []byte(entry))
		if err != nil {
			return 0, err
		}
		p, err := r.Prove(ctx, i)
		if err != nil {
			return i, err
		}
		if p.Index != i {
			t.Fatalf("proof of %d for entry %d", p.Index, i)
		}
		return i, nil
	}
	for i := range 3 {
		idx, err := appendProve("honest " + string(rune('a'+i)))
		if err != nil || idx != uint64(i) {
			t.Fatalf("honest append %d: index %d, %v", i, idx, err)
		}
	}
	cp, err := r.Checkpoint(ctx)
	if err != nil || cp.Size != 3 {
		t.Fatalf("checkpoint: %+v, %v", cp, err)
	}
	// The platform passes reads on to the logs process, without the
	// reader's credentials.
	reads := httptest.NewServer(http.StripPrefix("/logs/access-zurich", r.ReadHandler()))
	defer reads.Close()
	req, _ := http.NewRequest("GET", reads.URL+"/logs/access-zurich/checkpoint", nil)
	req.Header.Set("Authorization", "Bearer reader-secret")
	req.Header.Set("Cookie", "session=reader-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "remote.test/logs/access-zurich\n3\n") || readAuth.Load() != "" {
		t.Fatalf("a read through the platform: %d %q, credentials passed on: %q", resp.StatusCode, body, readAuth.Load())
	}
	// The token is needed: a wrong one appends nothing.
	bad, _ := logserver.NewRemote(front.URL+"/logs/access-zurich/", dl.VKey, []byte(d.WitnessPolicy), "not-the-token", &http.Client{Timeout: 5 * time.Second})
	if _, err := bad.Append(ctx, []byte("no token")); !errors.Is(err, logserver.ErrUnavailable) {
		t.Fatalf("append with a wrong token: %v", err)
	}

	// Each lie, and what its refusal says.
	lies := []struct{ mode, want string }{
		{"impostor", "verifying checkpoint"},
		{"index", "proved entry 0"},
		{"old", "the proof is not of the entry at 0"},
		{"garbage", "tlog-proof"},
		{"down", "EOF"},
	}
	for _, lie := range lies {
		// A second after the last failure, the next call tries again.
		time.Sleep(1100 * time.Millisecond)
		mode.Store(lie.mode)
		_, err := appendProve("during " + lie.mode)
		if !errors.Is(err, logserver.ErrUnavailable) || !strings.Contains(err.Error(), lie.want) {
			t.Fatalf("%s: %v, want unavailable: …%s…", lie.mode, err, lie.want)
		}
		// Right after a failure, the log is reported unready: an
		// access that must be logged is refused without trying.
		if err := r.Ready(); !errors.Is(err, fault.ErrUnavailable) {
			t.Fatalf("%s: Ready after a failure: %v", lie.mode, err)
		}
		if h := r.Health(); h.OK() || h.Reason == "" || h.Since.IsZero() {
			t.Fatalf("%s: health %+v", lie.mode, h)
		}
		t.Logf("%s: refused: %v", lie.mode, err)
	}
	// A witnessed checkpoint from an impostor is refused too.
	time.Sleep(1100 * time.Millisecond)
	mode.Store("impostor")
	if _, err := r.Checkpoint(ctx); err == nil || !strings.Contains(err.Error(), "verifying checkpoint") {
		t.Fatalf("impostor: checkpoint: %v", err)
	}
	time.Sleep(1100 * time.Millisecond)
	// Pushback is not a failure: the log answers, busy.
	mode.Store("busy")
	if _, err := r.Append(ctx, []byte("busy")); !errors.Is(err, logserver.ErrBusy) || r.Ready() != nil {
		t.Fatalf("busy: %v, ready %v", err, r.Ready())
	}
	mode.Store("honest")
	// Anyone may ask for the proof of an entry that is not there yet: the
	// proof waits for it, and the log is not taken for broken.
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := r.Prove(short, 1_000_000); !errors.Is(err, context.DeadlineExceeded) || r.Ready() != nil {
		t.Fatalf("proof of an entry not there: %v, ready %v", err, r.Ready())
	}
	// A proof of an entry a Remote did not append is checked against the
	// entry the log serves at its index.
	other, err := logserver.NewRemote(front.URL+"/logs/access-zurich/", dl.VKey, []byte(d.WitnessPolicy), real.Token(), &http.Client{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := other.Prove(ctx, 1); err != nil {
		t.Fatalf("proof of entry 1 by another Remote: %v", err)
	} else if _, err := p.Verify(tlog.LeafHash([]byte("honest b")), other.Verifier(), other.Policy()); err != nil {
		t.Fatalf("the proof of entry 1 does not prove it: %v", err)
	}
	// A second after the last failure the next call tries again, and
	// succeeds.
	idx, err := appendProve("honest again")
	if err != nil {
		t.Fatalf("honest again: %v", err)
	}
	if err := r.Ready(); err != nil {
		t.Fatalf("Ready after success: %v", err)
	}
	// The entries the lies sequenced at the real process are there (the
	// index and garbage lies appended honestly); the log goes on from
	// them.
	if idx < 5 {
		t.Fatalf("honest again at index %d", idx)
	}
}

// FuzzLogsDescription: whatever a logs process describes, the platform
// pins it or refuses it with an error, and every log it takes is reached
// over http(s) with a key whose name is the log's origin.
func FuzzLogsDescription(f *testing.F) {
	_, wkey, err := note.GenerateKey(nil, "f.test/witness")
	if err != nil {
		f.Fatal(err)
	}
	cwkey, err := fnote.VKeyToCosignatureV1(wkey)
	if err != nil {
		f.Fatal(err)
	}
	policy, err := tlog.SingleWitnessPolicy("w", cwkey, "http://127.0.0.1:1/witness")
	if err != nil {
		f.Fatal(err)
	}
	real := func() []byte {
		d := LogsDescription{WitnessPolicy: string(policy)}
		for _, n := range LogNames {
			_, vkey, err := note.GenerateKey(nil, "f.test/logs/"+n)
			if err != nil {
				f.Fatal(err)
			}
			d.Logs = append(d.Logs, DiscoveryLog{Name: n, Origin: "f.test/logs/" + n, VKey: vkey, URL: "http://127.0.0.1:1/logs/" + n + "/"})
		}
		b, _ := json.Marshal(d)
		return b
	}
	f.Add(real())
	f.Add([]byte(`{"witness_policy":"","logs":[]}`))
	f.Add([]byte(`{"logs":[{"name":"release","url":"file:///etc/passwd"}]}`))
	d, err := pinLogsDescription(f.Context(), &http.Client{Transport: fixedAnswer(real())}, "http://127.0.0.1:1", filepath.Join(f.TempDir(), "logs.json"))
	if err != nil {
		f.Fatalf("the seed is refused: %v", err)
	}
	if _, err := d.remotes(&RemoteLogs{URL: "http://127.0.0.1:1", Token: "t"}, http.DefaultClient); err != nil {
		f.Fatalf("the seed's logs are refused: %v", err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		hc := &http.Client{Transport: fixedAnswer(b)}
		d, err := pinLogsDescription(t.Context(), hc, "http://127.0.0.1:1", filepath.Join(t.TempDir(), "logs.json"))
		if err != nil {
			return
		}
		logs, err := d.remotes(&RemoteLogs{URL: "http://127.0.0.1:1", Token: "t"}, hc)
		if err != nil {
			return
		}
		for name, r := range logs {
			dl, _ := d.log(name)
			if r.Origin() != dl.Origin || !strings.HasPrefix(dl.URL, "http://127.0.0.1:1/") {
				t.Fatalf("log %s taken with origin %q, described %q at %q", name, r.Origin(), dl.Origin, dl.URL)
			}
		}
	})
}

// fixedAnswer answers every request with its bytes, 200.
type fixedAnswer []byte

func (a fixedAnswer) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(bytes.NewReader(a)), Request: r}, nil
}
