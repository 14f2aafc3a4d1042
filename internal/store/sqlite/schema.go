package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/vitrine-dev/vitrine/internal/store"
)

// migrations are the schema's versions: migrations[i] takes a database from
// version i to version i+1. Append only; never edit a step that has shipped.
//
// Times are unix microseconds, hashes 64 lowercase hex digits. The threat
// half of a record is in records, the personal half in personal under the
// same id, sealed under its batch's data key, whose wrapped form is in
// batches; nothing in the database holds an endpoint id, a URL or a path
// in clear (since version 4).
//
// The aggregates (aggregates, detections, sightings) are folded from the
// records in bulk (see fold.go); fold_state holds the last record folded,
// the last change sequence number given out and how far a fold under way
// has come. sightings is keyed by
// pseudonym first, so that one endpoint's new sightings land together.
// changes lists each fold's changed hashes by change sequence number, only
// ever appended to; a row whose number is not its aggregate's seq is
// stale. (An index on aggregates.seq would be simpler, but each change
// would delete the hash's old entry at a random place, which made folds
// seven times slower.)
//
// There are no foreign keys: the store is the only writer, and it writes a
// batch's rows together in one transaction; checking them would cost a
// lookup per row on the ingest path. Nor is there an index on
// records.batch_pk: a batch's records have consecutive ids, from the
// smallest id with that batch_pk.
var migrations = []string{
	// 1: records, batches, aggregates.
	`
CREATE TABLE batches (
	pk INTEGER PRIMARY KEY,
	endpoint_id TEXT NOT NULL,
	batch_id TEXT NOT NULL,
	pseudonym TEXT NOT NULL,
	country TEXT NOT NULL,
	received INTEGER NOT NULL,
	count INTEGER NOT NULL,
	UNIQUE (endpoint_id, batch_id)
);
CREATE TABLE records (
	id INTEGER PRIMARY KEY,
	batch_pk INTEGER NOT NULL,
	time INTEGER NOT NULL,
	kind TEXT NOT NULL,
	sha256 TEXT NOT NULL,
	size INTEGER NOT NULL,
	detection TEXT NOT NULL,
	product TEXT NOT NULL,
	ruledb INTEGER NOT NULL
);
CREATE TABLE personal (
	record_id INTEGER PRIMARY KEY,
	endpoint_id TEXT NOT NULL,
	url TEXT NOT NULL,
	path TEXT NOT NULL
);
CREATE TABLE sightings (
	pseudonym TEXT NOT NULL,
	sha256 TEXT NOT NULL,
	PRIMARY KEY (pseudonym, sha256)
) WITHOUT ROWID;
CREATE TABLE aggregates (
	sha256 TEXT PRIMARY KEY,
	prevalence INTEGER NOT NULL,
	first_seen INTEGER NOT NULL,
	last_seen INTEGER NOT NULL,
	seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE changes (
	seq INTEGER PRIMARY KEY,
	sha256 TEXT NOT NULL
);
CREATE TABLE detections (
	sha256 TEXT NOT NULL,
	name TEXT NOT NULL,
	count INTEGER NOT NULL,
	PRIMARY KEY (sha256, name)
) WITHOUT ROWID;
CREATE TABLE remote_aggregates (
	sha256 TEXT NOT NULL,
	region TEXT NOT NULL,
	prevalence INTEGER NOT NULL,
	first_seen INTEGER NOT NULL,
	last_seen INTEGER NOT NULL,
	detections TEXT NOT NULL,
	PRIMARY KEY (sha256, region)
) WITHOUT ROWID;
CREATE TABLE fold_state (
	record_id INTEGER NOT NULL,
	seq INTEGER NOT NULL
);
INSERT INTO fold_state VALUES (0, 0);
`,
	// 2: each peer's exchange cursor, written with its remote aggregates.
	`
CREATE TABLE remote_cursors (
	region TEXT PRIMARY KEY,
	cursor INTEGER NOT NULL
);
`,
	// 3: folds in several transactions (see fold.go).
	`
ALTER TABLE fold_state ADD COLUMN target INTEGER NOT NULL DEFAULT 0;
ALTER TABLE fold_state ADD COLUMN done_through TEXT NOT NULL DEFAULT '';
`,
	// 4: the personal half sealed (package seal): batches keyed by
	// pseudonym, not endpoint id, with their wrapped data key and their
	// first record; records found by hash through hash_records, which
	// folds fill. Personal halves stored in clear before this version
	// move to legacy_personal, to be sealed by a later version.
	`
CREATE TABLE batches_v4 (
	pk INTEGER PRIMARY KEY,
	pseudonym TEXT NOT NULL,
	batch_id TEXT NOT NULL,
	country TEXT NOT NULL,
	received INTEGER NOT NULL,
	count INTEGER NOT NULL,
	first_id INTEGER NOT NULL,
	wrapped_key BLOB,
	UNIQUE (pseudonym, batch_id)
);
INSERT INTO batches_v4 (pk, pseudonym, batch_id, country, received, count, first_id)
	SELECT b.pk, b.pseudonym, b.batch_id, b.country, b.received, b.count, coalesce(f.first_id, 0)
	FROM batches b LEFT JOIN (SELECT batch_pk, min(id) AS first_id FROM records GROUP BY batch_pk) f ON f.batch_pk = b.pk;
DROP TABLE batches;
ALTER TABLE batches_v4 RENAME TO batches;
ALTER TABLE personal RENAME TO legacy_personal;
CREATE TABLE personal (
	record_id INTEGER PRIMARY KEY,
	sealed BLOB NOT NULL
);
CREATE TABLE hash_records (
	sha256 TEXT NOT NULL,
	record_id INTEGER NOT NULL,
	PRIMARY KEY (sha256, record_id)
) WITHOUT ROWID;
INSERT INTO hash_records (sha256, record_id)
	SELECT sha256, id FROM records WHERE id <= (SELECT record_id FROM fold_state);
`,
	// 5: relocations: a batch's sealed halves stay bound to the key id
	// they were sealed under when a relocation rewraps the key (NULL: the
	// wrapped key's own id), and a country's batches are found by index.
	`
ALTER TABLE batches ADD COLUMN key_id TEXT;
CREATE INDEX batches_country ON batches (country, pk);
`,
}

