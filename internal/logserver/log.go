// Package logserver runs Vitrine's transparency logs on Tessera.
//
// A [Log] is one C2SP tlog-tiles log stored by a Tessera storage driver —
// by default the embedded journaled tiles (package tilestore) under a
// directory, or any driver given as [Config.Storage], such as Tessera's
// MySQL driver (package logstore) — with an origin, an Ed25519 signed-note
// key and an optional C2SP tlog-policy of witnesses. Checkpoints are published only once the witness
// policy is met (fail closed): a checkpoint the witnesses did not cosign is
// never served.
//
// # Appending
//
// [Log.Append] returns an entry's index once the entry is durably sequenced
// (and, but on Tessera's AWS driver, which integrates sequenced entries once
// a second, integrated): it survives kill -9 and power loss. [Log.AwaitWitnessed]
// then waits until a published, witnessed checkpoint covers the entry, and
// [Log.Prove] builds a C2SP tlog-proof for it. Each published checkpoint is
// verified once however many wait for it, and proofs are built from a
// bounded set of recently read tiles.
//
// # Serving
//
// [Log.Handler] serves the tlog-tiles read API (checkpoint, tiles, entry
// bundles) and an authenticated POST /add in the shape Tessera's hammer
// speaks: the body is the entry, the answer its decimal index.
package logserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/keys"
	"github.com/vitrine-dev/vitrine/internal/metrics"
	"github.com/vitrine-dev/vitrine/internal/tilestore"
	"github.com/vitrine-dev/vitrine/tlog"
)

// Errors that callers act on.
var (
	// ErrUnavailable means the log could not take or publish the entry; the
	// caller must fail closed.
	ErrUnavailable = fault.New(fault.ErrUnavailable, "log unavailable")
	// ErrBusy means the log is pushing back under load; retry later.
	ErrBusy = fault.New(fault.ErrBusy, "log busy")
	// ErrEntryTooLarge means the entry is larger than the log accepts.
	ErrEntryTooLarge = errors.New("entry too large")
	// ErrEmptyEntry means the entry has no bytes.
	ErrEmptyEntry = fault.New(fault.ErrInvalid, "empty entry")
)

// MaxEntrySize is the largest entry a log accepts: the largest entry an
// entry bundle's uint16 length prefix can describe.
const MaxEntrySize = 1<<16 - 1

// Config describes one log.
//
// Batching follows load: a lone client's entry is written as soon as it
// arrives, and entries that arrive while a batch is being synced gather
// into the next one (see package tilestore).
type Config struct {
	// Dir holds the log: the signing key Dir/log.key (0600), the verifier
	// key Dir/log.vkey and, unless Storage is set, the journaled tiles
	// under Dir/storage.
	Dir string
	// Storage is the Tessera storage driver the log is built on: anything
	// with the method Appender(ctx, *tessera.AppendOptions)
	// (*tessera.Appender, tessera.LogReader, error), such as Tessera's own
	// drivers or *logstore.MySQL. Nil means the journaled tiles under
	// Dir/storage. The log owns it once Open succeeds (Close releases
	// it); if Open fails, the caller still does. A driver may also have
	// the methods of [StorageHealth] (readiness), MaxEntrySize() int and
	// MinCheckpointInterval() time.Duration.
	Storage tessera.Driver
	// Origin is the checkpoint origin line and the key name. It is fixed
	// when the log is created.
	Origin string
	// WitnessPolicy is a C2SP tlog-policy whose witnesses carry submission
	// URLs. Nil means no witness is required (quorum none).
	WitnessPolicy []byte
	// HTTPClient reaches the witnesses. Nil means http.DefaultClient.
	HTTPClient *http.Client
	// Logger receives operational messages. Nil means slog.Default().
	Logger *slog.Logger
	// CheckpointInterval is how often a new checkpoint is published while
	// the log grows (default 200ms, or the storage's minimum if higher:
	// 1s for Tessera's MySQL driver). Below the storage's minimum is an
	// error.
	CheckpointInterval time.Duration
	// WitnessTimeout bounds one round of witnessing (default 5s).
	WitnessTimeout time.Duration
	// BatchMaxSize bounds a sequencing batch (default 4096 entries).
	BatchMaxSize uint
	// Metrics, if set, is the log's metric set: appends, their latency
	// and failures, the checkpoint's age and size and the storage's
	// health at every scrape and, on the journaled tiles that the log
	// makes itself (Storage nil), batch sizes and the witnesses' latency.
	Metrics *metrics.Log
}

