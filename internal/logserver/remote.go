package logserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/tilestore"
	"github.com/vitrine-dev/vitrine/tlog"
)

// Remote is a log served by a process of its own (`vitrine serve --role
// logs`), as the one process that appends to it uses it: in place of a
// *Log, with the same methods. Appends go to POST <url>/add and proofs come
// from GET <url>/prove?index=N, both with the append token; the logs
// process answers a proof once a witnessed checkpoint covers the entry.
// Every checkpoint it gets, in a proof or read, is verified under the
// log's pinned key and witness policy before it is used, and every proof
// is checked against the entry appended at its index: the appender trusts
// the logs process no more than an outsider would, as far as witnesses it
// does not run vouch for it (a policy whose quorum is none is refused).
type Remote struct {
	url   string // ends in "/"
	token string
	hc    *http.Client
	log   *client.Log
	vkey  string
	proxy http.Handler

	mu       sync.Mutex
	broken   time.Time // when it first failed, zero while it answers
	lastFail time.Time
	reason   string
	// leaves are the leaf hashes of the entries this Remote appended,
	// by index, the oldest forgotten first past maxLeaves: a proof of
	// one of them must prove that entry, not just any at its index.
	leaves map[uint64][32]byte
	order  []uint64
}

// maxLeaves bounds the leaf hashes a Remote keeps (40 bytes each). A
// proof of an entry it no longer remembers, or never appended, is checked
// against the entry the log serves at that index instead.
const maxLeaves = 1 << 16

// maxRemoteProve bounds one request for a proof: the logs process's own
// bound (30 s) and some. A proof not witnessed within it is asked for
// again, until the caller's context ends.
const maxRemoteProve = 40 * time.Second

// NotWitnessedYet is how a logs process answers (503) a proof whose
// entry no witnessed checkpoint covered within its wait.
const NotWitnessedYet = "no witnessed checkpoint covers the entry yet; ask again"

// remoteRetry is how long a Remote that could not reach its log refuses
// work without trying (Ready), so that a log out of reach costs each
// request no more than the answer 503.
const remoteRetry = time.Second

// NewRemote returns the log served at base (the prefix of /checkpoint,
// /tile/, /add and /prove), signed by vkey and cosigned under policy, that
// token appends to. hc carries every request; its timeout bounds an
// append, a proof waits as long as its context lets it.
func NewRemote(base, vkey string, policy []byte, token string, hc *http.Client) (*Remote, error) {
	base = strings.TrimSuffix(base, "/") + "/"
	// The token goes to base and nowhere else: no redirect is followed.
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	hc = &c
	l, err := client.NewLog(base, vkey, policy, hc, false)
	if err != nil {
		return nil, fmt.Errorf("log at %s: %w", base, err)
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("log at %s: %w", base, err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			// Readers' credentials are not the logs process's business.
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del("Cookie")
		},
		Transport: hc.Transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "the log's process cannot be reached; retry shortly", http.StatusBadGateway)
		},
	}
	// Only the read routes are passed on: appends and proofs take the
	// token, which the proxy never adds.
	read := http.NewServeMux()
	read.Handle("GET /checkpoint", rp)
	read.Handle("GET /tile/", rp)
	return &Remote{url: base, token: token, hc: hc, log: l, vkey: strings.TrimSpace(vkey), proxy: read, leaves: map[uint64][32]byte{}}, nil
}

// URL returns where the log is served: the prefix of /checkpoint and
// /tile/.
func (r *Remote) URL() string { return r.url }

// Origin returns the log's checkpoint origin.
func (r *Remote) Origin() string { return r.log.Origin() }

// VKey returns the log's signed-note verifier key.
func (r *Remote) VKey() string { return r.vkey }

// Verifier returns the log's signed-note verifier.
func (r *Remote) Verifier() note.Verifier { return r.log.Verifier }

// Policy returns the witness policy every checkpoint must meet.
func (r *Remote) Policy() *tlog.Policy { return r.log.Policy }

