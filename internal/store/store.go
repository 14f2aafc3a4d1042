// Package store keeps one region's telemetry.
//
// A [Store] holds the region's records, split as package telemetry splits
// them: threat fields in one table, personal fields (the endpoint id, URL,
// path) in another keyed by the same record id, sealed under per-batch data
// keys that only custody can unwrap (package seal), so that processing
// never needs them and reading them always leaves an access-log entry. Two
// implementations pass one conformance suite (storetest): SQLite, the
// embedded default, and PostgreSQL.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/telemetry"
)

// ErrClosed is returned by a closed store. It is of kind
// fault.ErrUnavailable: the request may work against the store that
// replaces it.
var ErrClosed = fault.New(fault.ErrUnavailable, "store closed")

// Errors. Every error a Store returns has a kind (package fault), so that
// callers and httpapi.Fail can act on it without knowing the engine:
// fault.ErrInvalid for a batch, query or page the Check functions refuse
// (nothing was done), fault.ErrUnavailable for the engine failing (a
// database down, a disk full or failing, a closed store: the same call may
// work later), and a context's error as it came. Implementations check
// their input with the Check functions and pass every other error through
// [Classify].

// Classify gives *errp the kind fault.ErrUnavailable if it has no kind and
// is not context.Canceled: a store's exported methods defer it, so that an
// engine's errors (SQL, I/O), which have no kind, reach callers as
// unavailability.
func Classify(errp *error) {
	var caller *CallerError
	if *errp == nil || errors.Is(*errp, context.Canceled) || errors.As(*errp, &caller) {
		return
	}
	*errp = fault.Mark(fault.ErrUnavailable, *errp)
}

// CallerError is an error returned by a caller's function (RecordRefs'
// f, through RefPager), which Classify leaves as it is: errors.Is and
// errors.As find the caller's error in it.
type CallerError struct{ Err error }

func (e *CallerError) Error() string { return e.Err.Error() }
func (e *CallerError) Unwrap() error { return e.Err }

// Batch is one accepted ingest batch, with what the region knows of its
// sender from the endpoint's token. It holds no personal field in clear:
// the endpoint stands as its pseudonym, and the records' URLs and paths
// travel sealed (see package seal); a store refuses a record whose URL or
// path is set.
type Batch struct {
	// Pseudonym stands for the endpoint: an HMAC of its id under the
	// deployment's pseudonymisation key. Aggregates count distinct
	// pseudonyms; (Pseudonym, BatchID) is the idempotency key.
	Pseudonym string
	// Country is the endpoint's ISO 3166-1 alpha-2 country.
	Country string
	// BatchID is the endpoint's idempotency key for the batch.
	BatchID string
	// Received is when the region accepted the batch.
	Received time.Time
	// Records are the threat halves of the records.
	Records []telemetry.Record
	// Sealed is the personal half of the records.
	Sealed Sealed
}

// Sealed is the personal half of a batch's records, encrypted.
type Sealed struct {
	// WrappedKey is the batch's data key wrapped to the region's custody
	// key; its id (custody.KeyID) binds the sealed halves to the batch.
	WrappedKey []byte
	// KeyID is the key id the sealed halves are bound to (seal.Binding):
	// that of the wrapped key the batch was sealed under, which stays the
	// same when a relocation rewraps the data key for another region.
	// Empty means seal.KeyID(WrappedKey).
	KeyID string
	// Records[i] is record i's personal fields sealed under the data key.
	Records [][]byte
}

// RecordQuery selects stored records: by hash, by endpoint (its
// pseudonym), or both, optionally within a time range. At least one of
// SHA256 and Pseudonym is set.
type RecordQuery struct {
	SHA256    string
	Pseudonym string
	// From and To bound the records' time: From <= time < To. Zero means
	// unbounded.
	From, To time.Time
	// After, when positive, selects only records with a larger id: the
	// last id of one page gives the next.
	After int64
	// Limit is the most records returned (at most MaxRecords; 0 means
	// MaxRecords).
	Limit int
}

// MaxRecords is the most records one query returns.
const MaxRecords = 10_000

// StoredRecord is a record as the store holds it: the threat half in
// clear, the personal half sealed under its batch's data key.
type StoredRecord struct {
	// ID identifies the record in its store: positive, and never given
	// to another record, even once this one is deleted.
	ID        int64
	Pseudonym string
	Country   string
	BatchID   string
	Received  time.Time
	// Record has the threat fields; URL and Path are empty.
	Record     telemetry.Record
	WrappedKey []byte
	// KeyID is the key id Sealed is bound to (see Sealed.KeyID); empty
	// means seal.KeyID(WrappedKey).
	KeyID  string
	Sealed []byte
}

