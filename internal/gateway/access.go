package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/custody"
	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/principal"
	"github.com/vitrine-dev/vitrine/internal/seal"
	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/telemetry"
)

// Dataset is the resource dataset of the gateway's access records.
const Dataset = "telemetry"

// Record is a released record: the stored threat half with its personal
// half opened, and where it came from.
type Record struct {
	ID int64 `json:"id"`
	// Endpoint is the id of the endpoint that sent the record (personal).
	Endpoint string    `json:"endpoint,omitempty"`
	Country  string    `json:"country"`
	BatchID  string    `json:"batch_id"`
	Received time.Time `json:"received"`
	telemetry.Record
}

// Receipt says where the access record of an answer is.
type Receipt struct {
	Log   string `json:"log"`   // the access log's origin
	Index uint64 `json:"index"` // the entry's index in it
	// Proof is the path, relative to the region's base URL, of the
	// entry's tlog-proof.
	Proof string `json:"proof"`
}

// Answer is the answer of the read and delete routes.
type Answer struct {
	Region  string  `json:"region"`
	Action  string  `json:"action"`
	Receipt Receipt `json:"receipt"`
	// Count and Digest are the access record's: how many records the
	// access released or deleted, and the digest of their ids
	// (access.Digest).
	Count  int    `json:"count"`
	Digest string `json:"digest"`
	// More says whether the query selects more records; Next, passed as
	// the after parameter, asks for them.
	More bool  `json:"more"`
	Next int64 `json:"next,omitempty"`
	// Records are the released records (read).
	Records []Record `json:"records,omitempty"`
	// Deleted is how many records were deleted (delete).
	Deleted int64 `json:"deleted,omitempty"`
}

// Headers of an export, whose body is the records alone (NDJSON).
const (
	CountHeader  = "Vitrine-Access-Count"
	DigestHeader = "Vitrine-Access-Digest"
	NextHeader   = "Vitrine-Next"
)

// withheld stands for the pseudonyms of endpoints in the access records
// of requests not yet authenticated.
type withheld struct{}

func (withheld) Pseudonym(context.Context, string) (string, error) { return "withheld", nil }

// pseudonymFailed answers 503 and reports true if err is parseQuery's
// failure to have a pseudonym: nothing is logged or read without it, since
// the query would name the endpoint.
func (g *Gateway) pseudonymFailed(w http.ResponseWriter, r *http.Request, err error) bool {
	if pe := (*pseudonymError)(nil); errors.As(err, &pe) {
		g.unavailable(w, r, fmt.Errorf("%w: %v", errPseudonyms, pe))
		return true
	}
	return false
}

