package monitor

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/keys"
)

// Who accessed my data.
//
// Access records name their data subjects by pseudonym (an HMAC of the
// endpoint's id under the deployment's pseudonymisation key), so that a
// reader of the log cannot tell whose data was read. The monitor, holding
// the key of a platform, indexes the pseudonyms its access logs name as it
// follows them; an endpoint that shows its own token gets every access
// entry that names it, each with a proof that the log holds it.

type subjectRow struct {
	platform, log, pseudonym string
	index                    uint64
}

// subjects is one B-tree, clustered by what it is asked by (a platform's
// pseudonym), holding no more than it must: the pseudonym's 32 bytes.
// Its rows are inserted with the chunk that read them, in one
// transaction with the follower's state, so no row is ever inserted twice.
const subjectsSchema = `
CREATE TABLE IF NOT EXISTS subjects (
	platform TEXT NOT NULL,
	pseudonym BLOB NOT NULL,
	log TEXT NOT NULL,
	idx INTEGER NOT NULL,
	PRIMARY KEY (platform, pseudonym, log, idx)
) WITHOUT ROWID;`

// pseudonymBytes is the 32-byte HMAC of a pseudonym ("hmac-sha256:" and
// 64 hex digits), or nil for one of another form.
func pseudonymBytes(p string) []byte {
	h, ok := strings.CutPrefix(p, "hmac-sha256:")
	if !ok || len(h) != 64 {
		return nil
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return nil
	}
	return b
}

// AccessesPage is the number of entries GET /v1/accesses answers at once.
const AccessesPage = 100

// AccessesAnswer is what GET /v1/accesses answers an endpoint.
type AccessesAnswer struct {
	Platform  string `json:"platform"`
	Endpoint  string `json:"endpoint"`
	Pseudonym string `json:"pseudonym"`
	// Accesses are the access entries that name the endpoint, oldest
	// first by the monitor's reading, each with a c2sp.org/tlog-proof.
	Accesses []Access `json:"accesses"`
	// Next is the after= of the next page ("<log>:<index>"); absent on
	// the last one.
	Next string `json:"next,omitempty"`
}

// Access is one access entry that names an endpoint.
type Access struct {
	Log   string `json:"log"`
	Index uint64 `json:"index"`
	Entry string `json:"entry"`
	Proof string `json:"proof"`
}

// Accesses returns the access entries of platform base that name the
// endpoint whose token this is, after the row after, read and proven from
// the logs the monitor follows.
func (m *Monitor) Accesses(ctx context.Context, base, token, after string) (*AccessesAnswer, error) {
	afterLog, afterIndex, err := parseAfter(after)
	if err != nil {
		return nil, err
	}
	key := m.cfg.PseudonymKeys[base]
	m.mu.Lock()
	vkey := m.endpointKeys[base]
	m.mu.Unlock()
	if key == nil {
		return nil, fault.New(fault.ErrNotFound, "this monitor does not hold the pseudonymisation key of "+base)
	}
	if vkey == "" {
		return nil, fault.New(fault.ErrUnavailable, "the monitor has not read the platform's endpoint key yet")
	}
	v, err := endpoint.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("the platform's endpoint key: %w", err)
	}
	id, err := v.Verify(token)
	if err != nil {
		return nil, errUnauthorized
	}
	if wait := m.askers.take(base+" "+id.ID, m.cfg.Now()); wait > 0 {
		return nil, &tooManyError{wait}
	}
	ans := &AccessesAnswer{Platform: base, Endpoint: id.ID, Pseudonym: endpoint.Pseudonym(key, id.ID), Accesses: []Access{}}
	rows, err := m.store.db.QueryContext(ctx, `SELECT log, idx FROM subjects WHERE platform = ? AND pseudonym = ? AND (log, idx) > (?, ?) ORDER BY log, idx LIMIT ?`,
		base, pseudonymBytes(ans.Pseudonym), afterLog, afterIndex, AccessesPage)
	if err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, err)
	}
	type hit struct {
		log string
		idx int64
	}
	var hits []hit
	for rows.Next() {
		var h hit
		if err := rows.Scan(&h.log, &h.idx); err != nil {
			rows.Close()
			return nil, fault.Mark(fault.ErrUnavailable, err)
		}
		hits = append(hits, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, err)
	}
	for _, h := range hits {
		f, cp, err := m.followedCheckpoint(ctx, base, h.log)
		if err != nil {
			return nil, err
		}
		if f == nil || cp == nil {
			return nil, fault.New(fault.ErrUnavailable, "the monitor has not followed "+h.log+" since it started")
		}
		entry, proof, err := f.log.Entry(ctx, cp, uint64(h.idx))
		if err != nil {
			return nil, fault.Mark(fault.ErrUnavailable, fmt.Errorf("reading %s entry %d: %w", h.log, h.idx, err))
		}
		ans.Accesses = append(ans.Accesses, Access{Log: h.log, Index: uint64(h.idx), Entry: string(entry), Proof: string(proof.Marshal())})
	}
	if len(hits) == AccessesPage {
		last := hits[len(hits)-1]
		ans.Next = fmt.Sprintf("%s:%d", last.log, last.idx)
	}
	return ans, nil
}

