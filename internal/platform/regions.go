package platform

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/internal/commitment"
	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/gateway"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/internal/lease"
	"github.com/vitrine-dev/vitrine/internal/policylog"
	"github.com/vitrine-dev/vitrine/internal/pseudonyms"
	"github.com/vitrine-dev/vitrine/internal/region"
	"github.com/vitrine-dev/vitrine/internal/store"
	_ "github.com/vitrine-dev/vitrine/internal/store/postgres" // stores: postgres:// URLs
	_ "github.com/vitrine-dev/vitrine/internal/store/sqlite"   // the embedded default store
	"github.com/vitrine-dev/vitrine/residency"
	"github.com/vitrine-dev/vitrine/telemetry"
)

// regions is the residency half of the platform: the active policy, the
// endpoint issuer and the regional services.
type regions struct {
	policy    atomic.Pointer[residency.Policy]
	policyKey note.Signer
	policies  *policylog.Keeper
	policyVK  string
	issuer    *endpoint.Issuer
	revoked   *endpoint.Revocations // endpoints whose tokens the issuer's verifiers refuse
	byName    map[string]*region.Region
	gateways  map[string]*gateway.Gateway
	commits   map[string]*commitment.Committer
	stores    []store.Store
	// peerToken authorises the regions' exchange and the internal
	// routes; pseudonyms gives the endpoints' pseudonyms.
	peerToken  string
	pseudonyms endpoint.Pseudonyms
	// internalTokens are the regions' internal tokens (internal.go);
	// frontToken the front door processes' (<data>/front.token), which
	// reads the policy and the revocations only.
	internalTokens map[string]string
	frontToken     string
	// lockers hold the leases of the background work of the regions
	// whose store several processes share (PostgreSQL).
	lockers map[string]*lease.Locker
	cancel  context.CancelFunc
	done    chan struct{}
}

