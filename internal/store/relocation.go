package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/residency"
)

// BatchQuery selects the stored batches of one country, for a relocation.
type BatchQuery struct {
	Country string
	// After, when positive, selects batches whose PK is larger: the last
	// PK of one page gives the next.
	After int64
	// Limit is the most batches returned (1 to MaxBatches).
	Limit int
	// IDsOnly leaves out the records' contents: each batch comes with
	// its pseudonym, batch id and the ids of its records, which is what
	// deleting it takes.
	IDsOnly bool
}

// MaxBatches is the most batches one BatchQuery returns.
const MaxBatches = 1000

// StoredBatch is a batch as a store holds it, whole: what a relocation
// copies to another region's store.
type StoredBatch struct {
	// PK orders a store's batches; it is not carried to another store.
	PK int64
	// Batch has the threat halves and the sealed personal halves, with
	// Sealed.KeyID set.
	Batch Batch
	// IDs are the ids of the batch's records still stored, in order;
	// IDs[i] is the id of Batch.Records[i].
	IDs []int64
}

// BatchResult says what PutBatches did with one batch.
type BatchResult struct {
	// Stored is false when the batch (Pseudonym, BatchID) was stored
	// before; nothing was stored again.
	Stored bool
	// PK is the batch's PK in this store.
	PK int64
	// IDs are the ids of the batch's records in this store, in order.
	IDs []int64
}

// Relocator is what a store provides for relocations: reading a
// country's batches whole, writing many batches in one transaction, and
// deleting batches with everything they hold.
type Relocator interface {
	// Batches returns up to q.Limit batches of q.Country in PK order.
	Batches(ctx context.Context, q BatchQuery) ([]StoredBatch, error)
	// PutBatches stores the batches, each as PutBatch would (CheckBatch,
	// idempotent per (Pseudonym, BatchID), aggregates updated), in one
	// durable transaction.
	PutBatches(ctx context.Context, bs []*Batch) ([]BatchResult, error)
	// DeleteBatches deletes the batches with the given PKs: their rows,
	// their records and sealed halves. It returns how many records it
	// deleted; PKs it does not hold are skipped. Aggregates, which hold
	// no personal data, keep counting the records.
	DeleteBatches(ctx context.Context, pks []int64) (int64, error)
}

// CheckBatchQuery returns an error if q is not a query a store answers: a
// valid country, a non-negative After and a Limit from 1 to MaxBatches.
func CheckBatchQuery(q BatchQuery) error { return fault.Mark(fault.ErrInvalid, checkBatchQuery(q)) }

func checkBatchQuery(q BatchQuery) error {
	switch {
	case !residency.ValidCountry(q.Country):
		return fmt.Errorf("country %q is not an ISO 3166-1 alpha-2 code", q.Country)
	case q.After < 0:
		return errors.New("after is negative")
	case q.Limit < 1 || q.Limit > MaxBatches:
		return fmt.Errorf("limit %d is outside 1..%d", q.Limit, MaxBatches)
	}
	return nil
}
