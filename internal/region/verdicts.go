package region

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/reputation"
)

// MaxVerdictBatch is the most hashes one batched lookup may ask for.
const MaxVerdictBatch = 1000

// VerdictsRequest is the body of POST /v1/verdicts.
type VerdictsRequest struct {
	SHA256 []string `json:"sha256"`
}

// VerdictsAnswer is its answer, in the order asked.
type VerdictsAnswer struct {
	Verdicts []reputation.Answer `json:"verdicts"`
}

func validHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (r *Region) serveVerdict(w http.ResponseWriter, req *http.Request) {
	if _, _, ok := r.authEndpoint(w, req); !ok {
		r.metrics.Verdicts(metrics.VerdictRejected, 0)
		return
	}
	h := req.PathValue("sha256")
	if !validHash(h) {
		r.metrics.Verdicts(metrics.VerdictRejected, 0)
		httpapi.Error(w, http.StatusBadRequest, "the hash must be 64 lowercase hex digits (SHA-256)")
		return
	}
	answers, err := r.verdicts(req, []string{h})
	if err != nil {
		r.verdictsFailed(w, req, err)
		return
	}
	r.metrics.Verdicts(metrics.VerdictAnswered, 1)
	httpapi.JSON(w, answers[0])
}

// verdictsFailed answers a request whose verdicts the store could not
// decide.
func (r *Region) verdictsFailed(w http.ResponseWriter, req *http.Request, err error) {
	r.metrics.Verdicts(metrics.VerdictUnavailable, 0)
	if fault.Kind(err) != nil { // one of no kind is Fail's incident, logged there
		r.logger.ErrorContext(req.Context(), "deciding verdicts", "err", err)
	}
	httpapi.Fail(w, r.logger, err, "verdicts are unavailable; retry shortly")
}

func (r *Region) serveVerdicts(w http.ResponseWriter, req *http.Request) {
	id, _, ok := r.authEndpoint(w, req)
	if !ok {
		r.metrics.Verdicts(metrics.VerdictRejected, 0)
		return
	}
	body, release, ok := r.cfg.Bodies.Read(w, req, id.ID, 128<<10)
	if !ok {
		r.metrics.Verdicts(metrics.VerdictRejected, 0)
		return
	}
	var q VerdictsRequest
	err := httpapi.DecodeStrict(body, &q)
	release() // the decoded hashes are copies
	if err != nil {
		r.metrics.Verdicts(metrics.VerdictRejected, 0)
		httpapi.Error(w, http.StatusBadRequest, "bad request: "+err.Error()+`; want {"sha256":["<hex>",…]}`)
		return
	}
	if len(q.SHA256) == 0 || len(q.SHA256) > MaxVerdictBatch {
		r.metrics.Verdicts(metrics.VerdictRejected, 0)
		httpapi.Error(w, http.StatusBadRequest, fmt.Sprintf("ask for 1 to %d hashes, not %d", MaxVerdictBatch, len(q.SHA256)))
		return
	}
	for i, h := range q.SHA256 {
		if !validHash(h) {
			r.metrics.Verdicts(metrics.VerdictRejected, 0)
			httpapi.Error(w, http.StatusBadRequest, fmt.Sprintf("sha256[%d]: must be 64 lowercase hex digits", i))
			return
		}
	}
	answers, err := r.verdicts(req, q.SHA256)
	if err != nil {
		r.verdictsFailed(w, req, err)
		return
	}
	r.metrics.Verdicts(metrics.VerdictAnswered, len(answers))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(VerdictsAnswer{Verdicts: answers})
}

// verdicts decides the verdicts of hashes from the global view.
func (r *Region) verdicts(req *http.Request, hashes []string) ([]reputation.Answer, error) {
	global, err := r.cfg.Store.Global(req.Context(), hashes)
	if err != nil {
		return nil, err
	}
	now := r.cfg.Now()
	out := make([]reputation.Answer, len(hashes))
	for i, h := range hashes {
		a, known := global[h]
		out[i] = reputation.NewAnswer(toReputation(h, a), known, now)
	}
	return out, nil
}

func toReputation(h string, a store.Aggregate) reputation.Aggregate {
	return reputation.Aggregate{SHA256: h, Prevalence: a.Prevalence, Detections: a.Detections, FirstSeen: a.FirstSeen, LastSeen: a.LastSeen}
}