// startRegions activates the residency policy through the policy log and
// starts every region of it.
func (p *Platform) startRegions(ctx context.Context) error {
	rs := &regions{byName: map[string]*region.Region{}, gateways: map[string]*gateway.Gateway{}, commits: map[string]*commitment.Committer{},
		lockers: map[string]*lease.Locker{}, done: make(chan struct{})}
	p.regions = rs
	var err error
	rs.policyKey, rs.policyVK, err = keys.LoadOrCreateSigner(filepath.Join(p.cfg.Data, "policy.key"), filepath.Join(p.cfg.Data, "policy.vkey"), p.cfg.Name+"/policy")
	if err != nil {
		return err
	}
	want := residency.Default()
	if p.cfg.Residency != nil {
		want = p.cfg.Residency
	}
	// A region without a URL in the policy is served by this platform at
	// <base>/regions/<name>; the logged policy leaves the URL out so that
	// it does not change with the listen address.
	pv, err := note.NewVerifier(rs.policyVK)
	if err != nil {
		return err
	}
	rs.policies = &policylog.Keeper{Log: p.logs["policy"], Signer: rs.policyKey, Verifier: pv, Logger: p.logger}
	active, err := rs.policies.Activate(ctx, want)
	if err != nil {
		return err
	}
	rs.policy.Store(active)

	rs.issuer, rs.revoked, err = openEndpointIssuer(p.cfg.Data, p.cfg.Name)
	if err != nil {
		return err
	}
	peerToken, err := keys.LoadOrCreateToken(filepath.Join(p.cfg.Data, "peer.token"))
	if err != nil {
		return err
	}
	rs.peerToken = peerToken
	rs.internalTokens = map[string]string{}
	if err := os.MkdirAll(filepath.Join(p.cfg.Data, "internal"), 0o700); err != nil {
		return err
	}
	for _, reg := range active.Regions {
		if rs.internalTokens[reg.Name], err = keys.LoadOrCreateToken(filepath.Join(p.cfg.Data, "internal", reg.Name+".token")); err != nil {
			return err
		}
	}
	if rs.frontToken, err = keys.LoadOrCreateToken(filepath.Join(p.cfg.Data, "front.token")); err != nil {
		return err
	}
	// One pseudonymisation key for the deployment, so that an endpoint
	// has the same pseudonym in every region, including after a
	// relocation: the supervisor's, who gives the pseudonyms, or a key in
	// the data directory when the platform is its own supervisor.
	var ps endpoint.Pseudonyms
	if sup := p.cfg.Supervisor; sup != nil {
		ps = pseudonyms.NewClient(sup.PseudonymsURL, sup.Token, &http.Client{Timeout: 10 * time.Second}, 0)
	} else {
		pkey, err := keys.LoadOrCreateToken(filepath.Join(p.cfg.Data, "pseudonym.key"))
		if err != nil {
			return err
		}
		ps = endpoint.PseudonymKey(pkey)
	}
	rs.pseudonyms = ps
	// The regions share this process's memory, so they share one budget
	// for the request bodies they hold.
	bodies := httpapi.NewBodyBudget(p.cfg.BodyBudget, telemetry.MaxBatchBytes)
	for _, reg := range active.Regions {
		dir := filepath.Join(p.cfg.Data, "regions", reg.Name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		spec := p.cfg.Stores[reg.Name]
		if spec == "" {
			spec = "sqlite:" + filepath.Join(dir, "telemetry.db")
		}
		st, err := store.Open(ctx, spec)
		if err != nil {
			return fmt.Errorf("opening store of region %s: %w", reg.Name, err)
		}
		rs.stores = append(rs.stores, st)
		if isPostgres(spec) {
			// Background work on a store that other processes share
			// is done by whichever of them holds its lease.
			if rs.lockers[reg.Name], err = lease.Open(ctx, spec, p.logger); err != nil {
				return fmt.Errorf("region %s: %w", reg.Name, err)
			}
		}
		peers := map[string]string{}
		for _, other := range active.Regions {
			if other.Name != reg.Name {
				peers[other.Name] = p.regionURL(active, other.Name)
			}
		}
		wrapper, ok := p.wrappers[reg.Name]
		if !ok {
			return fmt.Errorf("region %s: custody holds no key for it (it has no access log)", reg.Name)
		}
		rs.byName[reg.Name] = region.New(region.Config{
			Name:       reg.Name,
			Store:      st,
			Wrapper:    wrapper,
			Tokens:     rs.issuer.Verifier(),
			Pseudonyms: ps,
			Policy:     rs.policy.Load,
			PeerToken:  peerToken,
			Peers:      peers,
			AccessLog:  p.logs["access-"+reg.Name],
			Location:   p.cfg.OperatorLocation,
			Logger:     p.logger,
			Bodies:     bodies,
			Metrics:    p.cfg.Metrics.Region(reg.Name),
		})
		rs.gateways[reg.Name] = gateway.New(gateway.Config{
			Region:     reg.Name,
			Store:      st,
			Log:        admittedLog{p.logs["access-"+reg.Name], p.principals},
			Custody:    p.unwrapper,
			Principals: p.principals,
			Pseudonyms: ps,
			Logger:     p.logger,
			Metrics:    p.cfg.Metrics.Gateway(reg.Name),
		})
	}
	for name := range rs.byName {
		// Each region commits to its dataset in its access log, every
		// CommitmentInterval and on demand.
		c, err := commitment.New(commitment.Config{
			Region:   name,
			Store:    rs.byName[name].Store(),
			Log:      p.logs["access-"+name],
			Interval: p.cfg.CommitmentInterval,
			Logger:   p.logger,
		})
		if err != nil {
			return err
		}
		rs.commits[name] = c
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	rs.cancel = cancel
	go func() {
		defer close(rs.done)
		var wg sync.WaitGroup
		for name, r := range rs.byName {
			// A region served by processes of its own does its
			// background work there.
			if !slices.Contains(p.cfg.ExternalRegions, name) {
				l := rs.lockers[name]
				wg.Go(func() { l.Run(rctx, "region/"+name+"/exchange", r.Run, nil) })
				wg.Go(func() {
					l.Run(rctx, "region/"+name+"/commitments", func(ctx context.Context) { _ = rs.commits[name].Run(ctx) }, nil)
				})
			}
			// The gateway writes the denied attempts it counted, and
			// once more when close cancels rctx: before the stores and
			// the logs close.
			wg.Go(func() { rs.gateways[name].Run(rctx) })
		}
		wg.Wait()
	}()
	return nil
}

func (rs *regions) close() error {
	if rs == nil {
		return nil
	}
	if rs.cancel != nil {
		rs.cancel()
		<-rs.done
	}
	var errs []error
	for _, l := range rs.lockers {
		l.Close()
	}
	for _, s := range rs.stores {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

func (p *Platform) serveRegister(w http.ResponseWriter, r *http.Request) {
	if !keys.BearerEqual(r, p.operatorToken) {
		httpapi.Unauthorized(w, "registering endpoints needs the operator token")
		return
	}
	body, ok := httpapi.ReadLimited(w, r, 4096)
	if !ok {
		return
	}
	var req struct {
		Country string `json:"country"`
	}
	if err := httpapi.DecodeStrict(body, &req); err != nil {
		httpapi.Error(w, http.StatusBadRequest, `bad request: want {"country":"<ISO 3166-1 alpha-2>"}`)
		return
	}
	pol := p.regions.policy.Load()
	home, err := pol.RegionFor(req.Country)
	if err != nil {
		httpapi.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	id, token, err := p.regions.issuer.Register(req.Country, home)
	if err != nil {
		httpapi.Fail(w, p.logger, err, "registering the endpoint failed")
		return
	}
	httpapi.JSON(w, struct {
		ID        string `json:"id"`
		Token     string `json:"token"`
		Region    string `json:"region"`
		IngestURL string `json:"ingest_url"`
	}{id.ID, token, home, p.regionURL(pol, home) + "/v1/telemetry"})
}

// serveFrontDoor redirects an endpoint to its home region's ingest URL. It
// never reads, stores or logs the body.
func (p *Platform) serveFrontDoor(w http.ResponseWriter, r *http.Request) {
	redirectHome(w, r, p.regions.issuer.Verifier(), p.regions.policy.Load(), p.baseURL)
}

// regionURL returns the base URL of a region: the policy's, or this
// platform's /regions/<name> for a region the policy gives no URL.
func (p *Platform) regionURL(pol *residency.Policy, name string) string {
	return regionURL(pol, name, p.baseURL)
}

// isPostgres reports whether a store location names a PostgreSQL
// database, which several processes may share.
func isPostgres(spec string) bool {
	return strings.HasPrefix(spec, "postgres://") || strings.HasPrefix(spec, "postgresql://")
}

// Region returns the named region, or nil.
func (p *Platform) Region(name string) *region.Region { return p.regions.byName[name] }
