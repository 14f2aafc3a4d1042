// Package custody is the key-custody service that the supervisor runs: it
// holds the private keys that unwrap the data keys under which regions
// encrypt personal fields, and unwraps only for accesses that are in a
// region's access log.
//
// # Wrapping
//
// A region encrypts a batch's personal fields under a fresh 32-byte data
// key and stores the key wrapped to its region's [PublicKey] (HPKE with
// MLKEM768-X25519, HKDF-SHA256 and ChaCha20Poly1305). Wrapping needs no
// secret and no call to custody, so ingest never depends on it. [KeyID]
// names a wrapped key by its SHA-256.
//
// # Unwrapping
//
// [Service.Unwrap] returns data keys only against a C2SP tlog-proof that an
// access record is in the region's access log under a checkpoint that meets
// the supervisor's witness policy. The record must be a granted access of
// that region that lists the KeyID of every key asked for. Relocation asks
// for the keys wrapped to the new region's key instead of in the clear.
//
// Custody keeps the data keys it has unwrapped in a bounded cache, so that
// keys read again are not decapsulated again; every unwrap is checked and
// counted all the same.
//
// # Counting
//
// Every unwrap adds the number of keys to a count per (region, access-log
// index) that is durable before any key leaves: the supervisor reconciles
// [Service.Counts] with the access log. If the count cannot be made
// durable, no key is returned (fail closed). Counts of concurrent unwraps
// are committed together, one fsync for many.
package custody

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/residency"
	"github.com/vitrine-dev/vitrine/tlog"
)

// Errors that Unwrap returns, wrapped with %w; test with errors.Is.
var (
	// ErrRefused means custody will not unwrap: the proof, the access
	// record or a key does not allow it. The message says why.
	ErrRefused = fault.New(fault.ErrForbidden, "unwrap refused")
	// ErrMalformed means the request is not well formed.
	ErrMalformed = fault.New(fault.ErrInvalid, "malformed unwrap request")
	// ErrUnavailable means the unwrap could not be counted durably, so no
	// key was returned. It may be retried.
	ErrUnavailable = fault.New(fault.ErrUnavailable, "unwrap count unavailable")
)

// Config configures a Service.
type Config struct {
	// Dir holds the region private keys, <region>.key (mode 0600), and the
	// unwrap counts, counts.db. It is created (mode 0700) if missing.
	Dir string
	// Regions are the regions whose keys custody holds.
	Regions []RegionConfig
	// Logger receives refusals and failures, never keys. Nil discards them.
	Logger *slog.Logger
	// KeyCache bounds how many data keys custody keeps in memory once it
	// has unwrapped them, so that a key asked for again is not
	// decapsulated again (see Service.Unwrap). Zero means DefaultKeyCache;
	// a negative value keeps none.
	KeyCache int
	// Metrics, if set, counts the unwraps by region and outcome.
	Metrics *metrics.Custody
}

// RegionConfig is one region as custody sees it.
type RegionConfig struct {
	// Name is the region name.
	Name string
	// AccessLogVerifier checks the checkpoint signature of the region's
	// access log; its key name is the log's origin.
	AccessLogVerifier note.Verifier
	// WitnessPolicy is the quorum of cosignatures a proof's checkpoint
	// must meet: the supervisor's witness.
	WitnessPolicy *tlog.Policy
}

type region struct {
	RegionConfig
	key     *regionKey
	metrics *metrics.CustodyRegion
}

// Service is an open key-custody service. Its methods are safe for
// concurrent use.
type Service struct {
	regions map[string]*region
	counts  *counts
	keys    *keyCache
	logger  *slog.Logger
	// unknown counts the unwraps asked of regions custody does not hold.
	unknown *metrics.CustodyRegion
}

// Open opens the custody state in cfg.Dir, generating the key of every
// region that has none. Keys persist: a later Open with the same Dir has the
// same public keys.
func Open(cfg Config) (*Service, error) {
	if cfg.Dir == "" {
		return nil, errors.New("opening custody: no directory")
	}
	if len(cfg.Regions) == 0 {
		return nil, errors.New("opening custody: no regions")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("opening custody: %w", err)
	}
	cacheSize := cfg.KeyCache
	if cacheSize == 0 {
		cacheSize = DefaultKeyCache
	}
	s := &Service{regions: make(map[string]*region), keys: newKeyCache(cacheSize), logger: logger, unknown: cfg.Metrics.Region(metrics.UnknownRegion)}
	for _, rc := range cfg.Regions {
		switch {
		case !residency.ValidRegionName(rc.Name):
			return nil, fmt.Errorf("opening custody: invalid region name %q", rc.Name)
		case s.regions[rc.Name] != nil:
			return nil, fmt.Errorf("opening custody: region %s listed twice", rc.Name)
		case rc.AccessLogVerifier == nil:
			return nil, fmt.Errorf("opening custody: region %s has no access log verifier", rc.Name)
		case rc.WitnessPolicy == nil:
			// A nil policy would let the log alone vouch for an access:
			// the supervisor's cosignature is the point of custody.
			return nil, fmt.Errorf("opening custody: region %s has no witness policy", rc.Name)
		}
		k, err := loadOrCreateKey(cfg.Dir, rc.Name)
		if err != nil {
			return nil, fmt.Errorf("opening custody: %w", err)
		}
		s.regions[rc.Name] = &region{RegionConfig: rc, key: k, metrics: cfg.Metrics.Region(rc.Name)}
	}
	c, err := openCounts(context.Background(), filepath.Join(cfg.Dir, "counts.db"))
	if err != nil {
		return nil, fmt.Errorf("opening custody: %w", err)
	}
	s.counts = c
	return s, nil
}

// PublicKey returns the wrapping key of region, and false if custody holds
// no key for it.
func (s *Service) PublicKey(region string) (*PublicKey, bool) {
	r, ok := s.regions[region]
	if !ok {
		return nil, false
	}
	return r.key.pub, true
}

// Counts returns how many keys custody has unwrapped, by region and then by
// access-log index, as durably recorded.
func (s *Service) Counts() (map[string]map[uint64]int64, error) {
	m, err := s.counts.all(context.Background())
	if err != nil {
		return nil, fmt.Errorf("reading unwrap counts: %w", err)
	}
	return m, nil
}

// Ready returns nil when the unwrap counts' database answers a read:
// custody can count, and so unwrap. Its error names no file.
func (s *Service) Ready(ctx context.Context) error {
	if err := s.counts.ping(ctx); err != nil {
		return errors.New("the unwrap counts' database does not answer")
	}
	return nil
}

// Close zeroes the data keys custody keeps and closes the count database.
// Unwraps after Close fail with ErrUnavailable.
func (s *Service) Close() error {
	s.keys.close()
	return s.counts.close()
}
