package client

import (
	"context"
	"fmt"

	tclient "github.com/transparency-dev/tessera/client"

	"github.com/vitrine-dev/vitrine/tlog"
)

// Entry reads the entry at index from the log's tiles, builds its C2SP
// tlog-proof of inclusion in the tree of cp (a checkpoint from
// [Log.Checkpoint]) from the log's hash tiles alone, and checks the proof
// against the entry's leaf hash, the log's key and its witness policy
// before it returns either: the entry returned is the entry proven, and
// the proof verifies offline for anyone who trusts the same key and
// policy.
func (l *Log) Entry(ctx context.Context, cp *tlog.Checkpoint, index uint64) ([]byte, *tlog.Proof, error) {
	if index >= cp.Size {
		return nil, nil, fmt.Errorf("%s: entry %d: the checkpoint has only %d entries", cp.Origin, index, cp.Size)
	}
	b, err := tclient.GetEntryBundle(ctx, l.Fetcher.ReadEntryBundle, index/256, cp.Size)
	if err != nil {
		return nil, nil, &tlog.FetchError{Path: fmt.Sprintf("entry bundle %d", index/256), Err: err}
	}
	if int(index%256) >= len(b.Entries) {
		return nil, nil, fmt.Errorf("%s: entry %d: its bundle holds %d entries: %w", cp.Origin, index, len(b.Entries), tlog.ErrTreeMismatch)
	}
	entry := b.Entries[index%256]
	hashes, err := tlog.InclusionProof(ctx, l.Fetcher, index, cp.Size)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: entry %d: %w", cp.Origin, index, err)
	}
	p := &tlog.Proof{Index: index, Hashes: hashes, Checkpoint: cp.Raw}
	if _, err := p.Verify(tlog.LeafHash(entry), l.Verifier, l.Policy); err != nil {
		return nil, nil, fmt.Errorf("%s: entry %d: %w", cp.Origin, index, err)
	}
	return entry, p, nil
}
