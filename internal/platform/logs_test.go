package platform

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vitrine-dev/vitrine/internal/fault"
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
	var mode atomic.Value // "honest", "impostor", "index", "garbage", "down", "token"
	mode.Store("honest")
	proxy := func(s *LogService) *httputil.ReverseProxy {
		u, _ := url.Parse(s.URL())
		return httputil.NewSingleHostReverseProxy(u)
	}
	realProxy, impostorProxy := proxy(real), proxy(impostor)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	// The token is needed: a wrong one appends nothing.
	bad, _ := logserver.NewRemote(front.URL+"/logs/access-zurich/", dl.VKey, []byte(d.WitnessPolicy), "not-the-token", &http.Client{Timeout: 5 * time.Second})
	if _, err := bad.Append(ctx, []byte("no token")); !errors.Is(err, logserver.ErrUnavailable) {
		t.Fatalf("append with a wrong token: %v", err)
	}

	for _, lie := range []string{"impostor", "index", "garbage", "down"} {
		// A second after the last failure, the next call tries again.
		time.Sleep(1100 * time.Millisecond)
		mode.Store(lie)
		// The impostor and the index lie sequence the entry (at
		// whatever index the other process gives) and then prove what
		// does not verify; garbage and down do not even sequence it.
		_, err := appendProve("during " + lie)
		if !errors.Is(err, logserver.ErrUnavailable) {
			t.Fatalf("%s: %v, want unavailable", lie, err)
		}
		if _, err := r.AwaitWitnessed(ctx, 1); !errors.Is(err, logserver.ErrUnavailable) {
			t.Fatalf("%s: AwaitWitnessed: %v", lie, err)
		}
		if lie == "impostor" {
			if _, err := r.Checkpoint(ctx); !errors.Is(err, logserver.ErrUnavailable) {
				t.Fatalf("impostor: checkpoint: %v", err)
			}
		}
		// Right after a failure, the log is reported unready: an
		// access that must be logged is refused without trying.
		if err := r.Ready(); !errors.Is(err, fault.ErrUnavailable) {
			t.Fatalf("%s: Ready after a failure: %v", lie, err)
		}
		if h := r.Health(); h.OK() || h.Reason == "" || h.Since.IsZero() {
			t.Fatalf("%s: health %+v", lie, h)
		}
		t.Logf("%s: refused: %v", lie, err)
	}
	mode.Store("honest")
	// A second after the last failure the next call tries again, and
	// succeeds.
	time.Sleep(1100 * time.Millisecond)
	idx, err := appendProve("honest again")
	if err != nil {
		t.Fatalf("honest again: %v", err)
	}
	if err := r.Ready(); err != nil {
		t.Fatalf("Ready after success: %v", err)
	}
	// The entries the lies sequenced at the real process are there (the
	// index lie appended honestly); the log goes on from them.
	if idx < 4 {
		t.Fatalf("honest again at index %d", idx)
	}
}
