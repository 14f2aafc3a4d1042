package monitor

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
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

const subjectsSchema = `
CREATE TABLE IF NOT EXISTS subjects (
	id INTEGER PRIMARY KEY,
	platform TEXT NOT NULL,
	log TEXT NOT NULL,
	pseudonym TEXT NOT NULL,
	idx INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS subjects_entry ON subjects (platform, log, idx, pseudonym);
CREATE INDEX IF NOT EXISTS subjects_pseudonym ON subjects (platform, pseudonym, id);`

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
	// Next is the after= of the next page; absent on the last one.
	Next int64 `json:"next,omitempty"`
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
func (m *Monitor) Accesses(ctx context.Context, base, token string, after int64) (*AccessesAnswer, error) {
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
	ans := &AccessesAnswer{Platform: base, Endpoint: id.ID, Pseudonym: endpoint.Pseudonym(key, id.ID), Accesses: []Access{}}
	rows, err := m.store.db.QueryContext(ctx, `SELECT id, log, idx FROM subjects WHERE platform = ? AND pseudonym = ? AND id > ? ORDER BY id LIMIT ?`,
		base, ans.Pseudonym, after, AccessesPage)
	if err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, err)
	}
	type hit struct {
		id  int64
		log string
		idx int64
	}
	var hits []hit
	for rows.Next() {
		var h hit
		if err := rows.Scan(&h.id, &h.log, &h.idx); err != nil {
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
		ans.Next = hits[len(hits)-1].id
	}
	return ans, nil
}

var errUnauthorized = fault.New(fault.ErrInvalid, "not a valid endpoint token of this platform")

// serveAccesses is GET /v1/accesses?platform=URL&after=N, with the
// endpoint's own token.
func (m *Monitor) serveAccesses(w http.ResponseWriter, r *http.Request) {
	base := strings.TrimRight(r.URL.Query().Get("platform"), "/")
	if base == "" && len(m.cfg.Platforms) == 1 {
		base = m.cfg.Platforms[0]
	}
	var after int64
	if s := r.URL.Query().Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			httpapi.Error(w, http.StatusBadRequest, "after must be a non-negative decimal")
			return
		}
		after = n
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		httpapi.Unauthorized(w, "ask with your endpoint's token")
		return
	}
	ans, err := m.Accesses(r.Context(), base, strings.TrimSpace(token), after)
	if err == errUnauthorized {
		httpapi.Unauthorized(w, err.Error())
		return
	}
	if err != nil {
		httpapi.Fail(w, m.cfg.Logger, err, "listing the accesses failed")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httpapi.JSON(w, ans)
}