// Log is one open transparency log. Its methods are safe for concurrent use.
type Log struct {
	origin   string
	vkey     string
	verifier note.Verifier
	policy   *tlog.Policy
	logger   *slog.Logger

	appender *tessera.Appender
	reader   tessera.LogReader
	awaiter  *tessera.PublicationAwaiter
	cancel   context.CancelFunc

	// closeMu guards closed; inflight counts appends in progress, which
	// Close waits for.
	closeMu  sync.RWMutex
	closed   bool
	inflight sync.WaitGroup
	driver   StorageHealth
	maxEntry int

	// verifiedMu guards verified, the newest checkpoint that has verified:
	// the many waiters one publication wakes verify it once.
	verifiedMu sync.Mutex
	verified   *tlog.Checkpoint
	prover     *prover

	metrics  *metrics.Log
	unreport func()
	// seenMu guards seen and seenAt: the checkpoint state last read and
	// when it was first read, the age of a checkpoint no witness dated.
	seenMu sync.Mutex
	seen   []byte
	seenAt time.Time
}

// Open opens the log in cfg.Dir, creating it and its key on first use.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if cfg.Origin == "" {
		return nil, errors.New("opening log: no origin")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	policyText := cfg.WitnessPolicy
	if policyText == nil {
		policyText = []byte("quorum none\n")
	}
	policy, err := tlog.ParsePolicy(policyText)
	if err != nil {
		return nil, fmt.Errorf("opening log %s: witness policy: %w", cfg.Origin, err)
	}
	if cfg.Storage == nil {
		cfg.Storage = tilestore.New(tilestore.Config{Path: filepath.Join(cfg.Dir, "storage"), Logger: cfg.Logger,
			HTTPClient: timeWitnesses(cfg.HTTPClient, policy, cfg.Metrics), OnBatch: cfg.Metrics.Batch})
	}
	driver, ok := cfg.Storage.(appenderDriver)
	if !ok {
		return nil, fmt.Errorf("opening log %s: storage %T is not a Tessera appender driver", cfg.Origin, cfg.Storage)
	}
	minInterval := 100 * time.Millisecond
	if m, ok := cfg.Storage.(interface{ MinCheckpointInterval() time.Duration }); ok {
		minInterval = max(minInterval, m.MinCheckpointInterval())
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = max(200*time.Millisecond, minInterval)
	}
	if cfg.CheckpointInterval < minInterval {
		return nil, fmt.Errorf("opening log %s: checkpoint interval %v is below the storage's minimum %v", cfg.Origin, cfg.CheckpointInterval, minInterval)
	}
	maxEntry := MaxEntrySize
	if m, ok := cfg.Storage.(interface{ MaxEntrySize() int }); ok {
		maxEntry = min(maxEntry, m.MaxEntrySize())
	}
	health, ok := cfg.Storage.(StorageHealth)
	if !ok {
		health = alwaysHealthy{}
	}
	if cfg.WitnessTimeout == 0 {
		cfg.WitnessTimeout = 5 * time.Second
	}
	if cfg.BatchMaxSize == 0 {
		cfg.BatchMaxSize = 4096
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("opening log %s: %w", cfg.Origin, err)
	}
	signer, vkey, err := loadKey(cfg.Dir, cfg.Origin)
	if err != nil {
		return nil, fmt.Errorf("opening log %s: %w", cfg.Origin, err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("opening log %s: %w", cfg.Origin, err)
	}

	group, err := tessera.NewWitnessGroupFromPolicy(policyText)
	if err != nil {
		return nil, fmt.Errorf("opening log %s: witness policy (every witness needs a URL): %w", cfg.Origin, err)
	}

	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithCheckpointInterval(cfg.CheckpointInterval).
		WithCheckpointRepublishInterval(time.Minute).
		WithBatching(cfg.BatchMaxSize, time.Millisecond).
		WithPushback(1<<20).
		WithWitnesses(group, &tessera.WitnessOptions{Timeout: cfg.WitnessTimeout, FailOpen: false})
	// The driver's appender is used directly rather than through
	// tessera.NewAppender, whose per-append decorators (OpenTelemetry
	// attribute sets, a memoizing future) cost about a tenth of the CPU of
	// an append; Close below does what its terminator did.
	appender, reader, err := driver.Appender(bg, opts)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("opening log appender %s: %w", cfg.Origin, err)
	}
	l := &Log{
		origin:   cfg.Origin,
		vkey:     vkey,
		verifier: verifier,
		policy:   policy,
		logger:   cfg.Logger.With("log", cfg.Origin),
		appender: appender,
		reader:   reader,
		cancel:   cancel,
		driver:   health,
		maxEntry: maxEntry,
		prover:   newProver(reader, proofTiles),
		metrics:  cfg.Metrics,
	}
	l.awaiter = tessera.NewPublicationAwaiter(bg, reader.ReadCheckpoint, awaitPoll(cfg.CheckpointInterval))
	l.unreport = l.metrics.Report(l.state)
	return l, nil
}

