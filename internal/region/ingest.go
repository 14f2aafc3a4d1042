package region

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/seal"
	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/telemetry"
)

// IngestAnswer is the answer to an accepted batch.
type IngestAnswer struct {
	BatchID string `json:"batch_id"`
	Records int    `json:"records"`
	// Duplicate is true when the batch had been stored before; nothing
	// was stored again.
	Duplicate bool `json:"duplicate"`
}

// authEndpoint checks the request's endpoint token and that this region is
// the endpoint's home under the active policy. When either fails it
// answers the request and returns false with the reason (for metrics).
func (r *Region) authEndpoint(w http.ResponseWriter, req *http.Request) (endpoint.Identity, metrics.Reject, bool) {
	tok, ok := bearer(req)
	if !ok {
		httpapi.Unauthorized(w, "this route needs an endpoint token (Authorization: Bearer <token>)")
		return endpoint.Identity{}, metrics.RejectUnauthenticated, false
	}
	id, err := r.cfg.Tokens.Verify(tok)
	if err != nil {
		httpapi.Unauthorized(w, "the endpoint token is not valid")
		return endpoint.Identity{}, metrics.RejectUnauthenticated, false
	}
	if !r.isHome(w, id) {
		return endpoint.Identity{}, metrics.RejectMisdirected, false
	}
	return id, 0, true
}

// isHome checks that this region is the home of the endpoint's country
// under the active policy. It answers the request and returns false when
// it is not. The policy decides, not the region the token was issued for:
// a relocation moves a country's endpoints without new tokens.
func (r *Region) isHome(w http.ResponseWriter, id endpoint.Identity) bool {
	home, err := r.cfg.Policy().RegionFor(id.Country)
	if err != nil {
		httpapi.Error(w, http.StatusForbidden, "the endpoint's country is not served: "+err.Error())
		return false
	}
	if home != r.cfg.Name {
		httpapi.Error(w, http.StatusMisdirectedRequest, fmt.Sprintf("region %s does not serve endpoints of %s; their home region is %s", r.cfg.Name, id.Country, home))
		return false
	}
	return true
}

func bearer(req *http.Request) (string, bool) {
	h := req.Header.Get("Authorization")
	const p = "Bearer "
	if len(h) <= len(p) || !strings.EqualFold(h[:len(p)], p) {
		return "", false
	}
	return strings.TrimSpace(h[len(p):]), true
}

func (r *Region) serveIngest(w http.ResponseWriter, req *http.Request) {
	id, why, ok := r.authEndpoint(w, req)
	if !ok {
		r.metrics.Rejected(why)
		return
	}
	body, release, ok := r.cfg.Bodies.Read(w, req, id.ID, telemetry.MaxBatchBytes)
	if !ok {
		r.metrics.Rejected(metrics.RejectBody)
		return
	}
	// The batch's strings share the parser's copy of the body, the size of
	// the body itself: the reservation covers them until the store has
	// answered (stores copy what they keep).
	defer release()
	batch, err := telemetry.ParseBatch(body)
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, telemetry.ErrTooLarge) {
			status = http.StatusRequestEntityTooLarge
		}
		r.metrics.Rejected(metrics.RejectMalformed)
		httpapi.Error(w, status, "bad batch: "+err.Error()+"; nothing was stored")
		return
	}
	// The personal fields are sealed here, before the store sees them,
	// under a data key wrapped to the region's custody key.
	wrapped, sealed, err := seal.Records(r.cfg.Wrapper, id.ID, batch.Records)
	if err != nil {
		r.metrics.Rejected(metrics.RejectUnavailable)
		httpapi.Fail(w, r.logger, err, "the region could not seal the batch; nothing was stored")
		return
	}
	pseudonym, err := r.cfg.Pseudonyms.Pseudonym(req.Context(), id.ID)
	if err != nil {
		// Whatever kept it, the pseudonym is a dependency out of reach:
		// the endpoint retries later.
		r.metrics.Rejected(metrics.RejectUnavailable)
		httpapi.Fail(w, r.logger, fault.Mark(fault.ErrUnavailable, err), "the endpoint's pseudonym could not be had; nothing was stored")
		return
	}
	// The residency check again, now under the gate: a policy switch
	// waits for this batch, or this batch sees the new policy.
	r.gate.RLock()
	defer r.gate.RUnlock()
	if !r.isHome(w, id) {
		r.metrics.Rejected(metrics.RejectMisdirected)
		return
	}
	stored, err := r.cfg.Store.PutBatch(req.Context(), &store.Batch{
		Pseudonym: pseudonym,
		Country:   id.Country,
		BatchID:   batch.BatchID,
		Received:  r.cfg.Now().UTC(),
		Records:   batch.Records,
		Sealed:    store.Sealed{WrappedKey: wrapped, Records: sealed},
	})
	if err != nil {
		r.metrics.Rejected(metrics.RejectUnavailable)
		if errors.Is(err, req.Context().Err()) {
			return
		}
		if fault.Kind(err) != nil { // one of no kind is Fail's incident, logged there
			r.logger.ErrorContext(req.Context(), "storing batch", "err", err)
		}
		httpapi.Fail(w, r.logger, err, "the region could not store the batch; nothing was stored, retry it")
		return
	}
	r.ingests.Add(1)
	r.metrics.Ingested(len(batch.Records), !stored)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(IngestAnswer{BatchID: batch.BatchID, Records: len(batch.Records), Duplicate: !stored})
}
