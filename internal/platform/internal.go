package platform

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/internal/logserver"
	"github.com/vitrine-dev/vitrine/internal/principal"
	"github.com/vitrine-dev/vitrine/internal/pseudonyms"
	"github.com/vitrine-dev/vitrine/internal/region"
	"github.com/vitrine-dev/vitrine/residency"
)

// The internal routes serve the processes of a region's service that run
// on their own (`vitrine serve --role region:<name>`, regionsvc.go): what
// the platform's process holds and they need. Each takes the region's
// internal token; the policy and the revocations also take the front
// door's token (<data>/front.token, frontdoor.go).
//
//	POST /internal/v1/logs/access-{region}/append  an entry, admitted like the gateway's → {"index":N}
//	GET  /internal/v1/logs/access-{region}/prove?index=N  its C2SP tlog-proof, once witnessed
//	POST /internal/v1/principals/authenticate  {"token":"vp1.…"} → the principal
//	GET  /internal/v1/endpoints/revoked        the endpoint revocations
//	POST /internal/v1/pseudonyms               pseudonyms.Request → pseudonyms.Answer
//	GET  /internal/v1/policy                   the active residency policy, signed
const internalPrefix = "/internal/v1/"

func (p *Platform) internalRoutes(mux *http.ServeMux) {
	peer := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			region, ok := p.internalCaller(r)
			if !ok {
				httpapi.Unauthorized(w, "internal routes need a region's internal token (the platform's <data>/internal/<region>.token)")
				return
			}
			w.Header().Set("Cache-Control", "no-store")
			h(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, region)))
		}
	}
	mux.HandleFunc("POST "+internalPrefix+"logs/{log}/append", peer(p.serveInternalAppend))
	mux.HandleFunc("GET "+internalPrefix+"logs/{log}/prove", peer(p.serveInternalProve))
	mux.HandleFunc("POST "+internalPrefix+"principals/authenticate", peer(p.serveInternalAuthenticate))
	// The policy and the revocations are read by the front door's
	// processes too, with a token of their own that reaches nothing else.
	peerOrFront := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if keys.BearerEqual(r, p.regions.frontToken) {
				w.Header().Set("Cache-Control", "no-store")
				h(w, r)
				return
			}
			peer(h)(w, r)
		}
	}
	mux.HandleFunc("GET "+internalPrefix+"endpoints/revoked", peerOrFront(p.serveInternalRevoked))
	mux.HandleFunc("POST "+internalPrefix+"pseudonyms", peer(p.serveInternalPseudonyms))
	mux.HandleFunc("GET "+internalPrefix+"policy", peerOrFront(p.serveInternalPolicy))
}

// callerKey is the context key of the region whose internal token a
// request carried.
type callerKey struct{}

// internalCaller returns the region whose internal token r carries.
func (p *Platform) internalCaller(r *http.Request) (string, bool) {
	found := ""
	for region, tok := range p.regions.internalTokens {
		// Every token is compared, in constant time each.
		if keys.BearerEqual(r, tok) {
			found = region
		}
	}
	return found, found != ""
}

// accessLog returns the access log the path's {log} names, or answers 404
// (no such log) or 403 (another region's log than the caller's).
func (p *Platform) accessLog(w http.ResponseWriter, r *http.Request) (admittedLog, bool) {
	name := r.PathValue("log")
	l := p.logs[name]
	if !strings.HasPrefix(name, "access-") || l == nil {
		httpapi.Error(w, http.StatusNotFound, "no access log "+strconv.Quote(name[:min(len(name), 64)]))
		return admittedLog{}, false
	}
	if caller, _ := r.Context().Value(callerKey{}).(string); name != "access-"+caller {
		httpapi.Error(w, http.StatusForbidden, "region "+caller+"'s token reaches access-"+caller+" only")
		return admittedLog{}, false
	}
	return admittedLog{l, p.principals}, true
}

