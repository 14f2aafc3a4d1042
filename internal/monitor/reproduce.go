package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/rebuilder"
	"github.com/vitrine-dev/vitrine/rebuild"
	"github.com/vitrine-dev/vitrine/release"
)

// release-not-reproduced.
//
// Every release the monitor reads in a platform's release log waits for
// the verdicts of the rebuilders pinned for that platform: the monitor
// reads each rebuilder's index (GET <url>/rebuilds/), and each verdict on
// the release's entry is checked under the rebuilder's pinned key and must
// name the entry's index and digest. A failing verdict from any of them
// is a critical alert; a release that no rebuilder has reproduced within
// ReproduceWithin is one too. A release is done once every pinned
// rebuilder reproduced it, or once one did and ReproduceWithin passed
// without a failing verdict: until then a failing verdict from another
// rebuilder is still read.

// A Rebuilder is a rebuilder whose verdicts the monitor reads for one
// platform: its base URL (the prefix of /rebuilds/) and its public key,
// obtained from the rebuilder out of band.
type Rebuilder struct {
	Platform string
	URL      string
	Key      release.PublicKey
}

// releaseRow is a release waiting for its verdicts.
type releaseRow struct {
	platform, log, origin string
	index                 uint64
	name, version, digest string
	seen                  time.Time
	entry                 []byte
}

const releasesSchema = `
CREATE TABLE IF NOT EXISTS releases (
	platform TEXT NOT NULL,
	log TEXT NOT NULL,
	idx INTEGER NOT NULL,
	origin TEXT NOT NULL,
	name TEXT NOT NULL,
	version TEXT NOT NULL,
	digest TEXT NOT NULL,
	seen INTEGER NOT NULL,
	entry BLOB NOT NULL,
	done INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (platform, log, idx)
);`

