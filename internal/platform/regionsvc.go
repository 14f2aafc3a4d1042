package platform

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/commitment"
	"github.com/vitrine-dev/vitrine/internal/custody"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/gateway"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/lease"
	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/principal"
	"github.com/vitrine-dev/vitrine/internal/pseudonyms"
	"github.com/vitrine-dev/vitrine/internal/region"
	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/telemetry"
	"github.com/vitrine-dev/vitrine/tlog"
)

// RegionServiceConfig configures one process of a region's service
// (`vitrine serve --role region:<name>`): ingest, verdicts, the exchange
// and the access gateway of one region, in front of the region's store,
// beside the platform's process (`vitrine up` with the region in its
// ExternalRegions), which keeps the logs, the principals, the endpoint
// issuer and the residency policy. Several such processes may serve one
// region on one PostgreSQL store; the background work is done by
// whichever holds its lease.
type RegionServiceConfig struct {
	// Region is the region's name in the residency policy.
	Region string
	// Data is the process's own directory: the pinned custody key. Each
	// process has its own; nothing in it is shared.
	Data string
	// Listen is the address to listen on; PublicURL, if set, is the
	// base URL its clients use (the region's URL in the policy, usually a
	// load balancer in front of every process of the region).
	Listen, PublicURL string
	// Platform is the base URL of the platform's process, and
	// InternalToken the region's token for its internal routes (the
	// platform's <data>/internal/<region>.token). PeerToken is the
	// deployment's peer token (the platform's <data>/peer.token), for
	// the exchange with the other regions.
	Platform, InternalToken, PeerToken string
	// Store is the region's store: a postgres:// URL for a store several
	// processes share, or sqlite:PATH for a lone process.
	Store string
	// CustodyURL and CustodyToken reach key custody; empty URL means the
	// platform's own, at <Platform>/custody.
	CustodyURL, CustodyToken string
	// CommitmentInterval is how often the region commits to its dataset
	// (default 1h); OperatorLocation the home country of its processing
	// principals (default CH).
	CommitmentInterval time.Duration
	OperatorLocation   string
	// Refresh is how often the process reads the active policy and the
	// endpoint revocations from the platform (default 1s).
	Refresh time.Duration
	// TLS, if set, serves HTTPS (base URL https://<listen>).
	TLS *tls.Config
	// Metrics, if set, counts the region's ingest, verdicts and gateway
	// decisions.
	Metrics *metrics.Registry
	// Leased, if set, is told when this process takes a lease (held)
	// and when it lets it go.
	Leased func(name string, held bool)
	Logger *slog.Logger
}

// RegionService is a running process of a region's service.
type RegionService struct {
	cfg      RegionServiceConfig
	logger   *slog.Logger
	hc       *http.Client
	listener net.Listener
	server   *http.Server
	baseURL  string
	store    store.Store
	locker   *lease.Locker
	mirror   // the platform's policy and revocations (mirror.go)
	region   *region.Region
	gateway  *gateway.Gateway
	commits  *commitment.Committer
	cancel   context.CancelFunc
	done     sync.WaitGroup
	serveErr chan error
}

