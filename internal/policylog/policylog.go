// Package policylog keeps the residency policies in the platform's policy
// log: it is the one place that signs a policy version, appends it, and
// waits until a checkpoint that meets the witness policy covers it, before
// anyone routes by it; and the one that reads the log back at start.
package policylog

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"github.com/vitrine-dev/vitrine/residency"
	"github.com/vitrine-dev/vitrine/tlog"
)

// Log is the policy log as a Keeper uses it (a logserver.Log).
type Log interface {
	Append(ctx context.Context, entry []byte) (uint64, error)
	AwaitWitnessed(ctx context.Context, index uint64) (*tlog.Checkpoint, error)
	Checkpoint(ctx context.Context) (*tlog.Checkpoint, error)
	Reader() tlog.Fetcher
}

// Keeper signs policies with Signer into Log, and reads them back with
// Verifier.
type Keeper struct {
	Log      Log
	Signer   note.Signer
	Verifier note.Verifier
	Logger   *slog.Logger
	// WitnessTimeout bounds the wait for a witnessed checkpoint (default
	// 30s).
	WitnessTimeout time.Duration
}

func (k *Keeper) logger() *slog.Logger {
	if k.Logger == nil {
		return slog.Default()
	}
	return k.Logger
}

// Append signs p, appends it to the log and returns once a witnessed
// checkpoint covers it: from then on anyone can prove it, and routing may
// follow it.
func (k *Keeper) Append(ctx context.Context, p *residency.Policy) error {
	entry, err := residency.Sign(p, k.Signer)
	if err != nil {
		return err
	}
	idx, err := k.Log.Append(ctx, entry)
	if err != nil {
		return fmt.Errorf("appending residency policy version %d: %w", p.Version, err)
	}
	wait := k.WitnessTimeout
	if wait <= 0 {
		wait = 30 * time.Second
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if _, err := k.Log.AwaitWitnessed(wctx, idx); err != nil {
		return fmt.Errorf("residency policy version %d is not in a witnessed checkpoint: %w", p.Version, err)
	}
	return nil
}

// Activate returns the policy routing must follow: want, once it is
// the latest version in the policy log. A new version is signed, appended
// and awaited in a witnessed checkpoint before it takes effect; a changed
// policy that keeps an old version number is refused.
func (k *Keeper) Activate(ctx context.Context, want *residency.Policy) (*residency.Policy, error) {
	latest, err := k.Latest(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the policy log: %w", err)
	}
	switch {
	case latest != nil && latest.Version == want.Version:
		if !bytes.Equal(latest.Marshal(), want.Marshal()) {
			return nil, fmt.Errorf("residency policy version %d in the configuration differs from the version %d in the policy log: give the new policy a new version", want.Version, latest.Version)
		}
		return latest, nil
	case latest != nil && latest.Version > want.Version:
		// A relocation made a newer version since the configuration
		// was written: the log decides.
		return latest, nil
	}
	if err := k.Append(ctx, want); err != nil {
		return nil, err
	}
	return want, nil
}

// Latest reads every entry of the policy log that a witnessed
// checkpoint covers and returns the policy with the highest version, or nil
// if there is none. An entry that is not a policy signed by the Verifier
// is reported to the Logger at Error level, for the supervisor's monitor, and skipped: an
// entry once logged cannot be taken back, and it must not keep the
// platform down, so the last valid policy stays in force. An error comes
// back only when the log cannot be read.
func (k *Keeper) Latest(ctx context.Context) (*residency.Policy, error) {
	cp, err := k.Log.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	size := cp.Size
	if size == 0 {
		return nil, nil
	}
	var latest *residency.Policy
	for bi := uint64(0); bi*256 < size; bi++ {
		b, err := client.GetEntryBundle(ctx, k.Log.Reader().ReadEntryBundle, bi, size)
		if err != nil {
			return nil, err
		}
		for i, e := range b.Entries {
			if !residency.IsPolicyEntry(e) {
				k.logger().ErrorContext(ctx, "policy log entry skipped: not a residency policy", "log", "policy", "index", bi*256+uint64(i), "reason", "the entry does not start with the policy header")
				continue
			}
			pol, err := residency.Open(e, k.Verifier)
			if err != nil {
				k.logger().ErrorContext(ctx, "policy log entry skipped: it does not verify", "log", "policy", "index", bi*256+uint64(i), "reason", err.Error())
				continue
			}
			if latest == nil || pol.Version > latest.Version {
				latest = pol
			}
		}
	}
	return latest, nil
}
