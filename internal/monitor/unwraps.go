package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/custody"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/tlog"
)

// unreconciled-unwrap.
//
// Custody counts the data keys it released per access-log entry. Every
// count must be at an index that holds a granted access entry of that
// region whose action releases keys and which names keys (see
// custody.Reconcile): a count with no such entry is keys released that no
// logged access accounts for. The monitor reads custody's counts after
// each pass over a platform and checks each new or changed count against
// the entry, read and proven from the log it follows.

// A Custody is the supervisor's key custody of a platform: its base URL
// and the custodian's token, which reads its counts.
type Custody struct {
	Platform string
	URL      string
	Token    string
}

const unwrapsSchema = `
CREATE TABLE IF NOT EXISTS unwraps (
	platform TEXT NOT NULL,
	region TEXT NOT NULL,
	idx INTEGER NOT NULL,
	keys INTEGER NOT NULL,
	PRIMARY KEY (platform, region, idx)
);`

// reconcileUnwraps checks custody's new counts for platform base and
// returns the alerts of those that no logged access accounts for.
func (m *Monitor) reconcileUnwraps(ctx context.Context, base string) ([]Alert, error) {
	var raised []Alert
	var errs []error
	for _, c := range m.cfg.Custody {
		if c.Platform != base {
			continue
		}
		counts, err := custody.NewClient(c.URL, c.Token, m.cfg.HTTPClient).Counts(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("custody %s: %w", c.URL, err))
			continue
		}
		a, err := m.reconcileCounts(ctx, base, counts)
		raised = append(raised, a...)
		errs = append(errs, err)
	}
	return raised, errors.Join(errs...)
}

func (m *Monitor) reconcileCounts(ctx context.Context, base string, counts map[string]map[uint64]int64) ([]Alert, error) {
	checked, err := m.store.unwrapCounts(ctx, base)
	if err != nil {
		return nil, err
	}
	var alerts []Alert
	type row struct {
		region string
		index  uint64
		keys   int64
	}
	var done []row
	var errs []error
	work := 0
	for _, region := range slices.Sorted(maps.Keys(counts)) {
		name := "access-" + region
		f, cp, err := m.followedCheckpoint(ctx, base, name)
		if err != nil {
			return nil, err
		}
		for _, index := range slices.Sorted(maps.Keys(counts[region])) {
			n := counts[region][index]
			if checked[region+" "+fmt.Sprint(index)] == n {
				continue
			}
			// Each pass checks a bounded number of counts and keeps what
			// it checked: a backlog is worked off over passes.
			if work++; work > maxCountsPerPass {
				break
			}
			id := fmt.Sprintf("unwrap %s %s %d", base, region, index)
			// Custody unwraps for an entry once a witnessed checkpoint
			// holds it; the monitor may not have read that far yet. An
			// entry the log will not serve is an alert too, in time.
			var entry []byte
			var proof *tlog.Proof
			why := ""
			if f == nil || cp == nil || index >= cp.Size {
				why = "which the log's checkpoints have not reached"
			} else if entry, proof, err = f.log.Entry(ctx, cp, index); err != nil {
				why = "which the log does not serve with its proof (" + err.Error() + ")"
				errs = append(errs, fmt.Errorf("reading %s entry %d: %w", name, index, err))
			}
			if why != "" {
				alerts = append(alerts, m.outage(id, true, func(since time.Time) Alert {
					return Alert{Rule: "unreconciled-unwrap", Severity: "critical", Platform: base, Log: name,
						Detail: fmt.Sprintf("custody released %d keys for entry %d of %s, %s since %s", n, index, name, why, since.UTC().Format(time.RFC3339))}
				})...)
				continue
			}
			m.outage(id, false, nil) // resolved: forgotten
			rec, err := custody.Reconcile(map[string]map[uint64]int64{region: {index: n}}, func(string, uint64) ([]byte, error) { return entry, nil })
			if err != nil {
				return nil, err
			}
			if len(rec.Problems) > 0 {
				i := index
				alerts = append(alerts, Alert{Rule: "unreconciled-unwrap", Severity: "critical", Platform: base, Log: name, Origin: f.log.Origin(), Index: &i,
					Time: m.cfg.Now().UTC(), Entry: entryText(entry), Proof: string(proof.Marshal()),
					Detail: "custody's counts and the access log disagree: " + strings.Join(rec.Problems, "; ")})
			}
			done = append(done, row{region, index, n})
		}
	}
	added, err := m.commit(ctx, alerts, "", nil, nil)
	if err != nil {
		return nil, err
	}
	for _, r := range done {
		if err := m.store.unwrapChecked(ctx, base, r.region, r.index, r.keys); err != nil {
			return added, err
		}
	}
	return added, errors.Join(errs...)
}

// maxCountsPerPass bounds the custody counts one pass checks (each reads
// an entry and its proof).
const maxCountsPerPass = 2000

// followedCheckpoint returns the log name of platform base as this run
// follows it, and the checkpoint its follower last verified (nil, nil if
// it has not been followed yet).
func (m *Monitor) followedCheckpoint(ctx context.Context, base, name string) (*followed, *tlog.Checkpoint, error) {
	m.mu.Lock()
	var f *followed
	for _, byKey := range m.logs {
		for _, c := range byKey {
			if c.platform == base && c.name == name {
				f = c
			}
		}
	}
	m.mu.Unlock()
	if f == nil {
		return nil, nil, nil
	}
	b, err := m.store.state(ctx, f.key)
	if err != nil || b == nil {
		return f, nil, err
	}
	var st client.FollowState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, nil, err
	}
	if st.Checkpoint == nil {
		return f, nil, nil
	}
	cp, err := f.log.Kept(st.Checkpoint)
	return f, cp, err
}

func (s *store) unwrapCounts(ctx context.Context, base string) (map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT region, idx, keys FROM unwraps WHERE platform = ?`, base)
	if err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var region string
		var idx, keys int64
		if err := rows.Scan(&region, &idx, &keys); err != nil {
			return nil, fault.Mark(fault.ErrUnavailable, err)
		}
		out[region+" "+fmt.Sprint(idx)] = keys
	}
	return out, fault.Mark(fault.ErrUnavailable, rows.Err())
}

func (s *store) unwrapChecked(ctx context.Context, base, region string, index uint64, keys int64) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO unwraps (platform, region, idx, keys) VALUES (?, ?, ?, ?) ON CONFLICT (platform, region, idx) DO UPDATE SET keys = excluded.keys`,
		base, region, int64(index), keys)
	return fault.Mark(fault.ErrUnavailable, err)
}
