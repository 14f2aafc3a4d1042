package center

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/client"
	"github.com/vitrine-dev/vitrine/internal/atomicfile"
	"github.com/vitrine-dev/vitrine/internal/relocate"
	"github.com/vitrine-dev/vitrine/residency"
)

// Relocation is a relocation as the logs show it: the entries the access
// logs hold for its job, each proven, and what relocate.Verify finds of
// them with the policy log's versions (docs/design/relocation.md).
type Relocation struct {
	Job     string `json:"job"`
	Country string `json:"country"`
	Name    string `json:"name,omitempty"` // the country's
	From    string `json:"from"`
	To      string `json:"to"`
	// Policy is the version the entries say moved the country; Moved
	// and Before its entry and the one before it in the policy log, if
	// it holds them.
	Policy uint64  `json:"policy"`
	Moved  *uint64 `json:"moved_index,omitempty"`
	Before *uint64 `json:"before_index,omitempty"`
	Chunks int     `json:"chunks"`
	// Records left the source, Received arrived at the destination,
	// Deleted were deleted at the source: as the entries count them.
	Records  int64  `json:"records"`
	Received int64  `json:"received"`
	Deleted  int64  `json:"deleted"`
	Digest   string `json:"digest,omitempty"`
	Complete bool   `json:"complete"`
	// Verified: every check of relocate.Verify passed on the proven
	// entries; Problems lists those that did not.
	Verified bool              `json:"verified"`
	Problems []string          `json:"problems"`
	Entries  []RelocationEntry `json:"entries"`
	// Datasets are the source's and the destination's dataset
	// commitments just before the relocation's first entry in their log
	// and just after its last: the records each region said it held,
	// every country's, before and after.
	Datasets []DatasetCounts `json:"datasets"`
}

// DatasetCounts is a region's commitments around a relocation, each an
// entry of its access log, proven; absent if the log holds none there.
type DatasetCounts struct {
	Region string         `json:"region"`
	Before *CommitmentRef `json:"before,omitempty"`
	After  *CommitmentRef `json:"after,omitempty"`
}

// CommitmentRef is a dataset commitment: how many records the region
// held, by its entry in the access log.
type CommitmentRef struct {
	Log   string    `json:"log"`
	Index uint64    `json:"index"`
	Time  time.Time `json:"time"`
	Count int64     `json:"count"`
}

// RelocationEntry is one access-log entry of a relocation, proven in the
// log's checkpoint.
type RelocationEntry struct {
	Log    string `json:"log"`
	Index  uint64 `json:"index"`
	Action string `json:"action"`
	// What is the entry's part: the chunk's range of source batches,
	// or "summary".
	What  string `json:"what"`
	Count int64  `json:"count"`
}

// ReadLog is an access log as far as the Center has read it for
// relocations.
type ReadLog struct {
	Name string `json:"name"`
	Size uint64 `json:"size"`
}

// relocState is one access log's relocation entries found so far and the
// follower's state they were read to.
type relocState struct {
	Follow      *client.FollowState `json:"follow"`
	Entries     []relocEntry        `json:"entries"`
	Commitments []relocEntry        `json:"commitments"`
}

type relocEntry struct {
	Index uint64 `json:"index"`
	Entry string `json:"entry"`
}

// isRelocationEntry reports whether an access record belongs to a
// relocation, as docs/design/relocation.md has them written; Verify
// decides whether the relocation holds up.
func isRelocationEntry(r *access.Record) bool {
	return strings.HasPrefix(r.Resource.Query, "relocation ") || r.Justification.Code == "RELOCATION"
}

// relocationJob returns the job an entry names, from its query's job=
// field, or its request id.
func relocationJob(r *access.Record) string {
	for _, f := range strings.Fields(r.Resource.Query) {
		if job, ok := strings.CutPrefix(f, "job="); ok {
			return job
		}
	}
	return r.Request
}