// StartRegionService starts a process of a region's service. It reads the
// platform's discovery document, the active policy and the revocations
// first, and fails if the platform does not answer.
func StartRegionService(ctx context.Context, cfg RegionServiceConfig) (_ *RegionService, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = time.Second
	}
	if cfg.Region == "" || cfg.Platform == "" || cfg.PeerToken == "" || cfg.InternalToken == "" || cfg.Store == "" || cfg.Data == "" {
		return nil, errors.New("starting region service: the region, the platform's URL, the peer and internal tokens, the store and a data directory are required")
	}
	cfg.Platform = strings.TrimSuffix(cfg.Platform, "/")
	s := &RegionService{cfg: cfg, logger: cfg.Logger.With("region", cfg.Region), hc: &http.Client{Timeout: 10 * time.Second}, serveErr: make(chan error, 1)}
	s.mirror = newMirror(cfg.Platform, cfg.InternalToken, s.hc, s.logger)
	defer func() {
		if err != nil {
			s.closeParts()
		}
	}()
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("starting region service: %w", err)
	}
	d, err := client.FetchDiscovery(ctx, s.hc, cfg.Platform)
	if err != nil {
		return nil, fmt.Errorf("starting region service: %w", err)
	}
	tokens, err := s.start(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("starting region service: %w", err)
	}
	pol := s.policy.Load()
	if pol.Region(cfg.Region) == nil {
		return nil, fmt.Errorf("starting region service: the active policy has no region %q", cfg.Region)
	}
	dl, ok := d.Log("access-" + cfg.Region)
	if !ok {
		return nil, fmt.Errorf("starting region service: the platform has no access log for %s", cfg.Region)
	}
	log := &remoteLog{s: s, name: dl.Name, origin: dl.Origin}
	peers := map[string]string{}
	for _, r := range d.Regions {
		if r.Name != cfg.Region {
			peers[r.Name] = r.URL
		}
	}
	custodyURL, custodyToken := cfg.CustodyURL, cfg.CustodyToken
	if custodyURL == "" {
		custodyURL = cfg.Platform + "/custody"
	}
	cust := custody.NewClient(custodyURL, custodyToken, &http.Client{Timeout: 10 * time.Second})
	wrapper := &remoteKey{client: cust, region: cfg.Region, pin: filepath.Join(cfg.Data, "custody-"+cfg.Region+".pub")}
	ps := pseudonyms.NewClient(cfg.Platform+internalPrefix+"pseudonyms", cfg.InternalToken, &http.Client{Timeout: 10 * time.Second}, 0)

	if s.store, err = store.Open(ctx, cfg.Store); err != nil {
		return nil, fmt.Errorf("starting region service: opening the store: %w", err)
	}
	if isPostgres(cfg.Store) {
		if s.locker, err = lease.Open(ctx, cfg.Store, s.logger); err != nil {
			return nil, fmt.Errorf("starting region service: %w", err)
		}
	}
	s.region = region.New(region.Config{
		Name: cfg.Region, Store: s.store, Wrapper: wrapper, Tokens: tokens, Pseudonyms: ps, Policy: s.policy.Load,
		PeerToken: cfg.PeerToken, Peers: peers, AccessLog: log, Location: cfg.OperatorLocation, Logger: s.logger,
		Bodies: httpapi.NewBodyBudget(0, telemetry.MaxBatchBytes), Metrics: cfg.Metrics.Region(cfg.Region),
	})
	s.gateway = gateway.New(gateway.Config{Region: cfg.Region, Store: s.store, Log: log, Custody: cust,
		Principals: remotePrincipals{s}, Pseudonyms: ps, Logger: s.logger, Metrics: cfg.Metrics.Gateway(cfg.Region)})
	if s.commits, err = commitment.New(commitment.Config{Region: cfg.Region, Store: s.store, Log: log,
		Interval: cfg.CommitmentInterval, Logger: s.logger}); err != nil {
		return nil, fmt.Errorf("starting region service: %w", err)
	}

	if s.listener, s.baseURL, err = listen(cfg.Listen, cfg.PublicURL, cfg.TLS); err != nil {
		return nil, fmt.Errorf("starting region service: %w", err)
	}
	s.server = newServer(s.routes(), s.logger, 60*time.Second)
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	held := func(name string) func(bool) {
		return func(h bool) {
			s.logger.Info("lease", "name", name, "held", h)
			if cfg.Leased != nil {
				cfg.Leased(name, h)
			}
		}
	}
	exchange, commitments := "region/"+cfg.Region+"/exchange", "region/"+cfg.Region+"/commitments"
	s.done.Go(func() { s.locker.Run(bg, exchange, s.region.Run, held(exchange)) })
	s.done.Go(func() {
		s.locker.Run(bg, commitments, func(ctx context.Context) { _ = s.commits.Run(ctx) }, held(commitments))
	})
	s.done.Go(func() { s.gateway.Run(bg) })
	s.done.Go(func() { s.refreshLoop(bg, cfg.Refresh) })
	go func() { s.serveErr <- s.server.Serve(s.listener) }()
	return s, nil
}

func (s *RegionService) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		httpapi.JSON(w, map[string]string{"status": "serving"})
	})
	mux.HandleFunc("GET /readyz", s.serveReadyz)
	rh := s.region.Handler()
	mux.Handle("/", rh)
	mux.Handle("POST /v1/telemetry", s.ingest(rh))
	// Verdicts take endpoint tokens too, checked against the
	// revocations: refused like ingest once those may be stale.
	mux.Handle("GET /v1/verdicts/{sha256}", s.whileFresh(rh))
	mux.Handle("POST /v1/verdicts", s.whileFresh(rh))
	g := s.gateway.Handler()
	mux.Handle("/v1/records", g)
	mux.Handle("/v1/records/", g)
	mux.Handle("/v1/access/", g)
	return mux
}

// regionStale is how old the policy and the revocations may be before a
// region's process stops being ready and refuses ingest (503): a load
// balancer then sends ingest elsewhere. regionIngestTimeout bounds an
// ingest from its residency check to its store's answer. A relocation
// waits externalPolicyGrace after it switches the policy, so that every
// batch checked under the version replaced has been stored or refused
// before it copies.
const (
	regionStale         = 10 * time.Second
	regionIngestTimeout = 50 * time.Second
	externalPolicyGrace = regionStale + regionIngestTimeout + 2*time.Second
)

