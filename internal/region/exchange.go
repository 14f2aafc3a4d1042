package region

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/access"
	vclient "github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/backoff"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/internal/logserver"
	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/residency"
)

// AggregatesPage is the answer to GET /v1/aggregates: the region's
// aggregates changed after the cursor asked for. It holds no personal data.
type AggregatesPage struct {
	Region     string            `json:"region"`
	Aggregates []store.Aggregate `json:"aggregates"`
	Cursor     int64             `json:"cursor"`
}

const maxPage = 5000

// PeerHeader names the region that pulls aggregates.
const PeerHeader = "Vitrine-Peer"

// crossingPrincipal prefixes the id of the processing principal under
// which aggregates cross to a peer region: "processor:region-<peer>".
const crossingPrincipal = "processor:region-"

// CrossingPeer returns the peer region to which rec, an access record,
// says aggregates crossed, if it is the record of such a crossing as
// logCrossing makes it: granted to the peer's processing principal, which
// holds no credential (the registry of principals does not know it).
func CrossingPeer(rec *access.Record) (string, bool) {
	peer, ok := strings.CutPrefix(rec.Principal.ID, crossingPrincipal)
	if !ok || rec.Principal.Role != "processor" || rec.Action != "process" || rec.Outcome != "granted" ||
		rec.Resource.Dataset != "aggregates" || !residency.ValidRegionName(peer) {
		return "", false
	}
	return peer, true
}

// logCrossing appends the access record of a page of aggregates crossing
// to peer: a process access by the peer's processing principal, with the
// range of changes it released. Aggregates carry no record ids and no
// data subjects, so its digest is that of no ids and it names no subject.
func (r *Region) logCrossing(ctx context.Context, peer string, from, to int64, n int) error {
	rec := &access.Record{
		Time:          r.cfg.Now(),
		Region:        r.cfg.Name,
		Principal:     access.Principal{ID: crossingPrincipal + peer, Role: "processor", Location: r.cfg.Location},
		Action:        "process",
		Resource:      access.Resource{Dataset: "aggregates", Query: fmt.Sprintf("changes=%d-%d to=%s", from+1, to, peer), Count: int64(n), Digest: access.Digest(nil)},
		Justification: access.Justification{Code: "AUTOMATED_PROCESSING", Detail: "aggregates for the verdicts of region " + peer},
		Subjects:      []string{},
		Request:       fmt.Sprintf("aggregates-%s-%d-%d", peer, from, to),
		Outcome:       "granted",
	}
	entry, err := rec.Marshal()
	if err != nil {
		return err
	}
	_, err = r.cfg.AccessLog.Append(ctx, entry)
	return err
}

func (r *Region) serveAggregates(w http.ResponseWriter, req *http.Request) {
	if !keys.BearerEqual(req, r.cfg.PeerToken) {
		httpapi.Unauthorized(w, "aggregates are for peer regions (peer token)")
		return
	}
	cursor, err := strconv.ParseInt(req.URL.Query().Get("cursor"), 10, 64)
	if err != nil || cursor < 0 {
		httpapi.Error(w, http.StatusBadRequest, "cursor must be a non-negative decimal")
		return
	}
	peer := req.Header.Get(PeerHeader)
	if !residency.ValidRegionName(peer) {
		httpapi.Error(w, http.StatusBadRequest, "the "+PeerHeader+" header must name the pulling region")
		return
	}
	// Aggregates cross only through a logged access: when the access log
	// cannot take the record, say so before reading a page for nothing
	// (its store logged once that it broke, and recovers by itself).
	if err := r.accessLogReady(); err != nil {
		httpapi.Fail(w, r.logger, err, "the access log cannot take the crossing now (its storage is recovering); nothing was released, retry after the Retry-After")
		return
	}
	aggs, next, err := r.cfg.Store.ChangedAggregates(req.Context(), cursor, maxPage)
	if err != nil {
		if fault.Kind(err) != nil { // one of no kind is Fail's incident, logged there
			r.logger.ErrorContext(req.Context(), "reading aggregates", "err", err)
		}
		httpapi.Fail(w, r.logger, err, "aggregates are unavailable")
		return
	}
	if aggs == nil {
		aggs = []store.Aggregate{}
	}
	// Aggregates cross to another region only through a logged access.
	if len(aggs) > 0 && r.cfg.AccessLog != nil {
		if err := r.logCrossing(req.Context(), peer, cursor, next, len(aggs)); err != nil {
			if fault.Kind(err) != nil { // one of no kind is Fail's incident, logged there
				r.logger.ErrorContext(req.Context(), "logging aggregates crossing", "err", err)
			}
			httpapi.Fail(w, r.logger, err, "the access log could not take the crossing; nothing was released")
			return
		}
	}
	// Compact, unlike the answers meant for people: pages are large and
	// frequent.
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(AggregatesPage{Region: r.cfg.Name, Aggregates: aggs, Cursor: next})
}