// relocationEntries follows every access log the discovery document names
// under the pins kept in Dir, from where the Center stopped before (kept
// in Dir/relocations), and returns each log's relocation entries and
// telemetry dataset commitments, proven, with the sizes read to. Every
// entry of each log is read once, over all calls.
func (c *Center) relocationEntries(ctx context.Context) (map[string]*relocState, []ReadLog, error) {
	dir := filepath.Join(c.cfg.Dir, "relocations")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	d, err := client.FetchDiscovery(ctx, c.cfg.HTTPClient, c.cfg.Platform)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errPlatform, err)
	}
	pins, _, err := client.TrustOnFirstUse(client.PinsPath(filepath.Join(c.cfg.Dir, "pins"), c.cfg.Platform), c.cfg.Platform, d)
	if err != nil {
		return nil, nil, err
	}
	found, read := map[string]*relocState{}, []ReadLog{}
	for _, dl := range d.Logs {
		if !strings.HasPrefix(dl.Name, "access-") {
			continue
		}
		if pins.LogKeys[dl.Name] != dl.VKey {
			return nil, nil, fmt.Errorf("log %s: not a pinned log", dl.Name)
		}
		l, err := d.OpenLog(dl.Name, []byte(pins.WitnessPolicy), c.cfg.HTTPClient)
		if err != nil {
			return nil, nil, fmt.Errorf("log %s: %w", dl.Name, err)
		}
		path := filepath.Join(dir, url.PathEscape(l.Origin()+" "+l.KeyHash())+".json")
		st := &relocState{}
		if b, err := os.ReadFile(path); err == nil {
			if err := json.Unmarshal(b, st); err != nil {
				return nil, nil, fmt.Errorf("log %s: the relocation entries kept: %w", dl.Name, err)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, nil, err
		}
		f, err := client.NewFollower(l, st.Follow)
		if err != nil {
			return nil, nil, fmt.Errorf("log %s: %w", dl.Name, err)
		}
		// Saved with the follower's state every reportChunk entries:
		// a long first read goes on from there.
		for {
			n := 0
			cp, err := f.Update(ctx, func(i uint64, entry []byte) error {
				n++
				switch access.EntryKind(entry) {
				case access.KindAccess:
					if r, err := access.Parse(entry); err == nil && isRelocationEntry(r) {
						st.Entries = append(st.Entries, relocEntry{Index: i, Entry: string(entry)})
					}
				case access.KindCommitment:
					if cm, err := access.ParseCommitment(entry); err == nil && "access-"+cm.Region == dl.Name && cm.Dataset == "telemetry" {
						st.Commitments = append(st.Commitments, relocEntry{Index: i, Entry: string(entry)})
					}
				}
				if n >= reportChunk {
					return client.ErrPause
				}
				return nil
			})
			if err != nil && !errors.Is(err, client.ErrPause) {
				return nil, nil, fmt.Errorf("log %s: %w", dl.Name, err)
			}
			if n > 0 || st.Follow == nil {
				fs := f.State()
				st.Follow = &fs
				b, merr := json.Marshal(st)
				if merr != nil {
					return nil, nil, merr
				}
				if werr := atomicfile.Write(path, b, 0o600); werr != nil {
					return nil, nil, werr
				}
			}
			if err == nil {
				read = append(read, ReadLog{Name: dl.Name, Size: cp.Size})
				break
			}
		}
		found[dl.Name] = st
	}
	return found, read, nil
}

