package sqlite

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/internal/store"
	"github.com/vitrine-dev/vitrine/reputation"
	"github.com/vitrine-dev/vitrine/telemetry"
)

// Folding.
//
// Updating the aggregates of a batch's hashes in the batch's own transaction
// dirties a random page of each aggregate b-tree per distinct hash: about a
// thousand pages for a batch of 500 records with 300 distinct hashes,
// against some twenty for the records themselves, and SQLite writes every
// dirty page to the WAL at each commit. So PutBatch writes only the records,
// and keeps what they add to the aggregates in memory (pending), with the
// change sequence numbers they get; reads merge pending into what the
// database holds. Folding writes pending to the aggregate tables in key
// order, where the updates of thousands of batches share pages. It runs in
// the background once enough records are pending or some time has passed,
// and on Close.
//
// A fold takes pending as it is (s.folding) and starts a new one for the
// batches that follow; it writes the hashes in chunks of foldChunk, in
// order, each chunk in a transaction of its own, and lets the batches
// queued meanwhile have the writer between chunks, so that ingest does not
// stall for the whole fold. Reads merge the database, what of s.folding
// is not written yet, and the new pending. The remote aggregates follow,
// in chunks too, and the last transaction writes the peers' cursors and
// moves fold_state.record_id past the folded records.
//
// Nothing is lost in a crash: the records are durable, and Open folds the
// records after fold_state.record_id again, in one transaction. Those of a
// fold that was under way when the process died are partly folded already:
// each chunk records in fold_state the last record of the fold (target)
// and the last hash written (done_through), and Open leaves out the
// records up to target whose hash is no later than done_through. It
// numbers the changes it recovers after every number that can have been
// given out before the crash, which is at most one per record.
const (
	foldRecords       = 200_000 // pending records that start a fold
	foldInterval      = 2 * time.Second
	maxPendingRecords = 1_000_000 // PutBatch folds itself beyond this
	foldChunk         = 4096      // hashes, or remote aggregates, per fold transaction
)

// foldPolicy says when to fold; tests fold more often.
type foldPolicy struct {
	records    int           // pending records that start a fold
	interval   time.Duration // age of the oldest pending batch that starts one
	maxPending int           // pending records beyond which PutBatch folds itself
	chunk      int           // hashes, or remote aggregates, per transaction of a fold in the background
}

var defaultFoldPolicy = foldPolicy{foldRecords, foldInterval, maxPendingRecords, foldChunk}

// pending is what stored batches add to the aggregates, and what PutRemote
// gave, that is not yet folded into the database.
type pending struct {
	records int   // records in the pending batches
	lastID  int64 // id of the last record pending
	hashes  map[string]*delta
	sighted map[sighting]bool
	since   time.Time // when the first pending batch or remote aggregate was added

	// remote holds, by region and hash, the aggregates PutRemote gave, and
	// cursors each region's cursor with them; they are written together.
	remote  map[string]map[string]store.Aggregate
	cursors map[string]int64
	// remoteRows counts the entries of remote.
	remoteRows int
}

// empty reports whether nothing is pending.
func (p *pending) empty() bool { return len(p.hashes) == 0 && len(p.cursors) == 0 }

// due reports whether a fold should start under policy.
func (p *pending) due(policy foldPolicy) bool {
	return !p.empty() && (p.records >= policy.records || p.remoteRows >= policy.records ||
		time.Since(p.since) >= policy.interval)
}

type sighting struct{ pseudonym, sha256 string }

// delta is what pending batches add to one hash's aggregate.
type delta struct {
	sha256      string
	seq         int64 // the change sequence number of the last change
	prevalence  int64
	first, last int64 // unix microseconds
	detections  map[string]int64
	sighters    []string // the pseudonyms that sighted the hash for the first time
	ids         []int64  // the pending records of the hash, ascending
	// base is the hash's aggregate as the database held it, or as the
	// fold under way will leave it, when the hash became pending; its
	// SHA256 is empty if there was none. The hash's aggregate is base
	// plus the delta, so reads of pending hashes need not read the
	// database.
	base store.Aggregate
}

// state returns the hash's aggregate: the base plus what is pending.
// The sum is reputation.Merge, the one published to outsiders: counts
// saturate instead of wrapping.
func (d *delta) state() store.Aggregate {
	pending := reputation.Aggregate{SHA256: d.sha256, Prevalence: d.prevalence, Detections: d.detections,
		FirstSeen: fromMicro(d.first), LastSeen: fromMicro(d.last)}
	return store.Aggregate(reputation.Merge(reputation.Aggregate(d.base), pending))
}

