package platform

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"time"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/internal/relocate"
	"github.com/vitrine-dev/vitrine/internal/store"
)

// startRelocations opens the relocation jobs under data/relocations. A job
// a crash interrupted resumes once the platform serves (see Start).
func (p *Platform) startRelocations() error {
	regions := map[string]relocate.Region{}
	for name := range p.regions.byName {
		st, ok := p.regions.byName[name].Store().(store.Relocator)
		if !ok {
			p.logger.Warn("the region's store cannot relocate", "region", name)
			continue
		}
		regions[name] = relocate.Region{Store: st, Log: p.logs["access-"+name]}
	}
	loc := p.cfg.OperatorLocation
	if loc == "" {
		loc = "CH"
	}
	var err error
	p.relocator, err = relocate.Open(relocate.Config{
		Dir:        filepath.Join(p.cfg.Data, "relocations"),
		Regions:    regions,
		Custody:    p.unwrapper,
		Policy:     p.regions.policy.Load,
		MovePolicy: p.movePolicy,
		Principal:  access.Principal{ID: "operator:platform", Role: "operator", Location: loc},
		Logger:     p.logger,
	})
	return err
}

// movePolicy makes to the region that serves country: a new policy
// version is signed, appended to the policy log and witnessed, then
// activated while every region's ingest is held, so that no batch is
// stored under the version it replaces. If the active policy serves
// country from to already, it returns the active version.
func (p *Platform) movePolicy(ctx context.Context, country, to string) (uint64, error) {
	p.policyMu.Lock()
	defer p.policyMu.Unlock()
	cur := p.regions.policy.Load()
	if home, err := cur.RegionFor(country); err == nil && home == to {
		return cur.Version, nil
	}
	next, err := cur.Move(country, to)
	if err != nil {
		return 0, err
	}
	if err := p.regions.policies.Append(ctx, next); err != nil {
		return 0, err
	}
	var release []func()
	for _, r := range p.regions.byName {
		release = append(release, r.HoldIngest())
	}
	p.regions.policy.Store(next)
	for _, f := range release {
		f()
	}
	p.logger.InfoContext(ctx, "residency policy activated", "version", next.Version, "country", country, "region", to)
	if len(p.cfg.ExternalRegions) > 0 {
		// The processes of the external regions cannot be held: each
		// takes the new version at its next refresh, and refuses ingest
		// once its version is regionStale old. After the grace, every
		// batch checked under the version replaced has been stored or
		// refused.
		p.logger.InfoContext(ctx, "waiting for the regions' own processes to take the policy", "version", next.Version, "wait", externalPolicyGrace)
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(externalPolicyGrace):
		}
	}
	return next.Version, nil
}

// serveRelocationStart starts a relocation: POST /v1/relocations with
// {"country":"DE","to":"zurich"} and the operator token. It answers 202
// with the job.
func (p *Platform) serveRelocationStart(w http.ResponseWriter, r *http.Request) {
	if !keys.BearerEqual(r, p.operatorToken) {
		httpapi.Unauthorized(w, "relocations need the operator token")
		return
	}
	body, ok := httpapi.ReadLimited(w, r, 4096)
	if !ok {
		return
	}
	var req struct {
		Country string `json:"country"`
		To      string `json:"to"`
	}
	if err := httpapi.DecodeStrict(body, &req); err != nil || req.Country == "" || req.To == "" {
		httpapi.Error(w, http.StatusBadRequest, `bad request: want {"country":"<ISO 3166-1 alpha-2>","to":"<region>"}`)
		return
	}
	// The job outlives the request.
	j, err := p.relocator.Start(p.bg, req.Country, req.To)
	if err != nil {
		if fault.Kind(err) == fault.ErrUnavailable {
			p.logger.ErrorContext(r.Context(), "starting relocation", "err", err)
		}
		httpapi.Fail(w, p.logger, err, "no relocation was started; nothing was changed")
		return
	}
	w.Header().Set("Location", "/v1/relocations/"+j.ID)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(j)
}

// serveRelocation answers a job: GET /v1/relocations/{id}, operator token.
func (p *Platform) serveRelocation(w http.ResponseWriter, r *http.Request) {
	if !keys.BearerEqual(r, p.operatorToken) {
		httpapi.Unauthorized(w, "relocations need the operator token")
		return
	}
	j, ok := p.relocator.Job(r.PathValue("id"))
	if !ok {
		httpapi.Error(w, http.StatusNotFound, "no such relocation")
		return
	}
	httpapi.JSON(w, j)
}

// Relocator returns the platform's relocations.
func (p *Platform) Relocator() *relocate.Relocator { return p.relocator }