// relocations checks every relocation the access logs' entries name
// against the policy log's verified versions (policies, with their
// indexes in the policy log), newest first.
func relocations(found map[string]*relocState, policies []*residency.Policy, at map[uint64]uint64) []Relocation {
	// Each job is checked with its own entries only: a page with many
	// relocations checks each entry once, not once per relocation.
	evidence := map[string]*relocate.Evidence{}
	byJob := map[string][]RelocationEntry{}
	var order []string
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range found {
			if !yield(k) {
				return
			}
		}
	}) {
		region := strings.TrimPrefix(name, "access-")
		for _, e := range found[name].Entries {
			r, err := access.Parse([]byte(e.Entry))
			if err != nil {
				continue // kept because it parsed: the format did not change under us
			}
			job := relocationJob(r)
			ev := evidence[job]
			if ev == nil {
				ev = &relocate.Evidence{Policies: policies, Access: map[string][]*access.Record{}}
				evidence[job] = ev
			}
			ev.Access[region] = append(ev.Access[region], r)
			if _, ok := byJob[job]; !ok {
				order = append(order, job)
			}
			re := RelocationEntry{Log: name, Index: e.Index, Action: r.Action, Count: r.Resource.Count}
			fields := map[string]string{}
			for _, f := range strings.Fields(r.Resource.Query) {
				k, v, _ := strings.Cut(f, "=")
				fields[k] = v
			}
			if _, ok := fields["summary"]; ok {
				// A summary counts in its query: records=<n>.
				re.What = "summary"
				re.Count, _ = strconv.ParseInt(fields["records"], 10, 64)
			} else {
				re.What = "batches " + fields["batches"]
			}
			byJob[job] = append(byJob[job], re)
		}
	}
	out := []Relocation{}
	for _, job := range order {
		rel := Relocation{Job: job, Entries: byJob[job], Problems: []string{}, Datasets: []DatasetCounts{}}
		a, err := relocate.Verify(evidence[job], job)
		if a != nil {
			rel.Country, rel.From, rel.To, rel.Policy = a.Country, a.From, a.To, a.Policy
			rel.Chunks, rel.Records, rel.Received, rel.Deleted = a.Chunks, a.Records, a.DestRecords, a.Deleted
			rel.Digest, rel.Complete = a.Digest, a.Complete
			rel.Name, _ = residency.CountryName(a.Country)
			if i, ok := at[a.Policy]; ok {
				rel.Moved = &i
			}
			if i, ok := at[a.Policy-1]; ok && a.Policy > 0 {
				rel.Before = &i
			}
		}
		if err != nil {
			rel.Problems = strings.Split(err.Error(), "; ")
		}
		rel.Verified = err == nil && a != nil && a.Complete
		if a != nil {
			// The source's entries first, then the destination's.
			slices.SortStableFunc(rel.Entries, func(x, y RelocationEntry) int {
				return cmp.Compare(b2i(x.Log != "access-"+a.From), b2i(y.Log != "access-"+a.From))
			})
			for _, region := range []string{a.From, a.To} {
				rel.Datasets = append(rel.Datasets, around(found["access-"+region], region, rel.Entries))
			}
		}
		out = append(out, rel)
	}
	// Newest first, as the policy versions: by the version that moved
	// the country.
	slices.SortStableFunc(out, func(a, b Relocation) int {
		if a.Policy != b.Policy {
			return cmp.Compare(b.Policy, a.Policy)
		}
		return strings.Compare(a.Job, b.Job)
	})
	return out
}

// around returns region's commitments just before the first of entries
// in its log and just after the last.
func around(st *relocState, region string, entries []RelocationEntry) DatasetCounts {
	dc := DatasetCounts{Region: region}
	if st == nil {
		return dc
	}
	name := "access-" + region
	var first, last uint64
	seen := false
	for _, e := range entries {
		if e.Log != name {
			continue
		}
		if !seen || e.Index < first {
			first = e.Index
		}
		if !seen || e.Index > last {
			last = e.Index
		}
		seen = true
	}
	if !seen {
		return dc
	}
	for _, e := range st.Commitments {
		cm, err := access.ParseCommitment([]byte(e.Entry))
		if err != nil {
			continue
		}
		ref := &CommitmentRef{Log: name, Index: e.Index, Time: cm.Time, Count: cm.Count}
		switch {
		case e.Index < first:
			dc.Before = ref // in log order: the last one before wins
		case e.Index > last && dc.After == nil:
			dc.After = ref
		}
	}
	return dc
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
