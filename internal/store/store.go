// Package store keeps one region's telemetry.
//
// A [Store] holds the region's records, split as package telemetry splits
// them: threat fields in one table, personal fields (the endpoint id, URL,
// path) in another keyed by the same record id, so that the access gateway
// can encrypt and gate the personal half without touching processing. Two
// implementations pass one conformance suite (storetest): SQLite, the
// embedded default, and PostgreSQL.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/vitrine-dev/vitrine/telemetry"
)

// ErrClosed is returned by a closed store.
var ErrClosed = errors.New("store closed")

// Batch is one accepted ingest batch, with what the region knows of its
// sender from the endpoint's token.
type Batch struct {
	// EndpointID is the sender's id (personal).
	EndpointID string
	// Pseudonym stands for the endpoint in processing: an HMAC of its id
	// under the region's pseudonymisation key. Aggregates count distinct
	// pseudonyms, never ids.
	Pseudonym string
	// Country is the endpoint's ISO 3166-1 alpha-2 country.
	Country string
	// BatchID is the endpoint's idempotency key for the batch.
	BatchID string
	// Received is when the region accepted the batch.
	Received time.Time
	Records  []telemetry.Record
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
	// transaction. It is idempotent per (EndpointID, BatchID): a batch
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
	// CountRecords returns how many records the store holds.
	CountRecords(ctx context.Context) (int64, error)
	// Close releases the store.
	Close() error
}