// RecordRef is what a dataset commitment (see access.Commitment) covers of
// one stored record.
type RecordRef struct {
	ID int64
	// SHA256 is the hash of the file the record reports, 64 lower-case
	// hex digits.
	SHA256 string
	// Time is the record's time, to the microsecond, in UTC.
	Time time.Time
}

// Aggregate is what a region knows of one file hash, with no personal data:
// it is what regions exchange.
type Aggregate struct {
	SHA256 string
	// Prevalence is the number of distinct endpoints (pseudonyms) that
	// reported the hash.
	Prevalence int64
	// Detections counts reports per detection name.
	Detections map[string]int64
	FirstSeen  time.Time
	LastSeen   time.Time
}

// Store is one region's telemetry store. Implementations are safe for
// concurrent use. Writes are durable once they return: a nil error from
// PutBatch means the batch survives kill -9 and power loss.
type Store interface {
	// PutBatch stores b and updates the aggregates of its hashes in one
	// transaction. It is idempotent per (Pseudonym, BatchID): a batch
	// already stored is not stored again, and PutBatch reports
	// stored=false.
	PutBatch(ctx context.Context, b *Batch) (stored bool, err error)
	// Aggregates returns the aggregates of the given hashes; hashes the
	// store has never seen are absent from the map.
	Aggregates(ctx context.Context, sha256s []string) (map[string]Aggregate, error)
	// ChangedAggregates returns, in order, up to limit aggregates changed
	// after cursor, and the cursor to pass next time. Cursor 0 starts from
	// the beginning.
	ChangedAggregates(ctx context.Context, cursor int64, limit int) ([]Aggregate, int64, error)
	// PutRemote records the aggregates another region reported, replacing
	// what that region reported before for the same hashes, together with
	// the cursor the region gave with them (see ChangedAggregates). Global
	// reflects them once PutRemote returns; they become durable with
	// the cursor, at once or a little later, but never apart: after a
	// crash, RemoteCursor gives a cursor from which pulling again restores
	// whatever was not yet durable.
	PutRemote(ctx context.Context, region string, aggs []Aggregate, cursor int64) error
	// RemoteCursor returns the cursor of region's last durable PutRemote,
	// or 0 if there was none.
	RemoteCursor(ctx context.Context, region string) (int64, error)
	// Global returns, per hash, the merge of the local aggregate and every
	// other region's: prevalences and detection counts add up (an endpoint
	// belongs to one region only), first seen is the earliest, last seen
	// the latest. Hashes nobody has seen are absent.
	Global(ctx context.Context, sha256s []string) (map[string]Aggregate, error)
	// Records returns the records q selects, in id order, at most
	// q.Limit of them, and whether there were more.
	Records(ctx context.Context, q RecordQuery) (recs []StoredRecord, more bool, err error)
	// DeleteRecords deletes the records with the given ids, both halves,
	// and returns how many it deleted; ids it does not hold are skipped.
	// Aggregates, which hold no personal data, keep counting them. A
	// deleted record's id is never given to another record.
	DeleteRecords(ctx context.Context, ids []int64) (int64, error)
	// RecordRefs reads the refs of the stored records from one snapshot
	// of the store and hands them to f in id order, in pages of at most
	// pageSize refs (1 to MaxRecords; 0 means MaxRecords). f must not keep
	// a page: the store reuses its array. An error from f stops the read
	// and is returned, wrapped.
	//
	// The snapshot holds every record whose PutBatch returned before
	// RecordRefs was called, and none that a DeleteRecords which returned
	// before then deleted. through bounds it: every ref's id is at most
	// through, and every record stored after the snapshot, by a PutBatch
	// under way meanwhile or a later one, has a larger id. So no record
	// with an id at most through can appear after the snapshot; such
	// records can only be deleted. through never goes back from one call
	// to the next, deletions notwithstanding. A dataset commitment relies
	// on this.
	RecordRefs(ctx context.Context, pageSize int, f func(page []RecordRef) error) (through int64, err error)
	// CountRecords returns how many records the store holds.
	CountRecords(ctx context.Context) (int64, error)
	// Close releases the store.
	Close() error
}