// Reader reads the log's published resources from its process.
func (r *Remote) Reader() tlog.Fetcher { return r.log.Fetcher }

// ReadHandler passes the tlog-tiles read API on to the log's process.
func (r *Remote) ReadHandler() http.Handler { return r.proxy }

// Append adds entry and returns its index once the log's process has
// sequenced it durably. ErrEntryTooLarge, ErrEmptyEntry and ErrBusy keep
// their meaning; anything else that fails is ErrUnavailable.
func (r *Remote) Append(ctx context.Context, entry []byte) (uint64, error) {
	switch {
	case len(entry) == 0:
		return 0, ErrEmptyEntry
	case len(entry) > MaxEntrySize:
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrEntryTooLarge, len(entry), MaxEntrySize)
	}
	if err := r.Ready(); err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url+"add", bytes.NewReader(entry))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	req.Header.Set("Content-Type", "application/octet-stream")
	b, err := client.Send(r.hc, req, 64)
	var se *client.StatusError
	switch {
	case errors.As(err, &se) && (se.Status == http.StatusTooManyRequests || se.Status == http.StatusServiceUnavailable && strings.Contains(se.Message, busyMessage)):
		// Pushback: the log's process answers; it is not out of reach.
		r.ok()
		return 0, fmt.Errorf("appending to %s: %w: %s", r.Origin(), ErrBusy, se.Message)
	case errors.As(err, &se) && se.Status == http.StatusRequestEntityTooLarge:
		r.ok()
		return 0, fmt.Errorf("appending to %s: %w: %s", r.Origin(), ErrEntryTooLarge, se.Message)
	case err != nil:
		return 0, r.fail("appending to", err)
	}
	idx, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 63)
	if err != nil {
		return 0, r.fail("appending to", fmt.Errorf("the log's process answered %q, not an index", truncate(string(b), 40)))
	}
	r.ok()
	r.remember(idx, entry)
	return idx, nil
}

// remember keeps the leaf hash of the entry appended at idx.
func (r *Remote) remember(idx uint64, entry []byte) {
	var leaf [32]byte
	copy(leaf[:], tlog.LeafHash(entry))
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.leaves[idx]; !ok {
		r.order = append(r.order, idx)
	}
	r.leaves[idx] = leaf
	if len(r.order) > maxLeaves {
		delete(r.leaves, r.order[0])
		r.order = r.order[1:]
	}
}

// Prove waits until index is in a witnessed checkpoint and returns its
// tlog-proof, whose checkpoint is verified under the log's key and
// policy and covers index. The proof's hashes are for whoever holds the
// entry to check, as custody does.
func (r *Remote) Prove(ctx context.Context, index uint64) (*tlog.Proof, error) {
	p, _, err := r.prove(ctx, index)
	return p, err
}

// AwaitWitnessed waits until a witnessed checkpoint covers index and
// returns it, verified.
func (r *Remote) AwaitWitnessed(ctx context.Context, index uint64) (*tlog.Checkpoint, error) {
	_, cp, err := r.prove(ctx, index)
	return cp, err
}

func (r *Remote) prove(ctx context.Context, index uint64) (*tlog.Proof, *tlog.Checkpoint, error) {
	// A proof waits for the next witnessed checkpoint, as long as ctx
	// lets it, as a log in this process would: each request bounded by
	// maxRemoteProve, not by the client's timeout.
	hc := *r.hc
	hc.Timeout = maxRemoteProve
	what := fmt.Sprintf("proving entry %d of", index)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url+"prove?index="+strconv.FormatUint(index, 10), nil)
		if err != nil {
			return nil, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+r.token)
		b, err := client.Send(&hc, req, 1<<16)
		var se *client.StatusError
		switch {
		case ctx.Err() != nil:
			return nil, nil, fmt.Errorf("%s %s: %w", what, r.Origin(), ctx.Err())
		case errors.As(err, &se) && se.Status == http.StatusServiceUnavailable && strings.Contains(se.Message, NotWitnessedYet):
			// The log answers; its witnesses have not cosigned yet.
			continue
		case errors.As(err, &se) && se.Status == http.StatusNotFound:
			// No such entry yet: wait for it as a log in this process
			// would, until ctx ends; whoever asks may ask for any index,
			// and the log's process is not at fault.
			select {
			case <-ctx.Done():
				return nil, nil, fmt.Errorf("%s %s: %w", what, r.Origin(), ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
			continue
		case err != nil:
			return nil, nil, r.fail(what, err)
		}
		p, cp, err := r.verify(ctx, b, index)
		if err != nil {
			return nil, nil, r.fail(what, err)
		}
		r.ok()
		return p, cp, nil
	}
}

