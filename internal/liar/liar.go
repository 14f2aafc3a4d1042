// Package liar is a test helper: a reverse proxy in front of a Vitrine
// platform that answers honestly until told to lie about one of its logs,
// and then serves doctored entry bundles, hash tiles or checkpoints. Every
// reader that hands an outsider log bytes is tested against it: none may
// return what the liar made up.
package liar

import (
	"bytes"
	"encoding/binary"
	"io"
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
)

// Lie is what the proxy doctors.
type Lie int32

const (
	// Honest forwards every answer as the platform gave it.
	Honest Lie = iota
	// Bundle replaces every entry of every entry bundle of the log with
	// the proxy's evil bytes.
	Bundle
	// BundleOnSecondRead does as Bundle, but only from the second time a
	// client asks for a bundle: the attack on a reader that checks the
	// tree on a first read and takes the entries from a second.
	BundleOnSecondRead
	// Tile flips a bit in the first hash of every hash tile of the log.
	Tile
	// Checkpoint serves the log's checkpoint with another root hash (its
	// signatures then fail).
	Checkpoint
	// Frozen serves, from now on, the checkpoint the log served next: a
	// log that stopped, for monitors that must notice it. It is not in
	// Lies: a frozen checkpoint is true, only old.
	Frozen
	// Slow answers every tile of the log (hash tiles and entry bundles)
	// SlowDelay late: a platform that stalls the readers it does not want
	// to see its log. It is not in Lies: what it serves is true.
	Slow
	// Hide serves, from now on, the checkpoint the log served next, as
	// Frozen does, and refuses every tile (404): a log that shows others a
	// newer tree and will not prove it to this reader. Not in Lies.
	Hide
)

// SlowDelay is how late Slow answers.
const SlowDelay = 500 * time.Millisecond

func (l Lie) String() string {
	return [...]string{"honest", "doctored bundles", "doctored bundles on second reads", "doctored tiles", "a doctored checkpoint", "a frozen checkpoint", "slow tiles", "a hidden tree"}[l]
}

// Lies are the lies a reader must refuse.
var Lies = []Lie{Bundle, BundleOnSecondRead, Tile, Checkpoint}

// Proxy is the lying proxy. Its URL stands for the platform: the discovery
// document it serves names the proxy's URLs, so that clients read the logs
// through it.
type Proxy struct {
	*httptest.Server
	lie    atomic.Int32
	log    string
	evil   []byte
	mu     sync.Mutex
	reads  map[string]int
	frozen []byte
}

// New starts a proxy, honest at first, to the platform at target, that
// lies about the log named log (release, policy, access-zurich) with evil
// as the doctored entry.
func New(t testing.TB, target, log string, evil []byte) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{log: log, evil: evil, reads: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(r *http.Response) error { return p.modify(r, target) }
	p.Server = httptest.NewServer(rp)
	t.Cleanup(p.Close)
	return p
}

// Tell sets the lie the proxy tells from now on.
func (p *Proxy) Tell(l Lie) { p.lie.Store(int32(l)) }

func (p *Proxy) modify(r *http.Response, target string) error {
	path := r.Request.URL.Path
	if path == "/.well-known/vitrine.json" {
		// The discovery document names the logs by absolute URL:
		// point them at the proxy.
		return replaceBody(r, func(b []byte) []byte { return bytes.ReplaceAll(b, []byte(target), []byte(p.URL)) })
	}
	prefix := "/logs/" + p.log + "/"
	if r.StatusCode != http.StatusOK || !strings.HasPrefix(path, prefix) {
		return nil
	}
	rest := strings.TrimPrefix(path, prefix)
	switch lie := Lie(p.lie.Load()); {
	case (lie == Bundle || lie == BundleOnSecondRead) && strings.HasPrefix(rest, "tile/entries/"):
		p.mu.Lock()
		p.reads[path]++
		n := p.reads[path]
		p.mu.Unlock()
		if lie == BundleOnSecondRead && n < 2 {
			return nil
		}
		return replaceBody(r, p.doctorBundle)
	case lie == Tile && strings.HasPrefix(rest, "tile/") && !strings.HasPrefix(rest, "tile/entries/"):
		return replaceBody(r, func(b []byte) []byte {
			if len(b) > 0 {
				b[0] ^= 1
			}
			return b
		})
	case lie == Slow && strings.HasPrefix(rest, "tile/"):
		time.Sleep(SlowDelay)
		return nil
	case lie == Hide && strings.HasPrefix(rest, "tile/"):
		r.StatusCode, r.Status = http.StatusNotFound, "404 Not Found"
		return replaceBody(r, func([]byte) []byte { return []byte("not found\n") })
	case (lie == Frozen || lie == Hide) && rest == "checkpoint":
		return replaceBody(r, func(b []byte) []byte {
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.frozen == nil {
				p.frozen = bytes.Clone(b)
			}
			return bytes.Clone(p.frozen)
		})
	case lie == Checkpoint && rest == "checkpoint":
		return replaceBody(r, func(b []byte) []byte {
			// Line 3 is the root hash, base64: change its first letter.
			lines := bytes.SplitN(b, []byte("\n"), 4)
			if len(lines) == 4 && len(lines[2]) > 0 {
				if lines[2][0] == 'A' {
					lines[2][0] = 'B'
				} else {
					lines[2][0] = 'A'
				}
			}
			return bytes.Join(lines, []byte("\n"))
		})
	}
	return nil
}

// doctorBundle replaces each of the bundle's entries with the evil one.
func (p *Proxy) doctorBundle(b []byte) []byte {
	var eb api.EntryBundle
	if err := eb.UnmarshalText(b); err != nil || len(eb.Entries) == 0 {
		return b
	}
	var out []byte
	for range eb.Entries {
		out = binary.BigEndian.AppendUint16(out, uint16(len(p.evil)))
		out = append(out, p.evil...)
	}
	return out
}

func replaceBody(r *http.Response, f func([]byte) []byte) error {
	b, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		return err
	}
	b = f(b)
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
	r.Header.Del("Content-Length")
	r.Header.Del("Content-Encoding")
	return nil
}
