// Package witness is Vitrine's transparency log witness: it cosigns a log's
// checkpoint only if the checkpoint is consistent with every checkpoint it
// cosigned before for that log, so that a log cannot show different histories
// to different people without one of them holding proof.
//
// # Protocol
//
// [Witness.Handler] speaks c2sp.org/tlog-witness: POST add-checkpoint with an
// old size, a consistency proof and a signed checkpoint, answered with
// cosignature/v1 signature lines (200), or 400, 403, 404, 409 (with the
// cosigned size, Content-Type text/x.tlog.size) or 422 as the spec requires.
// Error answers other than 409 carry a plain-text message that says what is
// wrong. GET checkpoint/<origin> serves the latest checkpoint the witness
// cosigned for a log, for supervisors and monitors.
//
// # State
//
// The witness keeps its Ed25519 key and one SQLite database in its directory.
// Checking a checkpoint against the stored one and storing the new one happen
// in one SQLite transaction with synchronous=FULL, committed before the
// cosignature is returned: a 200 survives a crash, and two concurrent
// requests can never both move the same log forward from the same size.
//
// # Upstream
//
// The checks, the signing and the persistence are those of
// github.com/transparency-dev/witness. Where its add-checkpoint differs from
// the spec, this package corrects it (specState, Witness.addCheckpoint): a
// log never cosigned is treated as cosigned at size 0 rather than trusted on
// first use whatever the old size, a same-size checkpoint with a different
// root is a 409 rather than a 422, and bad signatures or malformed
// checkpoints are a 403 or 400 rather than a 500. TestUpstreamDeviations
// notices when upstream changes.
package witness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/transparency-dev/witness/persistence/sqlite"
	upstream "github.com/transparency-dev/witness/witness"
	"golang.org/x/mod/sumdb/note"
)

// Files in Config.Dir.
const (
	keyFile   = "witness.key"  // the signing key, mode 0600
	vkeyFile  = "witness.vkey" // the cosignature/v1 verifier key, for operators to hand out
	stateFile = "state.db"     // the latest cosigned checkpoint of every log
)

// ErrNoCheckpoint is returned by [Witness.Checkpoint] when the witness has
// cosigned no checkpoint for the origin.
var ErrNoCheckpoint = errors.New("no cosigned checkpoint")

// Config configures a witness.
type Config struct {
	// Dir holds the witness's state: witness.key (mode 0600), witness.vkey and
	// state.db. It is created if missing.
	Dir string
	// Name is the witness's key name, e.g. "vitrine.local/witness". It must
	// match the name of an existing key in Dir.
	Name string
	// Logs are the logs the witness trusts from the start.
	Logs []LogKey
	// Logger receives operational events; nil discards them. Secrets are
	// never logged.
	Logger *slog.Logger
}

// LogKey names a log the witness trusts.
type LogKey struct {
	// Origin is the first line of the log's checkpoints.
	Origin string
	// VKey is the log's Ed25519 signed-note verifier key; its key name is
	// Origin.
	VKey string
}

// Witness is a tlog-witness with durable state. Its methods are safe for
// concurrent use.
type Witness struct {
	name    string
	vkey    string
	logger  *slog.Logger
	core    *upstream.Witness
	closeDB func() error

	mu   sync.RWMutex
	logs map[string]trustedLog // by origin

	closeOnce sync.Once
	closeErr  error
}

type trustedLog struct {
	vkey     string
	verifier note.Verifier
}