// verify checks a proof the log's process gave for index: its checkpoint
// signed by the log and cosigned under the policy, and the entry appended
// at index in the checkpoint's tree. For an entry this Remote did not
// append (or no longer remembers), the entry the log serves at index is
// proven from its tiles under that checkpoint instead, and that proof is
// returned.
func (r *Remote) verify(ctx context.Context, b []byte, index uint64) (*tlog.Proof, *tlog.Checkpoint, error) {
	p, err := tlog.ParseProof(b)
	if err != nil {
		return nil, nil, err
	}
	if p.Index != index {
		return nil, nil, fmt.Errorf("the log's process proved entry %d", p.Index)
	}
	r.mu.Lock()
	leaf, ok := r.leaves[index]
	r.mu.Unlock()
	if ok {
		cp, err := p.Verify(leaf[:], r.log.Verifier, r.log.Policy)
		if err != nil {
			return nil, nil, fmt.Errorf("the proof is not of the entry at %d: %w", index, err)
		}
		return p, cp, nil
	}
	cp, err := r.log.Policy.VerifyCheckpoint(p.Checkpoint, r.log.Verifier)
	if err != nil {
		return nil, nil, fmt.Errorf("its checkpoint: %w", err)
	}
	_, own, err := r.log.Entry(ctx, cp, index)
	if err != nil {
		return nil, nil, fmt.Errorf("the entry at %d: %w", index, err)
	}
	return own, cp, nil
}

// Checkpoint reads the log's latest checkpoint, verified.
func (r *Remote) Checkpoint(ctx context.Context) (*tlog.Checkpoint, error) {
	cp, err := r.log.Checkpoint(ctx)
	if err != nil {
		return nil, r.fail("reading the checkpoint of", err)
	}
	r.ok()
	return cp, nil
}

// Ready returns nil unless the log's process failed to answer within the
// last second: then an *UnavailableError, of kind fault.ErrUnavailable.
func (r *Remote) Ready() error {
	h := r.Health()
	if h.OK() {
		return nil
	}
	return &UnavailableError{Log: r.Origin(), Health: h}
}

// Health reports the log as broken from its first failure to answer until
// it answers again, and as healthy while it answers. Between a failure and
// the next try (a second later) it is broken; past that it is reported
// healthy, so that the next request tries again.
func (r *Remote) Health() tilestore.Health {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.broken.IsZero() || time.Since(r.lastFail) >= remoteRetry {
		return tilestore.Health{State: tilestore.Healthy}
	}
	return tilestore.Health{State: tilestore.Broken, Since: r.broken, Reason: r.reason, NextAttempt: r.lastFail.Add(remoteRetry)}
}

func (r *Remote) ok() {
	r.mu.Lock()
	r.broken = time.Time{}
	r.mu.Unlock()
}

// fail records that the log's process did not answer as it should, and
// returns the error of kind ErrUnavailable that says so.
func (r *Remote) fail(what string, err error) error {
	now := time.Now()
	r.mu.Lock()
	if r.broken.IsZero() {
		r.broken = now
	}
	r.lastFail = now
	r.reason = truncate(err.Error(), 200)
	r.mu.Unlock()
	return fmt.Errorf("%s %s: %w: %v", what, r.Origin(), ErrUnavailable, err)
}

// Close does nothing: the log's process keeps the log.
func (r *Remote) Close(context.Context) error { return nil }

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