// openReleases returns the releases of platform base still waiting.
func (s *store) openReleases(ctx context.Context, base string) ([]releaseRow, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT log, idx, origin, name, version, digest, seen, entry FROM releases WHERE platform = ? AND done = 0 ORDER BY idx`, base)
	if err != nil {
		return nil, fault.Mark(fault.ErrUnavailable, err)
	}
	defer rows.Close()
	var out []releaseRow
	for rows.Next() {
		r := releaseRow{platform: base}
		var idx, seen int64
		if err := rows.Scan(&r.log, &idx, &r.origin, &r.name, &r.version, &r.digest, &seen, &r.entry); err != nil {
			return nil, fault.Mark(fault.ErrUnavailable, err)
		}
		r.index, r.seen = uint64(idx), time.UnixMicro(seen)
		out = append(out, r)
	}
	return out, fault.Mark(fault.ErrUnavailable, rows.Err())
}

// maxRebuilderIndex bounds a rebuilder's index.
const maxRebuilderIndex = 16 << 20

// reproductions checks the releases of platform base that wait for
// verdicts, and returns the alerts of those that failed or timed out.
func (m *Monitor) reproductions(ctx context.Context, base string) ([]Alert, error) {
	var rbs []Rebuilder
	for _, r := range m.cfg.Rebuilders {
		if r.Platform == base {
			rbs = append(rbs, r)
		}
	}
	if len(rbs) == 0 {
		return nil, nil
	}
	open, err := m.store.openReleases(ctx, base)
	if err != nil || len(open) == 0 {
		return nil, err
	}
	// Each rebuilder's index, read once for every waiting release.
	indexes := make([]*rebuilder.Index, len(rbs))
	var errs []error
	for i, rb := range rbs {
		var idx rebuilder.Index
		if err := m.getJSON(ctx, strings.TrimSuffix(rb.URL, "/")+"/rebuilds/", maxRebuilderIndex, &idx); err != nil {
			errs = append(errs, fmt.Errorf("rebuilder %s: %w", rb.URL, err))
			continue
		}
		indexes[i] = &idx
	}
	var alerts []Alert
	var done []releaseRow
	for _, r := range open {
		reproduced, failed, ferrs := m.verdictsOn(ctx, rbs, indexes, r)
		errs = append(errs, ferrs...)
		i := r.index
		a := Alert{Rule: "release-not-reproduced", Severity: "critical", Platform: base, Log: r.log, Origin: r.origin, Index: &i,
			Time: m.cfg.Now().UTC(), Entry: entryText(r.entry), proven: r.entry}
		late := m.cfg.Now().Sub(r.seen) > m.cfg.ReproduceWithin
		switch {
		case failed != "":
			a.Detail = fmt.Sprintf("%s %s (release-log entry %d) was rebuilt and did not reproduce: %s", r.name, r.version, r.index, failed)
		case reproduced == len(rbs) || reproduced > 0 && late:
			// Every pinned rebuilder reproduced it, or one did and the
			// others said nothing in the time they had: done. Until
			// then a failing verdict from another is still read.
			done = append(done, r)
			continue
		case late:
			// Whatever the reason: no verdict, a rebuilder out of reach,
			// or verdicts that prove nothing.
			a.Detail = fmt.Sprintf("no pinned rebuilder has reproduced %s %s (release-log entry %d) within %s of the monitor reading it", r.name, r.version, r.index, m.cfg.ReproduceWithin)
			if len(ferrs) > 0 {
				a.Detail += "; " + errors.Join(ferrs...).Error()
			}
		default:
			continue
		}
		alerts = append(alerts, a)
		done = append(done, r)
	}
	// Each alert is proven on its own: a release whose proof the
	// platform withholds waits for the next pass, and holds no other back.
	var proven []Alert
	for _, a := range alerts {
		one := []Alert{a}
		f, cp, err := m.followedCheckpoint(ctx, base, a.Log)
		if err == nil && (f == nil || cp == nil) {
			err = errors.New("the release log is not followed in this run yet")
		}
		if err == nil {
			err = m.prove(ctx, f.log, cp.Raw, one)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("proving release-log entry %d: %w", *a.Index, err))
			done = slices.DeleteFunc(done, func(r releaseRow) bool { return r.index == *a.Index && r.log == a.Log })
			continue
		}
		proven = append(proven, one[0])
	}
	alerts = proven
	added, err := m.commit(ctx, alerts, "", nil, nil)
	if err == nil && len(done) > 0 {
		err = m.store.releasesDone(ctx, done)
	}
	return added, errors.Join(append(errs, err)...)
}

// verdictsOn checks every verdict the rebuilders list on r's entry. It
// returns how many rebuilders reproduced it, and the account of a failing
// verdict; a verdict that does not verify, or is about other bytes, is an
// error, not a verdict.
func (m *Monitor) verdictsOn(ctx context.Context, rbs []Rebuilder, indexes []*rebuilder.Index, r releaseRow) (reproduced int, failed string, errs []error) {
	for i, idx := range indexes {
		if idx == nil {
			continue
		}
		// The rebuilder's latest verdict on the entry, read once.
		var latest *rebuilder.Listed
		for j, l := range idx.Verdicts {
			if l.LogIndex == r.index && l.Name == r.name && l.Version == r.version {
				latest = &idx.Verdicts[j]
			}
		}
		for _, l := range []*rebuilder.Listed{latest} {
			if l == nil {
				continue
			}
			u, err := rebuilder.VerdictURL(rbs[i].URL, l.URL)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			env, err := m.get(ctx, u, 1<<20)
			if err != nil {
				errs = append(errs, fmt.Errorf("rebuilder %s: %w", rbs[i].URL, err))
				continue
			}
			v, err := rebuild.VerifyVerdict(ctx, env, rbs[i].Key)
			if err != nil {
				errs = append(errs, fmt.Errorf("rebuilder %s: the verdict on %s %s: %w", rbs[i].URL, r.name, r.version, err))
				continue
			}
			if v.Release.LogIndex != r.index || v.Release.Entry != r.digest {
				errs = append(errs, fmt.Errorf("rebuilder %s: the verdict listed for entry %d is about entry %d (%s), not %s", rbs[i].URL, r.index, v.Release.LogIndex, v.Release.Entry, r.digest))
				continue
			}
			if !v.Reproduced {
				why := "artifacts differ: " + strings.Join(v.Differ, ", ")
				if v.Error != "" {
					why = v.Error
				}
				return reproduced, fmt.Sprintf("rebuilder %s (%s) says: %s", v.Rebuilder, rbs[i].URL, why), errs
			}
			reproduced++
		}
	}
	return reproduced, "", errs
}

func (s *store) releasesDone(ctx context.Context, rows []releaseRow) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fault.Mark(fault.ErrUnavailable, err)
	}
	defer tx.Rollback()
	for _, r := range rows {
		if _, err := tx.ExecContext(ctx, `UPDATE releases SET done = 1 WHERE platform = ? AND log = ? AND idx = ?`, r.platform, r.log, int64(r.index)); err != nil {
			return fault.Mark(fault.ErrUnavailable, err)
		}
	}
	return fault.Mark(fault.ErrUnavailable, tx.Commit())
}

// get reads u with the monitor's client, at most limit bytes, following
// no redirect (a rebuilder's answers must come from the rebuilder).
func (m *Monitor) get(ctx context.Context, u string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	hc := *m.cfg.HTTPClient
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	var b json.RawMessage
	if err := client.Do(&hc, req, limit, &b); err != nil {
		return nil, err
	}
	return b, nil
}

func (m *Monitor) getJSON(ctx context.Context, u string, limit int64, v any) error {
	b, err := m.get(ctx, u, limit)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