func (g *Gateway) serveAccess(w http.ResponseWriter, r *http.Request, act *action) {
	// Every way out that does not decide otherwise is a failure: no data
	// was released.
	decision, released := metrics.Failed, 0
	defer func() { g.metrics.Decided(act.metric, decision, released) }()
	rec := &access.Record{
		Time:     g.cfg.Now(),
		Region:   g.cfg.Region,
		Action:   act.name,
		Resource: access.Resource{Dataset: Dataset, Digest: access.Digest(nil)},
		Subjects: []string{},
		Request:  requestID(),
		Outcome:  "granted",
	}
	w.Header().Set("Vitrine-Request-Id", rec.Request)
	// A pseudonym kept in this process is had at once; one the
	// supervisor gives is asked for only once the request is
	// authenticated, so that nobody can make the gateway ask it at will:
	// until then the query names the endpoint as withheld.
	_, local := g.cfg.Pseudonyms.(endpoint.PseudonymKey)
	ps := g.cfg.Pseudonyms
	if !local {
		ps = withheld{}
	}
	q, query, qerr := parseQuery(r.Context(), r.URL.Query(), ps)
	if g.pseudonymFailed(w, r, qerr) {
		return
	}
	rec.Resource.Query = query

	p, err := g.cfg.Principals.Authenticate(r)
	if errors.Is(err, fault.ErrUnavailable) {
		// The registry could not be asked (a region's own process asks
		// the platform): nothing is known of the caller, so nothing is
		// denied or logged, and the caller retries.
		g.unavailable(w, r, fmt.Errorf("%w: %v", errPrincipals, err))
		decision = metrics.Failed
		return
	}
	if err == nil && !local {
		q, query, qerr = parseQuery(r.Context(), r.URL.Query(), g.cfg.Pseudonyms)
		if g.pseudonymFailed(w, r, qerr) {
			return
		}
		rec.Resource.Query = query
	}
	if err != nil {
		reason, msg := "bad credential", "this route needs a principal's bearer token (Authorization: Bearer vp1.…)"
		switch {
		case errors.Is(err, principal.ErrNoCredential):
			reason = "no credential"
		case errors.Is(err, principal.ErrExpired):
			reason, msg = "credential expired", "credential expired: the operator grants the principal a new one"
		}
		// Anyone can make these: beyond a small rate per source network
		// they are counted into denied summaries instead of each growing
		// the log (denied.go).
		individual, failing := g.denials.decide(rec.Time, countKey{act.name, reason, sourceNetwork(r.RemoteAddr)})
		if !individual {
			g.counted(w, r, reason, failing)
			decision = metrics.Counted
			return
		}
		decision = g.deny(w, r, rec, act, http.StatusUnauthorized, reason, msg)
		return
	}
	rec.Principal = access.Principal{ID: p.ID, Role: string(p.Role), Location: p.Location}
	if !slices.Contains(act.roles, p.Role) {
		decision = g.deny(w, r, rec, act, http.StatusForbidden, fmt.Sprintf("role %s may not %s records", p.Role, act.name), "")
		return
	}
	if !p.MayActIn(g.cfg.Region) {
		decision = g.deny(w, r, rec, act, http.StatusForbidden, fmt.Sprintf("principal may not act in region %s", g.cfg.Region), "")
		return
	}
	h := r.Header.Get(access.Header)
	if strings.TrimSpace(h) == "" {
		decision = g.deny(w, r, rec, act, http.StatusBadRequest, "no justification",
			fmt.Sprintf("a justification is required: send the header %q with a code from %s", access.Header+": <CODE>; <detail>", strings.Join(access.Codes, ", ")))
		return
	}
	j, err := access.ParseJustification(h)
	if err != nil {
		decision = g.deny(w, r, rec, act, http.StatusBadRequest, "bad justification", err.Error())
		return
	}
	rec.Justification = j
	if qerr != nil {
		decision = g.deny(w, r, rec, act, http.StatusBadRequest, "bad query", "bad query: "+qerr.Error())
		return
	}

	open := act.open && q.Personal
	if !g.logReady(w) {
		return
	}
	recs, more, err := g.cfg.Store.Records(r.Context(), q.RecordQuery)
	if err != nil {
		g.unavailable(w, r, fmt.Errorf("%w: %v", errStore, err))
		return
	}
	// The key id of each record's wrapped key, when the answer opens them:
	// computed once, a hash of about a kilobyte each.
	var kids []string
	if open {
		kids = keyIDs(recs)
	}
	if n := fit(rec, recs, kids); n < len(recs) {
		recs, more = recs[:n], true
	}
	ids, wrapped := describe(rec, recs, kids)
	entry, err := rec.Marshal()
	if err != nil {
		httpapi.Fail(w, g.logger, err, "the gateway could not build the access record; nothing was released")
		return
	}
	index, err := g.appendRecord(r.Context(), rec, entry)
	if err != nil {
		g.unavailable(w, r, fmt.Errorf("%w: %v", errLog, err))
		return
	}
	w.Header().Set(access.ReceiptHeader, g.receipt(index))
	ans := &Answer{Region: g.cfg.Region, Action: act.name, Receipt: g.receiptOf(index), Count: len(recs), Digest: rec.Resource.Digest, More: more}
	if more && len(recs) > 0 {
		ans.Next = recs[len(recs)-1].ID
	}

	if act == del {
		n, err := g.cfg.Store.DeleteRecords(r.Context(), ids)
		if err != nil {
			g.unavailable(w, r, fmt.Errorf("%w: deleting records of access entry %d: %v", errStore, index, err))
			return
		}
		ans.Deleted = n
		decision, released = metrics.Granted, int(n)
		httpapi.CompactJSON(w, ans)
		return
	}
	out, err := g.open(r.Context(), index, entry, recs, kids, wrapped)
	if err != nil {
		if errors.Is(err, seal.ErrOpen) {
			httpapi.Fail(w, g.logger, fmt.Errorf("opening the records of access entry %d: %w", index, err), "a stored record does not open under its data key (it was altered); nothing was released")
			return
		}
		g.unavailable(w, r, err)
		return
	}
	decision, released = metrics.Granted, len(out)
	if act == export {
		g.writeExport(w, ans, out)
		return
	}
	ans.Records = out
	httpapi.CompactJSON(w, ans)
}

