package witness

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/transparency-dev/formats/log"
	upstream "github.com/transparency-dev/witness/witness"
)

// specState is the upstream SQLite persistence with two corrections that
// bring the upstream witness's Update in line with c2sp.org/tlog-witness.
// Both act inside the persistence transaction, so the check-and-store stays
// atomic.
//
//   - For a log it never cosigned, the spec has the witness compare the old
//     size with zero. Upstream instead cosigns the first checkpoint whatever
//     the old size and proof; specState presents such a log as cosigned at
//     size 0 with the empty tree's root, so that upstream's ordinary checks
//     apply: old size above the checkpoint size is 400, any other nonzero
//     old size is 409 "0", a nonempty proof is 422.
//   - A checkpoint of the cosigned size with a different root must be
//     answered 409; upstream returns ErrRootMismatch, which its handler
//     answers 422 and which carries no size. specState turns it into a
//     forkError with the cosigned size.
type specState struct {
	upstream.LogStatePersistence
}

// Update runs f in a transaction over the stored checkpoint of origin, as
// upstream.LogStatePersistence requires, with the corrections above.
func (s specState) Update(ctx context.Context, origin string, f func([]byte) ([]byte, error)) error {
	return s.LogStatePersistence.Update(ctx, origin, func(cur []byte) ([]byte, error) {
		if cur == nil {
			cur = emptyCheckpoint(origin)
		}
		next, err := f(cur)
		if errors.Is(err, upstream.ErrRootMismatch) {
			var c log.Checkpoint
			if _, perr := c.Unmarshal(cur); perr != nil {
				return nil, fmt.Errorf("parsing stored checkpoint of %q: %w", origin, perr)
			}
			return nil, &forkError{size: c.Size}
		}
		return next, err
	})
}

// emptyCheckpoint is the unsigned checkpoint of the empty tree, whose root
// is the hash of the empty string (RFC 6962, Section 2.1).
func emptyCheckpoint(origin string) []byte {
	empty := sha256.Sum256(nil)
	return log.Checkpoint{Origin: origin, Size: 0, Hash: empty[:]}.Marshal()
}

// forkError reports a checkpoint for the size the witness last cosigned, with
// a different root: two views of the same log, one of which the witness
// vouched for.
type forkError struct {
	size uint64
}

func (e *forkError) Error() string {
	return fmt.Sprintf("checkpoint root differs from the root cosigned at size %d", e.size)
}