func newPending() *pending {
	return &pending{hashes: make(map[string]*delta), sighted: make(map[sighting]bool),
		remote: make(map[string]map[string]store.Aggregate), cursors: make(map[string]int64)}
}

// addRemote records region's aggregates aggs and its cursor. Of several
// aggregates of one hash, the last counts.
func (p *pending) addRemote(region string, aggs []store.Aggregate, cursor int64) {
	if p.empty() {
		p.since = time.Now()
	}
	m := p.remote[region]
	if m == nil {
		m = make(map[string]store.Aggregate, len(aggs))
		p.remote[region] = m
	}
	for _, a := range aggs {
		if _, ok := m[a.SHA256]; !ok {
			p.remoteRows++
		}
		m[a.SHA256] = a
	}
	p.cursors[region] = cursor
}

// recordRef is a stored record's id and hash.
type recordRef struct {
	id     int64
	sha256 string
}

// add adds a batch of pseudonym, with the given records up to id lastID, with
// the given summary; sighted are the hashes the pseudonym had sighted
// before, which do not add to prevalence, and bases holds the aggregates
// of those of its hashes that were not pending before (see delta.base). The changed aggregates get change
// sequence numbers from *seq on, and *seq moves past them.
func (p *pending) add(pseudonym string, records []recordRef, hashes []hashSummary, dets []detectionCount, sighted map[string]bool, bases map[string]store.Aggregate, lastID int64, seq *int64) {
	if p.empty() {
		p.since = time.Now()
	}
	pseudonym = strings.Clone(pseudonym)
	for _, h := range hashes {
		d := p.hashes[h.sha256]
		if d == nil {
			// A copy, so that pending does not keep alive the request
			// body the hash may be a slice of.
			d = &delta{sha256: strings.Clone(h.sha256), first: h.first, last: h.last, base: bases[h.sha256]}
			p.hashes[d.sha256] = d
		}
		d.first, d.last = min(d.first, h.first), max(d.last, h.last)
		d.seq = *seq
		*seq++
		if !sighted[h.sha256] {
			d.prevalence++
			d.sighters = append(d.sighters, pseudonym)
			p.sighted[sighting{pseudonym, d.sha256}] = true
		}
	}
	for _, dc := range dets {
		d := p.hashes[dc.sha256]
		if d.detections == nil {
			d.detections = make(map[string]int64)
		}
		if _, ok := d.detections[dc.name]; !ok {
			dc.name = strings.Clone(dc.name)
		}
		d.detections[dc.name] += dc.count
	}
	p.lastID = max(p.lastID, lastID)
	for _, r := range records {
		d := p.hashes[r.sha256]
		d.ids = append(d.ids, r.id)
	}
	p.records += len(records)
}

// foldLocked folds. The caller holds the writer. If yield is set, it
// finishes the fold under way or, if none is, folds what is pending, and
// lets the writer go between transactions (see folder): another writer
// may finish the fold meanwhile. Otherwise it folds everything pending,
// the fold under way first, in one transaction each.
func (s *Store) foldLocked(ctx context.Context, yield bool) error {
	for {
		if s.folding == nil {
			s.pendMu.Lock()
			if s.pend.empty() {
				s.pendMu.Unlock()
				return nil
			}
			s.folding, s.pend = s.pend, newPending()
			s.pendMu.Unlock()
			s.plan = newFoldPlan(s.folding)
		}
		limit := s.policy.chunk
		if !yield {
			limit = 0 // the rest at once
		}
		last, err := s.foldStep(ctx, limit)
		if err != nil {
			// The fold stays under way; the next call resumes it.
			return fmt.Errorf("folding aggregates: %w", err)
		}
		if yield {
			if last {
				return nil
			}
			s.unlock()
			s.lock()
			if s.folding == nil {
				return nil // another writer finished it
			}
		}
	}
}

// A foldPlan is the order in which a fold writes s.folding: its hashes
// sorted, its remote aggregates sorted by hash and region, and how far it
// has come.
type foldPlan struct {
	shas       []string
	nextSha    int
	remote     []remoteRow
	nextRemote int
	lastID     int64 // the last record the fold covers
}

type remoteRow struct {
	region string
	a      store.Aggregate
}