func (g *Gateway) receiptOf(index uint64) Receipt {
	return Receipt{Log: g.cfg.Log.Origin(), Index: index, Proof: fmt.Sprintf("v1/access/%d/proof", index)}
}

// deny logs a denied attempt and answers status with msg (reason if msg
// is empty), and returns metrics.Denied. If the log cannot take the
// record the answer is 503 (no attempt goes unlogged), and the decision
// metrics.Failed.
func (g *Gateway) deny(w http.ResponseWriter, r *http.Request, rec *access.Record, act *action, status int, reason, msg string) metrics.Decision {
	rec.Action, rec.Outcome = "denied", "denied"
	rec.Reason = act.name + ": " + reason
	if msg == "" {
		msg = reason
	}
	entry, err := rec.Marshal()
	if err != nil {
		httpapi.Fail(w, g.logger, err, "the gateway could not build the access record of a denied attempt")
		return metrics.Failed
	}
	index, err := g.appendRecord(r.Context(), rec, entry)
	if err != nil {
		g.unavailable(w, r, fmt.Errorf("%w (denied attempt: %s): %v", errLog, reason, err))
		return metrics.Failed
	}
	w.Header().Set(access.ReceiptHeader, g.receipt(index))
	if status == http.StatusUnauthorized {
		httpapi.Unauthorized(w, msg)
		return metrics.Denied
	}
	httpapi.Error(w, status, msg)
	return metrics.Denied
}

// Room kept in an access record for what fit does not count exactly.
const slack = 64

// fit returns how many of recs, from the first, one access record can
// cover: their distinct subjects and data keys (kids, when the answer
// opens them) must fit in
// access.MaxSize, and the keys in one custody request.
func fit(rec *access.Record, recs []store.StoredRecord, kids []string) int {
	base, err := rec.Marshal()
	if err != nil {
		return len(recs) // Marshal fails again later, with the reason
	}
	size := len(base) + len(`,"keys":[]`) + slack
	subjects, keys := map[string]bool{}, map[string]bool{}
	for i := range recs {
		sr := &recs[i]
		if s := sr.Pseudonym; !subjects[s] {
			subjects[s] = true
			size += len(s) + 3 // quotes and comma
		}
		if kids != nil && kids[i] != "" {
			if k := kids[i]; !keys[k] {
				keys[k] = true
				size += len(k) + 3
				if len(keys) > custody.MaxKeys {
					return i
				}
			}
		}
		// The record's id goes into the digest, of fixed size.
		if size > access.MaxSize {
			return i
		}
	}
	return len(recs)
}

// describe fills rec's count, digest, subjects and (with kids) keys from
// recs, and returns the records' ids and the wrapped keys by id.
func describe(rec *access.Record, recs []store.StoredRecord, kids []string) ([]int64, map[string][]byte) {
	ids := make([]int64, len(recs))
	subjects := map[string]bool{}
	wrapped := map[string][]byte{}
	for i := range recs {
		sr := &recs[i]
		ids[i] = sr.ID
		if !subjects[sr.Pseudonym] {
			subjects[sr.Pseudonym] = true
			rec.Subjects = append(rec.Subjects, sr.Pseudonym)
		}
		if kids != nil && kids[i] != "" {
			if k := kids[i]; wrapped[k] == nil {
				wrapped[k] = sr.WrappedKey
				rec.Keys = append(rec.Keys, k)
			}
		}
	}
	rec.Resource.Count = int64(len(recs))
	rec.Resource.Digest = access.Digest(ids)
	return ids, wrapped
}

