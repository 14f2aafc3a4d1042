package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/api"

	"github.com/vitrine-dev/vitrine/internal/platform"
)

func startNamed(t *testing.T, name string) *platform.Platform {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := platform.Start(context.Background(), platform.Config{Data: t.TempDir(), Name: name, Listen: "127.0.0.1:0", CheckpointInterval: 100 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

func runCmd(ctx context.Context, cmd func(context.Context, *env, []string) error, args ...string) (string, error) {
	var out bytes.Buffer
	err := cmd(ctx, &env{stdout: &out, stderr: &out, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, args)
	return out.String(), err
}

// TestLogVerifyTwoPlatformsOneName: two platforms installed with the
// default name share every log origin; verifying both with one monitor
// state directory raised a false "trees are inconsistent". The state is
// now kept per origin and key, and a state file of another log is refused
// by its checkpoint's signature.
func TestLogVerifyTwoPlatformsOneName(t *testing.T) {
	ctx := context.Background()
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	a, b := startNamed(t, "vitrine.local"), startNamed(t, "vitrine.local")
	for round := range 2 {
		for _, p := range []*platform.Platform{a, b} {
			if out, err := runCmd(ctx, runLogVerify, "--platform", p.URL(), "--log", "policy"); err != nil {
				t.Fatalf("round %d, log verify of %s: %v\n%s", round, p.URL(), err, out)
			}
		}
	}
	// An explicit state file made for a is refused for b, naming why.
	state := t.TempDir() + "/a.json"
	if out, err := runCmd(ctx, runLogVerify, "--platform", a.URL(), "--log", "policy", "--state", state); err != nil {
		t.Fatal(err, out)
	}
	out, err := runCmd(ctx, runLogVerify, "--platform", b.URL(), "--log", "policy", "--state", state)
	if err == nil || !strings.Contains(err.Error(), "not this log's") {
		t.Errorf("log verify of b with a's state: %v, want it refused as another log's\n%s", err, out)
	}
}

// lyingProxy forwards to a platform; once lie is set, it replaces entry 0
// of the entry bundles of the named log with evil: every time, or, with
// secondRead, only from the second time a client asks for a bundle on (the
// attack that beat a reader who checked the tree on a first read and took
// the entries from a second).
func lyingProxy(t *testing.T, target, log string, evil []byte, secondRead bool) (*httptest.Server, *atomic.Bool) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	var lie atomic.Bool
	var self string
	var mu sync.Mutex
	reads := map[string]int{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(r *http.Response) error {
		if r.Request.URL.Path == "/.well-known/vitrine.json" {
			// The discovery document names the logs by absolute URL:
			// point them at the proxy.
			b, err := io.ReadAll(r.Body)
			r.Body.Close()
			if err != nil {
				return err
			}
			b = bytes.ReplaceAll(b, []byte(target), []byte(self))
			r.Body = io.NopCloser(bytes.NewReader(b))
			r.ContentLength = int64(len(b))
			r.Header.Del("Content-Length")
			return nil
		}
		if !lie.Load() || !strings.HasPrefix(r.Request.URL.Path, "/logs/"+log+"/tile/entries/") || r.StatusCode != http.StatusOK {
			return nil
		}
		mu.Lock()
		reads[r.Request.URL.Path]++
		n := reads[r.Request.URL.Path]
		mu.Unlock()
		if secondRead && n < 2 {
			return nil
		}
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return err
		}
		var eb api.EntryBundle
		if err := eb.UnmarshalText(b); err == nil && len(eb.Entries) > 0 {
			eb.Entries[0] = evil
			b = nil
			for _, e := range eb.Entries {
				b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
				b = append(b, e...)
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		r.ContentLength = int64(len(b))
		r.Header.Del("Content-Length")
		return nil
	}
	srv := httptest.NewServer(rp)
	self = srv.URL
	t.Cleanup(srv.Close)
	return srv, &lie
}

// TestReadersRefuseDoctoredBundles: policy show and relocate verify read
// the logs' entries; a server that answers honestly and then serves a
// doctored entry bundle once got the doctored bytes used with no error
// (the tree was checked on a first read, the entries taken from a second).
// Now each fails, naming the entries, and never prints the doctored bytes.
func TestReadersRefuseDoctoredBundles(t *testing.T) {
	ctx := context.Background()
	p := startNamed(t, "vitrine.local")
	evil := []byte("EVIL")

	srv, lie := lyingProxy(t, p.URL(), "policy", evil, true)
	honest, err := runCmd(ctx, runPolicyShow, "--platform", srv.URL)
	if err != nil || !strings.Contains(honest, "zurich") {
		t.Fatalf("policy show, honest: %v\n%s", err, honest)
	}
	// Honest on a bundle's first read, doctored on the next: a reader
	// that reads once shows exactly what it proved.
	lie.Store(true)
	if out, err := runCmd(ctx, runPolicyShow, "--platform", srv.URL); err != nil || out != honest {
		t.Errorf("policy show, lying on second reads: %v\n%s\nwant what the honest server gave:\n%s", err, out, honest)
	}
	// Doctored on every read: the tree does not match.
	srv, lie = lyingProxy(t, p.URL(), "policy", evil, false)
	lie.Store(true)
	out, err := runCmd(ctx, runPolicyShow, "--platform", srv.URL)
	if err == nil || !strings.Contains(err.Error(), "tree mismatch") || !strings.Contains(err.Error(), "entries 0 to") {
		t.Errorf("policy show from a lying server: %v, want a tree mismatch naming the entries\n%s", err, out)
	}
	if strings.Contains(out, string(evil)) {
		t.Errorf("policy show printed the doctored entry:\n%s", out)
	}

	srv, lie = lyingProxy(t, p.URL(), "access-zurich", evil, false)
	if out, err := runCmd(ctx, runRelocateVerify, "--url", srv.URL, "--job", "rel-none"); err != nil && strings.Contains(err.Error(), "tree mismatch") {
		t.Fatalf("relocate verify, honest: %v\n%s", err, out)
	}
	lie.Store(true)
	if out, err := runCmd(ctx, runRelocateVerify, "--url", srv.URL, "--job", "rel-none"); err == nil || !strings.Contains(err.Error(), "tree mismatch") {
		t.Errorf("relocate verify from a lying server: %v, want a tree mismatch\n%s", err, out)
	}
}