// parseAfter reads the after= of GET /v1/accesses: "" (from the first) or
// "<log>:<index>" as next gives it.
func parseAfter(after string) (log string, index int64, err error) {
	if after == "" {
		return "", -1, nil
	}
	l, i, ok := strings.Cut(after, ":")
	n, perr := strconv.ParseUint(i, 10, 63)
	if !ok || perr != nil || l == "" || len(l) > 256 || strconv.FormatUint(n, 10) != i {
		return "", 0, fault.New(fault.ErrInvalid, `after must be "<log>:<index>", as next gives it`)
	}
	return l, int64(n), nil
}

var errUnauthorized = fault.New(fault.ErrInvalid, "not a valid endpoint token of this platform")

// serveAccesses is GET /v1/accesses?platform=URL&after=N, with the
// endpoint's own token.
// tooManyError is an endpoint that asked more than AccessesPerMinute
// times in a minute: it asks again after Wait.
type tooManyError struct{ Wait time.Duration }

func (e *tooManyError) Error() string {
	return fmt.Sprintf("more than %d asks a minute for this endpoint: ask again in %s", AccessesPerMinute, e.Wait.Round(time.Second))
}

// AccessesPerMinute is how often one endpoint may ask who accessed its
// data: each ask reads up to AccessesPage entries from the platform, with
// their proofs. An endpoint with many accesses pages through them in
// minutes; nobody makes the monitor read the platform at will.
const AccessesPerMinute = 60

// maxAsking bounds the asks the monitor answers at once, over all
// endpoints; one beyond it is told to come back (503).
const maxAsking = 8

// askers counts each endpoint's asks in the current minute, for at most
// maxAskers endpoints (the least recent forgotten: an endpoint forgotten
// starts a minute afresh).
type askers struct {
	mu     sync.Mutex
	counts *lru.Cache[string, askWindow]
}

type askWindow struct {
	start time.Time
	n     int
}

const maxAskers = 100_000

// take counts an ask of key at now and returns 0 if it may go on, or how
// long until it may.
func (a *askers) take(key string, now time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.counts == nil {
		a.counts, _ = lru.New[string, askWindow](maxAskers)
	}
	w, ok := a.counts.Get(key)
	if !ok || now.Sub(w.start) >= time.Minute || now.Before(w.start) {
		w = askWindow{start: now}
	}
	if w.n >= AccessesPerMinute {
		return w.start.Add(time.Minute).Sub(now)
	}
	w.n++
	a.counts.Add(key, w)
	return 0
}

func (m *Monitor) serveAccesses(w http.ResponseWriter, r *http.Request) {
	select {
	case m.asking <- struct{}{}:
		defer func() { <-m.asking }()
	default:
		httpapi.Unavailable(w, time.Second, "the monitor answers as many endpoints as it can at once; ask again in a second")
		return
	}
	base := strings.TrimRight(r.URL.Query().Get("platform"), "/")
	if base == "" && len(m.cfg.Platforms) == 1 {
		base = m.cfg.Platforms[0]
	}
	after := r.URL.Query().Get("after")
	token := keys.Bearer(r)
	if token == "" {
		httpapi.Unauthorized(w, "ask with your endpoint's token")
		return
	}
	ans, err := m.Accesses(r.Context(), base, token, after)
	if err == errUnauthorized {
		httpapi.Unauthorized(w, err.Error())
		return
	}
	if tm := (*tooManyError)(nil); errors.As(err, &tm) {
		w.Header().Set("Retry-After", fmt.Sprint(int(tm.Wait.Seconds())+1))
		httpapi.Error(w, http.StatusTooManyRequests, tm.Error())
		return
	}
	if err != nil {
		httpapi.Fail(w, m.cfg.Logger, err, "listing the accesses failed")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httpapi.JSON(w, ans)
}