func (p *Platform) serveInternalAppend(w http.ResponseWriter, r *http.Request) {
	l, ok := p.accessLog(w, r)
	if !ok {
		return
	}
	entry, ok := httpapi.ReadLimited(w, r, logserver.MaxEntrySize)
	if !ok {
		return
	}
	if len(entry) == 0 {
		httpapi.Error(w, http.StatusBadRequest, "empty entry")
		return
	}
	index, err := p.appendFromRegion(r, l, entry)
	var refused *refusedEntry
	switch {
	case errors.As(err, &refused):
		httpapi.Error(w, refused.status, refused.msg)
		return
	case errors.Is(err, principal.ErrBadCredential):
		// The registry refused a granted record: the caller's
		// principal was revoked or has expired meanwhile.
		httpapi.Error(w, http.StatusForbidden, err.Error())
		return
	case err != nil:
		httpapi.Fail(w, p.logger, fault.Mark(fault.ErrUnavailable, err), "appending to "+l.Origin())
		return
	}
	httpapi.JSON(w, struct {
		Index uint64 `json:"index"`
	}{index})
}

// appendFromRegion appends entry, from a process of the log's region, to
// l. Such a process appends what the platform's own regions append to
// theirs (regions.go): its gateway's records, admitted against the
// registry of principals as the platform's own gateways' are; its
// commitments; and the records of its aggregates crossing to a peer
// region, granted to the peer's processing principal, which holds no
// credential to check and is appended as it is.
//
// Only those: an entry must parse as one of them and name the log's
// region, or it is refused (*refusedEntry) and not appended. Grants are
// the registry's own entries, and relocation records the platform's; a
// crossing names no subject and lists no data key, so that a record
// taken without admission can unwrap nothing at custody.
func (p *Platform) appendFromRegion(r *http.Request, l admittedLog, entry []byte) (uint64, error) {
	name := strings.TrimPrefix(r.PathValue("log"), "access-")
	switch access.EntryKind(entry) {
	case access.KindAccess:
		rec, err := access.Parse(entry)
		switch {
		case err != nil:
			return 0, &refusedEntry{http.StatusBadRequest, "not an access record: " + err.Error()}
		case rec.Region != name:
			return 0, &refusedEntry{http.StatusForbidden, "the record is of region " + strconv.Quote(rec.Region) + ", not " + strconv.Quote(name)}
		case rec.Action == "relocate" || rec.Justification.Code == "RELOCATION":
			return 0, &refusedEntry{http.StatusForbidden, "relocation records are the platform's own"}
		}
		if peer, ok := region.CrossingPeer(rec); ok && peer != name && len(rec.Keys) == 0 && len(rec.Subjects) == 0 &&
			rec.Resource.Digest == access.Digest(nil) && p.regions.policy.Load().Region(peer) != nil {
			return l.appendLog.Append(r.Context(), entry)
		}
		return l.AppendRecord(r.Context(), rec, entry)
	case access.KindCommitment:
		c, err := access.ParseCommitment(entry)
		switch {
		case err != nil:
			return 0, &refusedEntry{http.StatusBadRequest, "not a commitment: " + err.Error()}
		case c.Region != name:
			return 0, &refusedEntry{http.StatusForbidden, "the commitment is of region " + strconv.Quote(c.Region) + ", not " + strconv.Quote(name)}
		}
	case access.KindDeniedSummary:
		d, err := access.ParseDeniedSummary(entry)
		switch {
		case err != nil:
			return 0, &refusedEntry{http.StatusBadRequest, "not a denied summary: " + err.Error()}
		case d.Region != name:
			return 0, &refusedEntry{http.StatusForbidden, "the summary is of region " + strconv.Quote(d.Region) + ", not " + strconv.Quote(name)}
		}
	case access.KindGrant:
		return 0, &refusedEntry{http.StatusForbidden, "grants are appended by the platform's registry of principals only"}
	default:
		return 0, &refusedEntry{http.StatusBadRequest, "not an access record, a commitment or a denied summary"}
	}
	return l.appendLog.Append(r.Context(), entry)
}