// pull fetches a peer's aggregates changed after cursor, page by page,
// stores them as that region's remote aggregates and returns the new
// cursor.
func (r *Region) pull(ctx context.Context, name, base string, cursor int64) (int64, error) {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/aggregates?cursor="+strconv.FormatInt(cursor, 10), nil)
		if err != nil {
			return cursor, err
		}
		req.Header.Set("Authorization", "Bearer "+r.cfg.PeerToken)
		req.Header.Set(PeerHeader, r.cfg.Name)
		resp, err := r.cfg.PeerClient.Do(req)
		if err != nil {
			return cursor, err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if err != nil {
			return cursor, err
		}
		if resp.StatusCode != http.StatusOK {
			return cursor, vclient.NewStatusError(resp, body)
		}
		var page AggregatesPage
		if err := json.Unmarshal(body, &page); err != nil {
			return cursor, fmt.Errorf("parsing aggregates page: %w", err)
		}
		if page.Region != name {
			return cursor, fmt.Errorf("peer at %s says it is region %q, not %q", base, page.Region, name)
		}
		if page.Cursor < cursor {
			return cursor, errors.New("peer's cursor went backwards")
		}
		if len(page.Aggregates) > 0 || page.Cursor != cursor {
			if err := r.cfg.Store.PutRemote(ctx, name, page.Aggregates, page.Cursor); err != nil {
				return cursor, err
			}
		}
		cursor = page.Cursor
		if len(page.Aggregates) < maxPage {
			return cursor, nil
		}
	}
}

// accessLogReady returns the access log's reason not to take a record now,
// if it can tell (a *logserver.Log can), before the work it must log.
func (r *Region) accessLogReady() error { return logserver.ReadyOf(r.cfg.AccessLog) }

// exchangeBackoff spaces the pulls from a peer that fails: 1s doubling to
// 30s with jitter, never sooner than its Retry-After.
var exchangeBackoff = backoff.Policy{Min: time.Second, Max: 30 * time.Second}

// exchange pulls every peer's changed aggregates each ExchangeInterval,
// from cursors on, until ctx ends. A peer whose pull fails is not asked
// again before exchangeBackoff and its Retry-After allow (by Config.Now);
// a success resets that. A failing peer is logged when it starts failing
// or fails differently, and when it answers again.
func (r *Region) exchange(ctx context.Context, cursors map[string]int64) {
	type peer struct {
		failed  backoff.State
		next    time.Time
		lastErr string
	}
	peers := map[string]*peer{}
	t := time.NewTicker(r.cfg.ExchangeInterval)
	defer t.Stop()
	for {
		for name, base := range r.cfg.Peers {
			p := peers[name]
			if p == nil {
				p = &peer{}
				peers[name] = p
			}
			if r.cfg.Now().Before(p.next) {
				continue
			}
			c, err := r.pull(ctx, name, base, cursors[name])
			if ctx.Err() != nil {
				return
			}
			// Pages stored before a failure count: c is where the
			// store's copy ends.
			cursors[name] = c
			failures := p.failed.Failures
			wait := p.failed.Next(exchangeBackoff, err, rand.Float64())
			p.next = r.cfg.Now().Add(wait)
			switch {
			case err != nil && err.Error() != p.lastErr:
				r.logger.WarnContext(ctx, "pulling aggregates", "peer", name, "err", err, "failures", p.failed.Failures, "retry_in", wait)
				p.lastErr = err.Error()
			case err == nil && failures > 0:
				r.logger.InfoContext(ctx, "pulling aggregates again", "peer", name, "after_failures", failures)
				p.lastErr = ""
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