func newFoldPlan(p *pending) *foldPlan {
	plan := &foldPlan{shas: make([]string, 0, len(p.hashes)), lastID: p.lastID}
	for h := range p.hashes {
		plan.shas = append(plan.shas, h)
	}
	slices.Sort(plan.shas)
	for region, m := range p.remote {
		for _, a := range m {
			plan.remote = append(plan.remote, remoteRow{region, a})
		}
	}
	slices.SortFunc(plan.remote, func(a, b remoteRow) int {
		if c := strings.Compare(a.a.SHA256, b.a.SHA256); c != 0 {
			return c
		}
		return strings.Compare(a.region, b.region)
	})
	return plan
}

// foldStep writes the next limit hashes or remote aggregates of the fold
// under way (all that remain if limit is 0) in one transaction, and
// reports whether that finished the fold. The caller holds the writer.
func (s *Store) foldStep(ctx context.Context, limit int) (last bool, err error) {
	plan, f := s.plan, s.folding
	shaEnd, remoteEnd := len(plan.shas), len(plan.remote)
	if limit > 0 {
		// A chunk of hashes or, once they are all written, of remote
		// aggregates.
		shaEnd = min(shaEnd, plan.nextSha+limit)
		if plan.nextSha < len(plan.shas) {
			remoteEnd = plan.nextRemote
		} else {
			remoteEnd = min(remoteEnd, plan.nextRemote+limit)
		}
	}
	shas := plan.shas[plan.nextSha:shaEnd]
	rows := plan.remote[plan.nextRemote:remoteEnd]
	last = shaEnd == len(plan.shas) && remoteEnd == len(plan.remote)

	var sights []sighting
	type det struct {
		sha256, name string
		n            int64
	}
	var dets []det
	for _, h := range shas {
		d := f.hashes[h]
		for _, ps := range d.sighters {
			sights = append(sights, sighting{ps, h})
		}
		names := make([]string, 0, len(d.detections))
		for name := range d.detections {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			dets = append(dets, det{h, name, d.detections[name]})
		}
	}
	var hashRecords []recordRef
	for _, h := range shas {
		for _, id := range f.hashes[h].ids {
			hashRecords = append(hashRecords, recordRef{id, h})
		}
	}
	slices.SortFunc(sights, func(a, b sighting) int {
		if c := strings.Compare(a.pseudonym, b.pseudonym); c != 0 {
			return c
		}
		return strings.Compare(a.sha256, b.sha256)
	})
	bySeq := slices.Clone(shas)
	slices.SortFunc(bySeq, func(a, b string) int { return cmp.Compare(f.hashes[a].seq, f.hashes[b].seq) })

	err = s.inTx(ctx, func() error {
		chunks := [][]chunk{
			chunkRows(upsertAggregates, len(shas), nil, func(args []any, i int) []any {
				d := f.hashes[shas[i]]
				return append(args, shas[i], d.prevalence, d.first, d.last, d.seq)
			}),
			chunkRows(insertSightings, len(sights), nil, func(args []any, i int) []any {
				return append(args, sights[i].pseudonym, sights[i].sha256)
			}),
			chunkRows(upsertDetections, len(dets), nil, func(args []any, i int) []any {
				return append(args, dets[i].sha256, dets[i].name, dets[i].n)
			}),
			chunkRows(insertChanges, len(bySeq), nil, func(args []any, i int) []any {
				return append(args, f.hashes[bySeq[i]].seq, bySeq[i])
			}),
			chunkRows(insertHashRecords, len(hashRecords), nil, func(args []any, i int) []any {
				return append(args, hashRecords[i].sha256, hashRecords[i].id)
			}),
			chunkRows(upsertRemote, len(rows), nil, func(args []any, i int) []any {
				a := &rows[i].a
				return append(args, a.SHA256, rows[i].region, a.Prevalence, a.FirstSeen.UnixMicro(), a.LastSeen.UnixMicro(), encodeDetections(a.Detections))
			}),
		}
		for _, cs := range chunks {
			if err := s.execChunks(ctx, cs); err != nil {
				return err
			}
		}
		switch {
		case last:
			for region, c := range f.cursors {
				if _, err := s.w.ExecContext(ctx, `INSERT INTO remote_cursors (region, cursor) VALUES (?, ?)
					ON CONFLICT (region) DO UPDATE SET cursor = excluded.cursor`, region, c); err != nil {
					return err
				}
			}
			if len(plan.shas) > 0 {
				_, err := s.w.ExecContext(ctx, `UPDATE fold_state SET record_id = ?, seq = ?, target = 0, done_through = ''`, f.lastID, s.nextSeq-1)
				return err
			}
		case len(shas) > 0:
			_, err := s.w.ExecContext(ctx, `UPDATE fold_state SET seq = ?, target = ?, done_through = ?`, s.nextSeq-1, f.lastID, shas[len(shas)-1])
			return err
		}
		return nil
	}, &s.pendMu, func() {
		// Written: from now on the database holds these, not s.folding.
		for _, h := range shas {
			s.foldedSeq = max(s.foldedSeq, f.hashes[h].seq)
			delete(f.hashes, h)
		}
		for _, r := range rows {
			delete(f.remote[r.region], r.a.SHA256)
		}
		plan.nextSha, plan.nextRemote = shaEnd, remoteEnd
		if last {
			s.folding, s.plan = nil, nil
		}
	})
	return last, err
}

