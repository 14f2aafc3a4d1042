// Package region is one region's telemetry service: ingest, verdicts and
// the exchange of non-personal aggregates with the other regions.
//
// # Residency
//
// A region stores only records of endpoints whose home region it is: the
// endpoint's token names its country and home region, and the active
// residency policy (a version that is in the policy log) must agree. Any
// other batch is refused with 421 Misdirected Request and never stored.
//
// # Processing
//
// Storing a batch updates, in the same transaction, the aggregate of each
// file hash it mentions: prevalence counted through pseudonyms, detections
// by name, first and last seen. Aggregates are all that leaves a region:
// every region pulls the others' changed aggregates and merges them into
// its global view, from which verdicts are decided (package reputation).
package region

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/httpapi"
	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/seal"
	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/residency"
	"github.com/vitrine-dev/vitrine/telemetry"
)

// Config configures one region.
type Config struct {
	// Name is the region's name in the residency policy, e.g. "zurich".
	Name string
	// Store holds the region's telemetry.
	Store store.Store
	// Wrapper wraps each batch's data key to the region's custody key
	// (custody.PublicKey): the region seals personal fields with it and
	// cannot open them again.
	Wrapper seal.Wrapper
	// Tokens checks endpoint tokens.
	Tokens *endpoint.Verifier
	// Pseudonyms gives the pseudonyms that stand for endpoints in
	// processing (the supervisor holds their key in production).
	Pseudonyms endpoint.Pseudonyms
	// Policy returns the active residency policy (a version in the policy
	// log).
	Policy func() *residency.Policy
	// PeerToken authorises other regions to pull this region's aggregates,
	// and this region to pull theirs.
	PeerToken string
	// Peers are the other regions' base URLs by name
	// (".../regions/<name>").
	Peers map[string]string
	// AccessLog is the region's access log: every page of aggregates a
	// peer pulls is logged there as a process access before it is
	// answered. Nil logs nothing (tests of ingest alone).
	AccessLog interface {
		Append(ctx context.Context, entry []byte) (uint64, error)
	}
	// Location is the home country of the region's processing
	// principals, as access records name it (default CH).
	Location string
	// PeerClient reaches the peers (default: a client with a 10s timeout).
	PeerClient *http.Client
	// ExchangeInterval is how often the region pulls its peers' changed
	// aggregates (default 100ms).
	ExchangeInterval time.Duration
	Logger           *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Bodies bounds the request bodies the region holds in memory at
	// once, in all and per endpoint; regions that share a process should
	// share one. Nil means a budget of the region's own,
	// httpapi.DefaultBodyBudget bytes with a full batch
	// (telemetry.MaxBatchBytes) per endpoint. A body is read only within
	// the server's ReadTimeout, which bounds how long a slow sender holds
	// its part.
	Bodies *httpapi.BodyBudget
	// Metrics, if set, counts the region's ingest and verdicts.
	Metrics *metrics.Region
}

// Region is a running region. Its methods are safe for concurrent use.
type Region struct {
	cfg     Config
	logger  *slog.Logger
	metrics *metrics.Region
	ingests atomic.Int64
	// gate is held for reading by each ingest from its residency check
	// to its store's answer, and for writing by HoldIngest.
	gate sync.RWMutex
}

// HoldIngest waits until no ingest is between its residency check and its
// store's answer, and keeps new ones from starting until release is
// called. A policy switch holds every region's ingest while it swaps the
// policy, so that no batch is stored under the policy it replaced.
func (r *Region) HoldIngest() (release func()) {
	r.gate.Lock()
	return r.gate.Unlock
}

// New returns the region described by cfg.
func New(cfg Config) *Region {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PeerClient == nil {
		cfg.PeerClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Store == nil || cfg.Wrapper == nil {
		// A region without them would fail every ingest; say so at
		// start instead.
		panic("region.New: Config.Store and Config.Wrapper are required")
	}
	if cfg.ExchangeInterval == 0 {
		cfg.ExchangeInterval = 300 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Location == "" {
		cfg.Location = "CH"
	}
	if cfg.Bodies == nil {
		cfg.Bodies = httpapi.NewBodyBudget(httpapi.DefaultBodyBudget, telemetry.MaxBatchBytes)
	}
	return &Region{cfg: cfg, logger: cfg.Logger.With("region", cfg.Name), metrics: cfg.Metrics}
}

// Name returns the region's name.
func (r *Region) Name() string { return r.cfg.Name }

// Handler serves the region's routes relative to where it is mounted
// (/regions/<name>/ in the platform):
//
//	POST /v1/telemetry          ingest a batch (endpoint token)
//	GET  /v1/verdicts/{sha256}  one verdict (endpoint token)
//	POST /v1/verdicts           up to 1,000 verdicts (endpoint token)
//	GET  /v1/aggregates         changed aggregates, for peer regions (peer token)
func (r *Region) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/telemetry", r.serveIngest)
	mux.HandleFunc("GET /v1/verdicts/{sha256}", r.serveVerdict)
	mux.HandleFunc("POST /v1/verdicts", r.serveVerdicts)
	mux.HandleFunc("GET /v1/aggregates", r.serveAggregates)
	return mux
}

// Run pulls the peers' changed aggregates until ctx ends, backing off from
// a peer that fails (exchange.go).
func (r *Region) Run(ctx context.Context) {
	// Each peer's cursor is where the store's durable copy of its
	// aggregates ends: the store writes the two together.
	cursors := map[string]int64{}
	for name := range r.cfg.Peers {
		for {
			c, err := r.cfg.Store.RemoteCursor(ctx, name)
			if err == nil {
				cursors[name] = c
				break
			}
			r.logger.WarnContext(ctx, "reading the exchange cursor", "peer", name, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
	r.exchange(ctx, cursors)
}

// Store returns the region's store.
func (r *Region) Store() store.Store { return r.cfg.Store }