// refusedEntry is an entry a region's process may not append, with the
// status that answers it.
type refusedEntry struct {
	status int
	msg    string
}

func (e *refusedEntry) Error() string { return e.msg }

func (p *Platform) serveInternalProve(w http.ResponseWriter, r *http.Request) {
	l, ok := p.accessLog(w, r)
	if !ok {
		return
	}
	index, err := strconv.ParseUint(r.URL.Query().Get("index"), 10, 63)
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, "bad index: want ?index=N")
		return
	}
	proof, err := l.Prove(r.Context(), index)
	if err != nil {
		httpapi.Fail(w, p.logger, fault.Mark(fault.ErrUnavailable, err), "proving an entry of "+l.Origin())
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(proof.Marshal())
}

// maxInternalBody bounds the JSON bodies of the internal routes.
const maxInternalBody = 64 << 10

func (p *Platform) serveInternalAuthenticate(w http.ResponseWriter, r *http.Request) {
	b, ok := httpapi.ReadLimited(w, r, maxInternalBody)
	if !ok {
		return
	}
	var req struct {
		Token string `json:"token"`
	}
	if err := httpapi.DecodeStrict(b, &req); err != nil {
		httpapi.Error(w, http.StatusBadRequest, `bad request: want {"token":"vp1.…"}`)
		return
	}
	// The registry reads the token as the gateway got it.
	ar, err := http.NewRequestWithContext(r.Context(), http.MethodGet, "/", nil)
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, "bad request")
		return
	}
	ar.Header.Set("Authorization", "Bearer "+req.Token)
	pr, err := p.principals.Authenticate(ar)
	if err != nil {
		reason := "bad credential"
		if errors.Is(err, principal.ErrExpired) {
			reason = "expired"
		}
		httpapi.Error(w, http.StatusUnauthorized, reason)
		return
	}
	httpapi.JSON(w, pr)
}

func (p *Platform) serveInternalRevoked(w http.ResponseWriter, r *http.Request) {
	b, err := p.regions.revoked.MarshalJSON()
	if err != nil {
		httpapi.Fail(w, p.logger, err, "reading the endpoint revocations")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func (p *Platform) serveInternalPseudonyms(w http.ResponseWriter, r *http.Request) {
	b, ok := httpapi.ReadLimited(w, r, maxInternalBody)
	if !ok {
		return
	}
	var req pseudonyms.Request
	if err := httpapi.DecodeStrict(b, &req); err != nil {
		httpapi.Error(w, http.StatusBadRequest, "bad request: "+err.Error())
		return
	}
	if len(req.IDs) == 0 || len(req.IDs) > pseudonyms.Max {
		httpapi.Error(w, http.StatusBadRequest, "bad request: ask for 1 to "+strconv.Itoa(pseudonyms.Max)+" ids")
		return
	}
	ans := pseudonyms.Answer{Pseudonyms: make([]string, len(req.IDs))}
	for i, id := range req.IDs {
		if !endpoint.ValidID(id) {
			httpapi.Error(w, http.StatusBadRequest, "bad request: ids["+strconv.Itoa(i)+"] is not an endpoint id")
			return
		}
		ps, err := p.regions.pseudonyms.Pseudonym(r.Context(), id)
		if err != nil {
			httpapi.Fail(w, p.logger, fault.Mark(fault.ErrUnavailable, err), "giving pseudonyms")
			return
		}
		ans.Pseudonyms[i] = ps
	}
	httpapi.JSON(w, ans)
}

func (p *Platform) serveInternalPolicy(w http.ResponseWriter, r *http.Request) {
	signed, err := residency.Sign(p.regions.policy.Load(), p.regions.policyKey)
	if err != nil {
		httpapi.Fail(w, p.logger, err, "signing the active policy")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(signed)
}
