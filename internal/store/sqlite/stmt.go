package sqlite

import (
	"context"
	"fmt"
	"math/bits"
	"strings"
)

// stmtKind names a multi-row statement. Each is prepared for chunks of a
// power of two rows up to maxChunk, so that a writer holds at most
// log2(maxChunk)+1 statements of each kind.
type stmtKind int

const (
	insertRecords stmtKind = iota
	insertPersonal
	upsertAggregates
	insertSightings
	upsertDetections
	upsertRemote
	insertChanges
	insertHashRecords
	deleteHashRecords
)

const maxChunk = 256

type stmtSpec struct {
	// slots are the leading parameters shared by every row, in head;
	// cols are each row's own, in row.
	slots, cols int
	// head and tail enclose the rows. Parameters are anonymous: SQLite
	// looks numbered ones up by a linear search, for each one bound.
	head, tail string
	// row is a row's VALUES tuple; a %d in it becomes the row's index in
	// the chunk, column1 of the VALUES table.
	row string
}

var specs = [...]stmtSpec{
	insertRecords: {slots: 2, cols: 7,
		head: `INSERT INTO records (id, batch_pk, time, kind, sha256, size, detection, product, ruledb)
			SELECT ?+column1, ?, column2, column3, column4, column5, column6, column7, column8 FROM (VALUES `,
		row:  "(%d,?,?,?,?,?,?,?)",
		tail: ")"},
	insertPersonal: {slots: 1, cols: 1,
		head: `INSERT INTO personal (record_id, sealed)
			SELECT ?+column1, column2 FROM (VALUES `,
		row:  "(%d,?)",
		tail: ")"},
	insertHashRecords: {cols: 2,
		head: "INSERT INTO hash_records (sha256, record_id) VALUES ",
		row:  "(?,?)",
		tail: " ON CONFLICT DO NOTHING"},
	deleteHashRecords: {cols: 2,
		head: "DELETE FROM hash_records WHERE (sha256, record_id) IN (VALUES ",
		row:  "(?,?)",
		tail: ")"},
	upsertAggregates: {cols: 5,
		head: "INSERT INTO aggregates (sha256, prevalence, first_seen, last_seen, seq) VALUES ",
		row:  "(?,?,?,?,?)",
		tail: ` ON CONFLICT (sha256) DO UPDATE SET
			prevalence = prevalence + excluded.prevalence,
			first_seen = min(first_seen, excluded.first_seen),
			last_seen = max(last_seen, excluded.last_seen),
			seq = excluded.seq`},
	insertSightings: {cols: 2,
		head: "INSERT INTO sightings (pseudonym, sha256) VALUES ",
		row:  "(?,?)",
		tail: " ON CONFLICT DO NOTHING"},
	upsertDetections: {cols: 3,
		head: "INSERT INTO detections (sha256, name, count) VALUES ",
		row:  "(?,?,?)",
		tail: " ON CONFLICT (sha256, name) DO UPDATE SET count = count + excluded.count"},
	insertChanges: {cols: 2,
		head: "INSERT INTO changes (seq, sha256) VALUES ",
		row:  "(?,?)"},
	upsertRemote: {cols: 6,
		head: "INSERT INTO remote_aggregates (sha256, region, prevalence, first_seen, last_seen, detections) VALUES ",
		row:  "(?,?,?,?,?,?)",
		tail: ` ON CONFLICT (sha256, region) DO UPDATE SET
			prevalence = excluded.prevalence,
			first_seen = excluded.first_seen,
			last_seen = excluded.last_seen,
			detections = excluded.detections`},
}

func (spec *stmtSpec) sql(rows int) string {
	var sb strings.Builder
	sb.WriteString(spec.head)
	for k := range rows {
		if k > 0 {
			sb.WriteByte(',')
		}
		if strings.Contains(spec.row, "%d") {
			fmt.Fprintf(&sb, spec.row, k)
		} else {
			sb.WriteString(spec.row)
		}
	}
	sb.WriteString(spec.tail)
	return sb.String()
}

// chunkRows splits n rows into chunks of power-of-two sizes, largest
// first, each with its own copy of slots followed by the rows' arguments
// that row appends.
func chunkRows(kind stmtKind, n int, slots []any, row func(args []any, i int) []any) []chunk {
	spec := &specs[kind]
	if len(slots) != spec.slots {
		slots = make([]any, spec.slots)
	}
	var chunks []chunk
	for i := 0; i < n; {
		size := min(maxChunk, 1<<(bits.Len(uint(n-i))-1))
		args := make([]any, 0, spec.slots+size*spec.cols)
		args = append(args, slots...)
		for j := i; j < i+size; j++ {
			args = row(args, j)
		}
		chunks = append(chunks, chunk{kind: kind, first: i, args: args})
		i += size
	}
	return chunks
}

type stmtKey struct {
	kind stmtKind
	rows int
}

// execChunks runs each chunk's statement on the writer, which the caller
// holds. It checks ctx before each but lets none be interrupted: SQLite
// rolls back the whole transaction when a statement is.
func (s *Store) execChunks(ctx context.Context, chunks []chunk) error {
	run := context.WithoutCancel(ctx)
	for _, c := range chunks {
		if err := ctx.Err(); err != nil {
			return err
		}
		spec := &specs[c.kind]
		rows := (len(c.args) - spec.slots) / spec.cols
		k := stmtKey{c.kind, rows}
		st := s.stmts[k]
		if st == nil {
			var err error
			if st, err = s.w.PrepareContext(run, spec.sql(rows)); err != nil {
				return fmt.Errorf("preparing statement %d×%d: %w", c.kind, rows, err)
			}
			s.stmts[k] = st
		}
		if _, err := st.ExecContext(run, c.args...); err != nil {
			return err
		}
	}
	return nil
}
