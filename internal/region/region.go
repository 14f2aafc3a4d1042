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
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vitrine-dev/vitrine/internal/endpoint"
	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/residency"
)

// Config configures one region.
type Config struct {
	// Name is the region's name in the residency policy, e.g. "zurich".
	Name string
	// Store holds the region's telemetry.
	Store store.Store
	// Tokens checks endpoint tokens.
	Tokens *endpoint.Verifier
	// PseudonymKey keys the pseudonyms that stand for endpoints in
	// processing.
	PseudonymKey []byte
	// Policy returns the active residency policy (a version in the policy
	// log).
	Policy func() *residency.Policy
	// PeerToken authorises other regions to pull this region's aggregates,
	// and this region to pull theirs.
	PeerToken string
	// Peers are the other regions' base URLs by name
	// (".../regions/<name>").
	Peers map[string]string
	// PeerClient reaches the peers (default: a client with a 10s timeout).
	PeerClient *http.Client
	// StateDir keeps the exchange cursors, so that a restart resumes
	// pulling where it stopped instead of pulling every aggregate again.
	// Empty means cursors are kept in memory only.
	StateDir string
	// ExchangeInterval is how often the region pulls its peers' changed
	// aggregates (default 100ms).
	ExchangeInterval time.Duration
	Logger           *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Region is a running region. Its methods are safe for concurrent use.
type Region struct {
	cfg     Config
	logger  *slog.Logger
	ingests atomic.Int64
}

// New returns the region described by cfg.
func New(cfg Config) *Region {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PeerClient == nil {
		cfg.PeerClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.ExchangeInterval == 0 {
		cfg.ExchangeInterval = 100 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Region{cfg: cfg, logger: cfg.Logger.With("region", cfg.Name)}
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

// Run pulls the peers' changed aggregates until ctx ends.
func (r *Region) Run(ctx context.Context) {
	cursors := map[string]int64{}
	for name := range r.cfg.Peers {
		cursors[name] = r.loadCursor(name)
	}
	t := time.NewTicker(r.cfg.ExchangeInterval)
	defer t.Stop()
	for {
		for name, base := range r.cfg.Peers {
			c, err := r.pull(ctx, name, base, cursors[name])
			if err != nil {
				if ctx.Err() == nil {
					r.logger.WarnContext(ctx, "pulling aggregates", "peer", name, "err", err)
				}
				continue
			}
			if c != cursors[name] {
				cursors[name] = c
				r.saveCursor(name, c)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Store returns the region's store.
func (r *Region) Store() store.Store { return r.cfg.Store }

// loadCursor returns the saved exchange cursor for a peer, or 0. A lost or
// damaged cursor only costs pulling aggregates again: PutRemote replaces.
func (r *Region) loadCursor(peer string) int64 {
	if r.cfg.StateDir == "" {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(r.cfg.StateDir, "exchange-"+peer+".cursor"))
	if err != nil {
		return 0
	}
	c, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || c < 0 {
		return 0
	}
	return c
}

// saveCursor records a peer's exchange cursor. It is not synced: after a
// crash an older cursor is harmless.
func (r *Region) saveCursor(peer string, c int64) {
	if r.cfg.StateDir == "" {
		return
	}
	p := filepath.Join(r.cfg.StateDir, "exchange-"+peer+".cursor")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(c, 10)+"\n"), 0o644); err == nil {
		_ = os.Rename(tmp, p)
	}
}