// awaitPoll is how often the log reads its published checkpoint for
// AwaitWitnessed: a twentieth of the checkpoint interval, at least 10 ms.
// The awaiter reads it whether or not anyone waits, and on a remote store
// each read is a query (MySQL) or a GET (S3): every 10 ms, a platform's
// five logs would ask the database 500 times a second for checkpoints that
// change at most once a second each.
func awaitPoll(interval time.Duration) time.Duration {
	return max(10*time.Millisecond, interval/20)
}

// appenderDriver is the contract of Tessera's storage drivers that a log
// uses: tessera.NewAppender asks the same of them.
type appenderDriver interface {
	Appender(ctx context.Context, opts *tessera.AppendOptions) (*tessera.Appender, tessera.LogReader, error)
}

// StorageHealth is what a storage driver may report about itself, for
// [Log.Ready] and [Log.Health]; drivers without it count as always
// healthy, and their failures show only as failed appends.
type StorageHealth interface {
	// Health reports the storage's state.
	Health() tilestore.Health
	// OK is Health().OK(), possibly cheaper.
	OK() bool
	// Wait is called once the log has stopped the driver's context; it
	// waits for the driver's goroutines and releases its resources.
	Wait()
}

type alwaysHealthy struct{}

func (alwaysHealthy) Health() tilestore.Health { return tilestore.Health{State: tilestore.Healthy} }
func (alwaysHealthy) OK() bool                 { return true }
func (alwaysHealthy) Wait()                    {}

// LoadOrCreateKey returns the verifier key of the log in dir, creating the
// log's signing key on first use. A witness must trust the log before the
// log opens: opening publishes a first checkpoint, which needs its
// cosignature.
func LoadOrCreateKey(dir, origin string) (vkey string, err error) {
	_, vkey, err = loadKey(dir, origin)
	return vkey, err
}

func loadKey(dir, origin string) (note.Signer, string, error) {
	return keys.LoadOrCreateSigner(filepath.Join(dir, "log.key"), filepath.Join(dir, "log.vkey"), origin)
}

// Origin returns the log's checkpoint origin.
func (l *Log) Origin() string { return l.origin }

// VKey returns the log's signed-note verifier key.
func (l *Log) VKey() string { return l.vkey }