// open proves the access entry at index in a witnessed checkpoint, has
// custody unwrap the data keys it names, and opens the records' personal
// halves.
func (g *Gateway) open(ctx context.Context, index uint64, entry []byte, recs []store.StoredRecord, kids []string, wrapped map[string][]byte) ([]Record, error) {
	out := make([]Record, len(recs))
	for i := range recs {
		sr := &recs[i]
		out[i] = Record{ID: sr.ID, Country: sr.Country, BatchID: sr.BatchID, Received: sr.Received, Record: sr.Record}
	}
	if len(wrapped) == 0 {
		return out, nil
	}
	wctx, cancel := context.WithTimeout(ctx, g.cfg.WitnessTimeout)
	proof, err := g.cfg.Log.Prove(wctx, index)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("%w: entry %d: %v", errWitness, index, err)
	}
	ids := make([]string, 0, len(wrapped))
	req := &custody.UnwrapRequest{Region: g.cfg.Region, Entry: entry, Proof: proof.Marshal()}
	for id, w := range wrapped {
		ids = append(ids, id)
		req.Keys = append(req.Keys, w)
	}
	resp, err := g.cfg.Custody.Unwrap(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("%w: entry %d: %v", errCustody, index, err)
	}
	if len(resp.Keys) != len(ids) {
		return nil, fmt.Errorf("%w: entry %d: %d keys for %d asked", errCustody, index, len(resp.Keys), len(ids))
	}
	keys := make(map[string][]byte, len(ids))
	for i, id := range ids {
		keys[id] = resp.Keys[i]
	}
	defer func() {
		for _, k := range resp.Keys {
			clear(k)
		}
	}()
	for i := range recs {
		sr := &recs[i]
		if len(sr.WrappedKey) == 0 {
			continue // stored before sealing; its personal half is not released here
		}
		id := kids[i]
		// The sealed half is bound to the key id it was sealed under,
		// which a relocation's rewrap does not change.
		bound := sr.KeyID
		if bound == "" {
			bound = id
		}
		p, err := seal.Open(keys[id], seal.Binding{KeyID: bound, SHA256: sr.Record.SHA256, Time: sr.Record.Time}, sr.Sealed)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", sr.ID, err)
		}
		out[i].Endpoint, out[i].URL, out[i].Path = p.EndpointID, p.URL, p.Path
	}
	return out, nil
}

// writeExport answers an export: the records as NDJSON, the access
// record's count and digest and the next page in headers.
func (g *Gateway) writeExport(w http.ResponseWriter, ans *Answer, recs []Record) {
	h := w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s-%d.ndjson"`, Dataset, g.cfg.Region, ans.Receipt.Index))
	h.Set(CountHeader, strconv.Itoa(ans.Count))
	h.Set(DigestHeader, ans.Digest)
	if ans.More {
		h.Set(NextHeader, strconv.FormatInt(ans.Next, 10))
	}
	enc := json.NewEncoder(w)
	for i := range recs {
		if err := enc.Encode(&recs[i]); err != nil {
			return
		}
	}
}

// keyIDs returns the key id of each record's wrapped key ("" for a record
// stored before sealing, which has none).
func keyIDs(recs []store.StoredRecord) []string {
	ids := make([]string, len(recs))
	for i := range recs {
		if w := recs[i].WrappedKey; len(w) > 0 {
			if i > 0 && bytes.Equal(w, recs[i-1].WrappedKey) {
				ids[i] = ids[i-1] // records of one batch come together
				continue
			}
			ids[i] = seal.KeyID(w)
		}
	}
	return ids
}
