package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vitrine-dev/vitrine/internal/store"
)

// migrations are the schema's versions: migrations[i] takes a database from
// version i to version i+1. Append only; never edit a step that has shipped.
//
// Tables are created in the connection's search_path, so that one database
// can hold several regions' stores in separate schemas. The threat half of
// a record is in records, the personal half in personal under the same id,
// sealed under its batch's data key (since version 3; before, in clear,
// with the endpoint id in batches as the idempotency key).
//
// There are no foreign keys: the store is the only writer, and it writes a
// batch's rows together in one transaction; PostgreSQL would check each
// row with a trigger, which costs more than the insert on the ingest path.
// Nor is there an index on records.batch_pk: a record's id is its batch's
// pk << 14 | its index in the batch (see recordIDBits).
var migrations = []string{
	// 1: records, batches, aggregates.
	`
CREATE TABLE batches (
	pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	endpoint_id text NOT NULL,
	batch_id text NOT NULL,
	pseudonym text NOT NULL,
	country text NOT NULL,
	received timestamptz NOT NULL,
	count integer NOT NULL,
	UNIQUE (endpoint_id, batch_id)
);
CREATE TABLE records (
	id bigint PRIMARY KEY,
	batch_pk bigint NOT NULL,
	time timestamptz NOT NULL,
	kind text NOT NULL,
	sha256 text NOT NULL,
	size bigint NOT NULL,
	detection text NOT NULL,
	product text NOT NULL,
	ruledb bigint NOT NULL
);
CREATE TABLE personal (
	record_id bigint PRIMARY KEY,
	endpoint_id text NOT NULL,
	url text NOT NULL,
	path text NOT NULL
);
CREATE TABLE sightings (
	pseudonym text NOT NULL,
	sha256 text NOT NULL,
	PRIMARY KEY (pseudonym, sha256)
);
CREATE TABLE aggregates (
	sha256 text PRIMARY KEY,
	prevalence bigint NOT NULL,
	first_seen timestamptz NOT NULL,
	last_seen timestamptz NOT NULL,
	seq bigint NOT NULL
);
CREATE UNIQUE INDEX aggregates_seq ON aggregates (seq);
CREATE SEQUENCE aggregates_seq_seq AS bigint;
CREATE TABLE detections (
	sha256 text NOT NULL,
	name text NOT NULL,
	count bigint NOT NULL,
	PRIMARY KEY (sha256, name)
);
CREATE TABLE remote_aggregates (
	sha256 text NOT NULL,
	region text NOT NULL,
	prevalence bigint NOT NULL,
	first_seen timestamptz NOT NULL,
	last_seen timestamptz NOT NULL,
	detections jsonb NOT NULL,
	PRIMARY KEY (sha256, region)
);
`,
	// 2: each peer's exchange cursor, written with its remote aggregates.
	`
CREATE TABLE remote_cursors (
	region text PRIMARY KEY,
	cursor bigint NOT NULL
);
`,
	// 3: the personal half sealed (package seal): batches keyed by
	// pseudonym, not endpoint id, with their wrapped data key; records
	// found by hash through an index. Personal halves stored in clear
	// before this version move to legacy_personal.
	`
ALTER TABLE batches DROP CONSTRAINT batches_endpoint_id_batch_id_key;
ALTER TABLE batches DROP COLUMN endpoint_id;
ALTER TABLE batches ADD COLUMN wrapped_key bytea;
ALTER TABLE batches ADD CONSTRAINT batches_pseudonym_batch_id_key UNIQUE (pseudonym, batch_id);
ALTER TABLE personal RENAME TO legacy_personal;
CREATE TABLE personal (
	record_id bigint PRIMARY KEY,
	sealed bytea NOT NULL
);
CREATE INDEX records_sha256 ON records (sha256, id);
`,
	// 4: relocations: a batch's sealed halves stay bound to the key id
	// they were sealed under when a relocation rewraps the key (NULL: the
	// wrapped key's own id), and a country's batches are found by index.
	`
ALTER TABLE batches ADD COLUMN key_id text;
CREATE INDEX batches_country ON batches (country, pk);
`,
}

// migrate brings the database to the last of steps, applying the missing
// ones in order in one transaction and recording the version reached in
// schema_version. Concurrent openers wait for each other on an advisory
// lock. It refuses a database whose version is beyond steps with
// store.ErrSchemaNewer.
func migrate(ctx context.Context, pool *pgxpool.Pool, steps []string, lockKey int64) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)"); err != nil {
			return err
		}
		var version int
		err := tx.QueryRow(ctx, "SELECT version FROM schema_version").Scan(&version)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if _, err := tx.Exec(ctx, "INSERT INTO schema_version (version) VALUES (0)"); err != nil {
				return err
			}
		case err != nil:
			return fmt.Errorf("reading version: %w", err)
		}
		if version > len(steps) {
			return fmt.Errorf("%w: the database is at version %d, this vitrine knows up to %d", store.ErrSchemaNewer, version, len(steps))
		}
		for v := version; v < len(steps); v++ {
			if _, err := tx.Exec(ctx, steps[v]); err != nil {
				return fmt.Errorf("to version %d: %w", v+1, err)
			}
		}
		_, err = tx.Exec(ctx, "UPDATE schema_version SET version = $1", len(steps))
		return err
	})
	if err != nil {
		return fmt.Errorf("migrating schema: %w", err)
	}
	return nil
}