// Verifier returns the log's signed-note verifier.
func (l *Log) Verifier() note.Verifier { return l.verifier }

// Policy returns the witness policy every published checkpoint meets.
func (l *Log) Policy() *tlog.Policy { return l.policy }

// Reader returns read access to the log's published resources.
func (l *Log) Reader() tlog.Fetcher { return l.reader }

// NextIndex returns the index the next entry will have: every index
// below it is sequenced, if not yet in a checkpoint.
func (l *Log) NextIndex(ctx context.Context) (uint64, error) { return l.reader.NextIndex(ctx) }

// Append adds entry to the log and returns its index once the entry is
// durably sequenced (see the package documentation). It returns ErrEmptyEntry or
// ErrEntryTooLarge for bad entries, ErrBusy under pushback, and
// ErrUnavailable when storage fails (an *UnavailableError, with a
// RetryAfter, while the storage is broken and recovering).
func (l *Log) Append(ctx context.Context, entry []byte) (uint64, error) {
	switch {
	case len(entry) == 0:
		l.metrics.AppendFailed(metrics.AppendInvalid)
		return 0, ErrEmptyEntry
	case len(entry) > l.maxEntry:
		l.metrics.AppendFailed(metrics.AppendInvalid)
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrEntryTooLarge, len(entry), l.maxEntry)
	}
	l.closeMu.RLock()
	if l.closed {
		l.closeMu.RUnlock()
		l.metrics.AppendFailed(metrics.AppendUnavailable)
		return 0, fmt.Errorf("appending to %s: %w: log closed", l.origin, ErrUnavailable)
	}
	l.inflight.Add(1)
	l.closeMu.RUnlock()
	defer l.inflight.Done()

	start := time.Now()
	idx, err := l.appender.Add(ctx, tessera.NewEntry(entry))()
	if err != nil {
		if errors.Is(err, tessera.ErrPushback) {
			l.metrics.AppendFailed(metrics.AppendBusy)
			return 0, fmt.Errorf("appending to %s: %w", l.origin, ErrBusy)
		}
		l.metrics.AppendFailed(metrics.AppendUnavailable)
		if errors.Is(err, tilestore.ErrBroken) {
			if h := l.Health(); !h.OK() {
				return 0, fmt.Errorf("appending: %w", &UnavailableError{Log: l.origin, Health: h})
			}
			return 0, fmt.Errorf("appending to %s: %w: %v", l.origin, ErrUnavailable, err)
		}
		// The store logs its failures (at most one line per interval
		// when every batch fails); the caller gets the error.
		return 0, fmt.Errorf("appending to %s: %w: %v", l.origin, ErrUnavailable, err)
	}
	l.metrics.Appended(time.Since(start))
	return idx.Index, nil
}

// AwaitWitnessed waits until a published checkpoint covers index and returns
// it, verified under the log's key and witness policy. It returns ctx's error
// if ctx ends first, and ErrUnavailable if the published checkpoint does not
// verify.
func (l *Log) AwaitWitnessed(ctx context.Context, index uint64) (*tlog.Checkpoint, error) {
	done := func() (tessera.Index, error) { return tessera.Index{Index: index}, nil }
	_, raw, err := l.awaiter.Await(ctx, done)
	if err != nil {
		return nil, fmt.Errorf("awaiting checkpoint for %s index %d: %w", l.origin, index, err)
	}
	cp, err := l.verifyCheckpoint(raw)
	if err != nil {
		return nil, fmt.Errorf("awaiting checkpoint for %s index %d: %w: %v", l.origin, index, ErrUnavailable, err)
	}
	return cp, nil
}