// encodeDetections is detection counts as the remote_aggregates table
// keeps them: a JSON object.
func encodeDetections(d map[string]int64) string {
	if len(d) == 0 {
		return "{}"
	}
	b, err := json.Marshal(d)
	if err != nil {
		panic(err) // a map of strings to integers always encodes
	}
	return string(b)
}

// kickFolder asks the folder to fold soon.
func (s *Store) kickFolder() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// folder folds in the background until stop is closed. Between a fold's
// transactions it lets the writer go, so that batches queued meanwhile are
// stored.
func (s *Store) folder(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(max(s.policy.interval/4, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-s.kick:
		case <-tick.C:
		}
		s.lock()
		s.pendMu.RLock()
		due := s.folding != nil || s.pend.due(s.policy)
		s.pendMu.RUnlock()
		if !s.closed.Load() && due {
			// An error leaves the fold under way, to be resumed next
			// time; PutBatch fails once too much is pending.
			_ = s.foldLocked(context.Background(), true)
		}
		s.unlock()
	}
}

// recoverPending rebuilds pending from the records stored after the last
// fold, batch by batch, as PutBatch built it, leaving out what a fold that
// did not finish wrote; Open then folds it. The caller holds the writer.
func (s *Store) recoverPending(ctx context.Context) error {
	var from, seq, after, target int64
	var doneThrough string
	if err := s.w.QueryRowContext(ctx, `SELECT record_id, seq, target, done_through FROM fold_state`).Scan(&from, &seq, &target, &doneThrough); err != nil {
		return err
	}
	if err := s.w.QueryRowContext(ctx, `SELECT count(*) FROM records WHERE id > ?`, from).Scan(&after); err != nil {
		return err
	}
	s.nextSeq = seq + 1 + after
	if err := s.w.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM changes`).Scan(&s.foldedSeq); err != nil {
		return err
	}
	rows, err := s.w.QueryContext(ctx, `SELECT r.id, r.batch_pk, b.pseudonym, r.time, r.sha256, r.detection
		FROM records r JOIN batches b ON b.pk = r.batch_pk WHERE r.id > ? ORDER BY r.id`, from)
	if err != nil {
		return err
	}
	type batch struct {
		pk        int64
		pseudonym string
		lastID    int64
		recs      []telemetry.Record
		refs      []recordRef
	}
	var batches []*batch
	for rows.Next() {
		var id, pk, t int64
		var pseudonym, sha, det string
		if err := rows.Scan(&id, &pk, &pseudonym, &t, &sha, &det); err != nil {
			rows.Close()
			return err
		}
		if len(batches) == 0 || batches[len(batches)-1].pk != pk {
			batches = append(batches, &batch{pk: pk, pseudonym: pseudonym})
		}
		b := batches[len(batches)-1]
		b.lastID = id
		if id <= target && sha <= doneThrough {
			continue // written by a fold that did not finish
		}
		b.recs = append(b.recs, telemetry.Record{Time: fromMicro(t), SHA256: sha, Detection: det})
		b.refs = append(b.refs, recordRef{id, sha})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, b := range batches {
		hashes, dets := summarize(b.recs)
		bases := make(map[string]store.Aggregate)
		if err := s.lookupBases(ctx, hashes, bases); err != nil {
			return err
		}
		sighted, err := s.sighted(ctx, b.pseudonym, hashes, nil, bases)
		if err != nil {
			return err
		}
		s.pend.add(b.pseudonym, b.refs, hashes, dets, sighted, bases, b.lastID, &s.nextSeq)
	}
	return nil
}