// ingest is the region's ingest, refused while the policy may be stale and
// bounded by regionIngestTimeout.
func (s *RegionService) ingest(h http.Handler) http.Handler {
	return s.whileFresh(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), regionIngestTimeout)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	}))
}

// URL returns the process's base URL.
func (s *RegionService) URL() string { return s.baseURL }

// Done is closed with the server's error if it stops serving on its own.
func (s *RegionService) Done() <-chan error { return s.serveErr }

// Close stops taking requests, stops the background work (letting its
// leases go) and closes the store.
func (s *RegionService) Close(ctx context.Context) error {
	var errs []error
	if s.server != nil {
		errs = append(errs, s.server.Shutdown(ctx))
	}
	errs = append(errs, s.closeParts())
	return errors.Join(errs...)
}

func (s *RegionService) closeParts() error {
	if s.cancel != nil {
		s.cancel()
	}
	s.done.Wait()
	s.locker.Close()
	if s.server == nil && s.listener != nil {
		_ = s.listener.Close()
	}
	if s.store != nil {
		return s.store.Close()
	}
	return nil
}

// remoteLog is the region's access log as a process of the region's
// service reaches it: through the platform, which admits each entry as it
// does its own gateways' (internal.go).
type remoteLog struct {
	s            *RegionService
	name, origin string
}

func (l *remoteLog) Origin() string { return l.origin }

func (l *remoteLog) Append(ctx context.Context, entry []byte) (uint64, error) {
	var ans struct {
		Index *uint64 `json:"index"`
	}
	err := client.Call(ctx, l.s.hc, http.MethodPost, l.s.cfg.Platform+internalPrefix+"logs/"+l.name+"/append", l.s.cfg.InternalToken, entry, 4096, &ans)
	var se *client.StatusError
	switch {
	case errors.As(err, &se) && se.Status == http.StatusForbidden:
		return 0, fmt.Errorf("appending to %s: %w: %s", l.origin, principal.ErrBadCredential, se.Message)
	case err != nil:
		return 0, fmt.Errorf("appending to %s: %w", l.origin, fault.Mark(fault.ErrUnavailable, err))
	case ans.Index == nil:
		return 0, fmt.Errorf("appending to %s: %w: the platform gave no index", l.origin, fault.ErrUnavailable)
	}
	return *ans.Index, nil
}

func (l *remoteLog) Prove(ctx context.Context, index uint64) (*tlog.Proof, error) {
	b, err := l.s.get(ctx, internalPrefix+"logs/"+l.name+"/prove?index="+strconv.FormatUint(index, 10), 64<<10)
	if err != nil {
		return nil, fmt.Errorf("proving entry %d of %s: %w", index, l.origin, fault.Mark(fault.ErrUnavailable, err))
	}
	p, err := tlog.ParseProof(b)
	if err != nil {
		return nil, fmt.Errorf("proving entry %d of %s: %w", index, l.origin, fault.Mark(fault.ErrUnavailable, err))
	}
	if p.Index != index {
		return nil, fmt.Errorf("proving entry %d of %s: %w: the platform proved entry %d", index, l.origin, fault.ErrUnavailable, p.Index)
	}
	return p, nil
}

// remotePrincipals authenticates principals through the platform, which
// holds the registry.
type remotePrincipals struct{ s *RegionService }

func (rp remotePrincipals) Authenticate(r *http.Request) (*principal.Principal, error) {
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if auth == "" {
		return nil, fmt.Errorf("authenticating principal: %w", principal.ErrNoCredential)
	}
	if !ok || tok == "" || len(tok) > 512 {
		return nil, fmt.Errorf("authenticating principal: %w", principal.ErrBadCredential)
	}
	body, _ := json.Marshal(struct {
		Token string `json:"token"`
	}{tok})
	var p principal.Principal
	err := client.Call(r.Context(), rp.s.hc, http.MethodPost, rp.s.cfg.Platform+internalPrefix+"principals/authenticate", rp.s.cfg.InternalToken, body, 64<<10, &p)
	var se *client.StatusError
	switch {
	case errors.As(err, &se) && se.Status == http.StatusUnauthorized:
		if strings.Contains(se.Message, "expired") {
			return nil, fmt.Errorf("authenticating principal: %w", principal.ErrExpired)
		}
		return nil, fmt.Errorf("authenticating principal: %w", principal.ErrBadCredential)
	case err != nil:
		return nil, fmt.Errorf("authenticating principal: %w", fault.Mark(fault.ErrUnavailable, err))
	}
	return &p, nil
}