// verifyCheckpoint verifies raw under the log's key and witness policy, or
// returns a copy of the checkpoint that raw, byte for byte, verified as
// before: the verification depends on nothing else, so it is done once per
// publication rather than once per waiter. Waiters woken together wait for
// the first of them to verify.
func (l *Log) verifyCheckpoint(raw []byte) (*tlog.Checkpoint, error) {
	l.verifiedMu.Lock()
	defer l.verifiedMu.Unlock()
	if v := l.verified; v != nil && bytes.Equal(v.Raw, raw) {
		return cloneCheckpoint(v), nil
	}
	cp, err := l.policy.VerifyCheckpoint(raw, l.verifier)
	if err != nil {
		return nil, err
	}
	// A waiter woken by an older publication may come late: keep the
	// newest, which the waiters still to come will have.
	if l.verified == nil || cp.Size >= l.verified.Size {
		l.verified = cp
	}
	return cloneCheckpoint(cp), nil
}

// cloneCheckpoint returns a copy of c that shares no memory with it, so that
// callers may change what they get.
func cloneCheckpoint(c *tlog.Checkpoint) *tlog.Checkpoint {
	d := *c
	d.Hash = bytes.Clone(c.Hash)
	d.Extensions = slices.Clone(c.Extensions)
	d.Cosigners = slices.Clone(c.Cosigners)
	d.CosignedAt = maps.Clone(c.CosignedAt)
	d.Raw = bytes.Clone(c.Raw)
	return &d
}

// Prove waits until index is covered by a witnessed checkpoint and returns
// a C2SP tlog-proof of its inclusion. It builds the same proof as ProveAt
// from the log's tiles, but keeps recently read tiles (a bounded number)
// for the proofs that follow, which mostly need the same ones.
func (l *Log) Prove(ctx context.Context, index uint64) (*tlog.Proof, error) {
	cp, err := l.AwaitWitnessed(ctx, index)
	if err != nil {
		return nil, err
	}
	return l.prover.proveAt(ctx, cp, index)
}

// ProveAt builds the tlog-proof of index in the tree of checkpoint cp from
// the tiles that f serves.
func ProveAt(ctx context.Context, f tlog.Fetcher, cp *tlog.Checkpoint, index uint64) (*tlog.Proof, error) {
	if index >= cp.Size {
		return nil, fmt.Errorf("proving index %d: checkpoint has only %d entries", index, cp.Size)
	}
	pb, err := client.NewProofBuilder(ctx, cp.Size, f.ReadTile)
	if err != nil {
		return nil, fmt.Errorf("proving index %d: %w", index, err)
	}
	hashes, err := pb.InclusionProof(ctx, index)
	if err != nil {
		return nil, fmt.Errorf("proving index %d: %w", index, err)
	}
	return &tlog.Proof{Index: index, Hashes: hashes, Checkpoint: cp.Raw}, nil
}

// Checkpoint returns the latest published checkpoint, verified.
func (l *Log) Checkpoint(ctx context.Context) (*tlog.Checkpoint, error) {
	raw, err := l.reader.ReadCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint of %s: %w", l.origin, err)
	}
	return l.verifyCheckpoint(raw)
}

// Close stops taking appends, waits for those in progress, waits (until
// ctx ends) for a witnessed checkpoint covering every acknowledged entry,
// then stops the log's goroutines and releases its directory. Entries are
// durable once acknowledged whatever happens here; the wait only saves
// readers from waiting for the next start to see them in a checkpoint.
func (l *Log) Close(ctx context.Context) error {
	l.closeMu.Lock()
	already := l.closed
	l.closed = true
	l.closeMu.Unlock()
	if already {
		return nil
	}
	l.unreport()
	l.inflight.Wait()
	var err error
	// NextIndex, not IntegratedSize: a driver may acknowledge entries once
	// sequenced and integrate them later (Tessera's AWS driver).
	if size, serr := l.reader.NextIndex(ctx); serr == nil && size > 0 {
		if _, werr := l.AwaitWitnessed(ctx, size-1); werr != nil {
			err = fmt.Errorf("closing log %s: last entries not yet in a witnessed checkpoint: %w", l.origin, werr)
		}
	}
	l.cancel()
	l.driver.Wait()
	return err
}