// CheckBatch returns an error if b is not a batch a store may take: one
// without a pseudonym or batch id, with a record without a hash, with a
// personal field in clear, or without a sealed half for every record.
// Stores call it first in PutBatch.
func CheckBatch(b *Batch) error { return fault.Mark(fault.ErrInvalid, checkBatch(b)) }

func checkBatch(b *Batch) error {
	switch {
	case b.Pseudonym == "":
		return errors.New("no pseudonym")
	case b.BatchID == "":
		return errors.New("no batch id")
	case len(b.Sealed.WrappedKey) == 0 && len(b.Records) > 0:
		return errors.New("no wrapped data key")
	case len(b.Sealed.Records) != len(b.Records):
		return fmt.Errorf("%d sealed personal halves for %d records", len(b.Sealed.Records), len(b.Records))
	}
	for i := range b.Records {
		r := &b.Records[i]
		switch {
		case r.SHA256 == "":
			return fmt.Errorf("record %d has no sha256", i)
		case r.URL != "" || r.Path != "":
			return fmt.Errorf("record %d has a personal field in clear", i)
		case len(b.Sealed.Records[i]) == 0:
			return fmt.Errorf("record %d has no sealed personal half", i)
		}
	}
	return nil
}

// CheckQuery returns q with its limit set (MaxRecords if 0), or an error
// if q selects by neither hash nor endpoint or its limit is out of range.
func CheckQuery(q RecordQuery) (RecordQuery, error) {
	q, err := checkQuery(q)
	return q, fault.Mark(fault.ErrInvalid, err)
}

func checkQuery(q RecordQuery) (RecordQuery, error) {
	switch {
	case q.SHA256 == "" && q.Pseudonym == "":
		return q, errors.New("a query names a sha256, an endpoint, or both")
	case q.After < 0:
		return q, fmt.Errorf("after %d is negative", q.After)
	case q.Limit < 0 || q.Limit > MaxRecords:
		return q, fmt.Errorf("limit %d is outside 0..%d", q.Limit, MaxRecords)
	case !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To):
		return q, errors.New("the time range is empty: from is not before to")
	}
	if q.Limit == 0 {
		q.Limit = MaxRecords
	}
	return q, nil
}

// CheckPageSize returns the page size RecordRefs uses for pageSize
// (MaxRecords if 0), or an error if pageSize is out of range.
func CheckPageSize(pageSize int) (int, error) {
	n, err := checkPageSize(pageSize)
	return n, fault.Mark(fault.ErrInvalid, err)
}

func checkPageSize(pageSize int) (int, error) {
	switch {
	case pageSize < 0 || pageSize > MaxRecords:
		return 0, fmt.Errorf("page size %d is outside 0..%d", pageSize, MaxRecords)
	case pageSize == 0:
		return MaxRecords, nil
	}
	return pageSize, nil
}

// MaxRemoteCount bounds every count a peer region reports: far above any
// real prevalence or detection count (2^53, the largest integer every
// JSON reader keeps exactly), and far enough below 2^63 that the local
// sums built on them cannot overflow.
const MaxRemoteCount = 1 << 53

// CheckRemote returns an error if aggs, which region reported, are not
// aggregates a store may take: no region, an aggregate without a hash, or
// a count that is negative or over [MaxRemoteCount] (a peer's counts were
// once taken as they came, and a sum over them wrapped in one store and
// failed in the other). Stores call it first in PutRemote.
func CheckRemote(region string, aggs []Aggregate) error {
	return fault.Mark(fault.ErrInvalid, checkRemote(region, aggs))
}

func checkRemote(region string, aggs []Aggregate) error {
	if region == "" {
		return errors.New("no region")
	}
	for i, a := range aggs {
		if a.SHA256 == "" {
			return fmt.Errorf("aggregate %d has no sha256", i)
		}
		if a.Prevalence < 0 || a.Prevalence > MaxRemoteCount {
			return fmt.Errorf("aggregate %d (%s): prevalence %d is outside 0..%d", i, a.SHA256, a.Prevalence, int64(MaxRemoteCount))
		}
		for name, n := range a.Detections {
			if n < 0 || n > MaxRemoteCount {
				return fmt.Errorf("aggregate %d (%s): detection %q counted %d, outside 0..%d", i, a.SHA256, name, n, int64(MaxRemoteCount))
			}
		}
	}
	return nil
}