// migrate brings the database on conn to the last of steps, applying the
// missing ones in order in one transaction and recording the version
// reached in schema_version. It refuses a database whose version is beyond
// steps with store.ErrSchemaNewer.
func migrate(ctx context.Context, conn *sql.Conn, steps []string) (err error) {
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("migrating schema: %w", err)
	}
	defer func() {
		if err != nil {
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	if _, err := conn.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"); err != nil {
		return fmt.Errorf("migrating schema: %w", err)
	}
	var version int
	err = conn.QueryRowContext(ctx, "SELECT version FROM schema_version").Scan(&version)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := conn.ExecContext(ctx, "INSERT INTO schema_version (version) VALUES (0)"); err != nil {
			return fmt.Errorf("migrating schema: %w", err)
		}
	case err != nil:
		return fmt.Errorf("migrating schema: reading version: %w", err)
	}
	if version > len(steps) {
		return fmt.Errorf("migrating schema: %w: the database is at version %d, this vitrine knows up to %d", store.ErrSchemaNewer, version, len(steps))
	}
	for v := version; v < len(steps); v++ {
		if _, err := conn.ExecContext(ctx, steps[v]); err != nil {
			return fmt.Errorf("migrating schema to version %d: %w", v+1, err)
		}
	}
	if _, err := conn.ExecContext(ctx, "UPDATE schema_version SET version = ?", len(steps)); err != nil {
		return fmt.Errorf("migrating schema: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("migrating schema: %w", err)
	}
	return nil
}