// Open opens the witness whose state is in cfg.Dir. On first start it
// generates an Ed25519 cosignature/v1 key named cfg.Name and writes it to
// witness.key with mode 0600; later starts reuse it, and fail if its name is
// not cfg.Name. It fails if a log in cfg.Logs has a malformed key.
func Open(ctx context.Context, cfg Config) (*Witness, error) {
	if cfg.Dir == "" {
		return nil, errors.New("opening witness: no state directory")
	}
	if strings.ContainsAny(cfg.Dir, "?#") {
		// The SQLite driver takes the path as a URI; these would be cut off.
		return nil, fmt.Errorf("opening witness: state directory %q contains '?' or '#'", cfg.Dir)
	}
	if !isKeyName(cfg.Name) {
		return nil, fmt.Errorf("opening witness: name %q is not a key name (nonempty, no spaces, no '+')", cfg.Name)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("opening witness: %w", err)
	}
	signer, vkey, err := loadOrCreateKey(cfg.Dir, cfg.Name, logger)
	if err != nil {
		return nil, fmt.Errorf("opening witness: %w", err)
	}
	w := &Witness{
		name:   cfg.Name,
		vkey:   vkey,
		logger: logger,
		logs:   make(map[string]trustedLog),
	}
	for _, l := range cfg.Logs {
		if err := w.addLog(l); err != nil {
			return nil, fmt.Errorf("opening witness: %w", err)
		}
	}

	// One connection serialises the check-and-store transactions, so that
	// concurrent requests queue instead of failing with SQLITE_BUSY.
	db, closeDB, err := sqlite.New(ctx, sqlite.Opts{Path: filepath.Join(cfg.Dir, stateFile), MaxOpenConns: 1})
	if err != nil {
		return nil, fmt.Errorf("opening witness state: %w", err)
	}
	core, err := upstream.New(ctx, upstream.Opts{
		Persistence:    specState{db},
		Signers:        []note.Signer{signer},
		VerifierForLog: w.verifierForLog,
	})
	if err != nil {
		_ = closeDB()
		return nil, fmt.Errorf("opening witness: %w", err)
	}
	w.core, w.closeDB = core, closeDB
	// Logs added later with AddLog are logged one by one; a count here
	// ("logs=0" before four were trusted) misled more than it told.
	if len(cfg.Logs) > 0 {
		logger.Info("witness open", "name", w.name, "vkey", w.vkey, "logs", len(cfg.Logs))
	} else {
		logger.Info("witness open", "name", w.name, "vkey", w.vkey)
	}
	return w, nil
}

// isKeyName reports whether name can name a signed-note key.
func isKeyName(name string) bool {
	return name != "" && utf8.ValidString(name) && !strings.ContainsFunc(name, unicode.IsSpace) && !strings.Contains(name, "+")
}

// Name returns the witness's key name.
func (w *Witness) Name() string { return w.name }

// VKey returns the witness's cosignature/v1 verifier key, the key that
// verifies the signature lines it returns and that witness policies name.
func (w *Witness) VKey() string { return w.vkey }

// AddLog makes the witness trust the log from now on. Adding a log that is
// already trusted with the same key does nothing; adding an origin already
// trusted with another key is an error, since it would let a second key
// speak for the log. Trust lasts until w is closed: callers add their logs
// again on every start.
func (w *Witness) AddLog(ctx context.Context, l LogKey) error {
	if err := w.addLog(l); err != nil {
		return fmt.Errorf("adding log: %w", err)
	}
	w.logger.InfoContext(ctx, "witness trusts log", "origin", l.Origin)
	return nil
}

func (w *Witness) addLog(l LogKey) error {
	v, err := note.NewVerifier(l.VKey)
	if err != nil {
		return fmt.Errorf("log %q: verifier key: %w", l.Origin, err)
	}
	if v.Name() != l.Origin {
		return fmt.Errorf("log %q: verifier key is named %q, not the origin", l.Origin, v.Name())
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if cur, ok := w.logs[l.Origin]; ok {
		if cur.vkey != l.VKey {
			return fmt.Errorf("log %q is already trusted with another key", l.Origin)
		}
		return nil
	}
	w.logs[l.Origin] = trustedLog{vkey: l.VKey, verifier: v}
	return nil
}

// verifierForLog is the upstream witness's view of the trusted logs.
func (w *Witness) verifierForLog(_ context.Context, origin string) (note.Verifier, bool, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	l, ok := w.logs[origin]
	return l.verifier, ok, nil
}

// Checkpoint returns the latest checkpoint the witness cosigned for origin:
// the log's signed note with the witness's cosignature added. It returns
// ErrNoCheckpoint if there is none.
func (w *Witness) Checkpoint(ctx context.Context, origin string) ([]byte, error) {
	cp, err := w.core.GetCheckpoint(ctx, origin)
	if err != nil {
		return nil, fmt.Errorf("reading cosigned checkpoint of %q: %w", origin, err)
	}
	if cp == nil {
		return nil, fmt.Errorf("reading cosigned checkpoint of %q: %w", origin, ErrNoCheckpoint)
	}
	return cp, nil
}

// Ready returns nil when the witness's state database answers a read: the
// readiness of a witness in a process of its own. Its error names no file.
func (w *Witness) Ready(ctx context.Context) error {
	if _, err := w.core.GetCheckpoint(ctx, "vitrine.invalid/readiness"); err != nil {
		return errors.New("the witness's state database does not answer")
	}
	return nil
}

// Close closes the witness's database. Requests still being served fail.
// Closing twice returns the first result.
func (w *Witness) Close() error {
	w.closeOnce.Do(func() {
		if err := w.closeDB(); err != nil {
			w.closeErr = fmt.Errorf("closing witness state: %w", err)
		}
	})
	return w.closeErr
}
