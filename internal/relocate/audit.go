package relocate

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/vitrine-dev/vitrine/access"
	"github.com/vitrine-dev/vitrine/residency"
)

// Evidence is what an auditor reads from the logs to check a relocation:
// every residency policy in the policy log (verified), and every access
// record of the source's and the destination's access logs, each read
// from a checkpoint that meets the witness policy.
type Evidence struct {
	Policies []*residency.Policy
	// Access holds each region's access records, in log order.
	Access map[string][]*access.Record
}

// Audit is what Verify found.
type Audit struct {
	Job, Country, From, To string
	Policy                 uint64
	Chunks                 int
	Records                int64 // relocated, by the source's entries
	DestRecords            int64 // received, by the destination's entries
	Deleted                int64 // deleted at the source, by its entries
	Digest                 string
	Complete               bool // both summaries are logged
}

// entryOf is a relocation entry, its query read.
type entryOf struct {
	rec    *access.Record
	fields map[string]string
}

// parseQuery reads the query of a relocation entry, "relocation k=v ...",
// or returns nil.
func parseQuery(q string) map[string]string {
	rest, ok := strings.CutPrefix(q, "relocation ")
	if !ok {
		return nil
	}
	m := map[string]string{}
	for _, f := range strings.Fields(rest) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			m[f] = ""
			continue
		}
		m[k] = v
	}
	return m
}

// Verify checks the relocation with the given job id from the logs
// alone:
//
//   - the policy log holds the version the entries name, serving the
//     country from the destination, and the version before it served it
//     from the source;
//   - every chunk's relocate entry at the source has a matching relocate
//     entry at the destination (same range of source batches and the same
//     count), and a delete entry at the source with the same count and the
//     same digest of record ids (the very records that were relocated);
//   - the chunks do not overlap, and the summaries at both ends, if
//     logged, give the totals the chunks add up to.
//
// Chunks repeated after a crash are counted once, by range. The error
// lists every problem found.
func Verify(ev *Evidence, job string) (*Audit, error) {
	var a Audit
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	byRegion := map[string][]entryOf{}
	for region, recs := range ev.Access {
		for _, r := range recs {
			f := parseQuery(r.Resource.Query)
			if f == nil || f["job"] != job || r.Region != region || r.Request != job {
				continue
			}
			if a.Country == "" {
				a.Job, a.Country, a.From, a.To = job, f["country"], f["from"], f["to"]
				a.Policy, _ = strconv.ParseUint(f["policy"], 10, 64)
			}
			if f["country"] != a.Country || f["from"] != a.From || f["to"] != a.To || f["policy"] != strconv.FormatUint(a.Policy, 10) {
				bad("entry of %s names %s", region, r.Resource.Query)
				continue
			}
			if r.Justification.Code != "RELOCATION" {
				bad("entry of %s for the relocation has justification %s", region, r.Justification.Code)
			}
			byRegion[region] = append(byRegion[region], entryOf{r, f})
		}
	}
	if a.Country == "" {
		return nil, fmt.Errorf("no access log holds an entry of relocation %s", job)
	}

	// The policy.
	var moved, before *residency.Policy
	for _, p := range ev.Policies {
		switch p.Version {
		case a.Policy:
			moved = p
		case a.Policy - 1:
			before = p
		}
	}
	switch {
	case moved == nil:
		bad("the policy log holds no version %d", a.Policy)
	case before == nil:
		bad("the policy log holds no version %d before version %d", a.Policy-1, a.Policy)
	default:
		if r, _ := moved.RegionFor(a.Country); r != a.To {
			bad("policy version %d serves %s from %s, not %s", a.Policy, a.Country, r, a.To)
		}
		if r, _ := before.RegionFor(a.Country); r != a.From {
			bad("policy version %d served %s from %s, not %s", a.Policy-1, a.Country, r, a.From)
		}
	}

	// The chunks, by range: the last entry of each range wins.
	type chunk struct{ src, dst, del *access.Record }
	chunks := map[string]*chunk{}
	get := func(rng string) *chunk {
		if chunks[rng] == nil {
			chunks[rng] = &chunk{}
		}
		return chunks[rng]
	}
	var summaries [2]*entryOf
	for _, side := range []struct {
		region string
		source bool
	}{{a.From, true}, {a.To, false}} {
		for _, e := range byRegion[side.region] {
			rng, isChunk := e.fields["batches"]
			_, isSummary := e.fields["summary"]
			switch {
			case e.rec.Action == "relocate" && isSummary:
				if side.source {
					summaries[0] = &e
				} else {
					summaries[1] = &e
				}
			case e.rec.Action == "relocate" && isChunk && side.source:
				get(rng).src = e.rec
			case e.rec.Action == "relocate" && isChunk:
				get(rng).dst = e.rec
			case e.rec.Action == "delete" && isChunk && side.source:
				get(rng).del = e.rec
			default:
				bad("unexpected %s entry of the relocation in %s: %s", e.rec.Action, side.region, e.rec.Resource.Query)
			}
		}
	}
	type span struct {
		first, last int64
		rng         string
	}
	var spans []span
	for rng, c := range chunks {
		var s span
		if _, err := fmt.Sscanf(rng, "%d-%d", &s.first, &s.last); err != nil || s.first > s.last {
			bad("chunk range %q is not first-last", rng)
			continue
		}
		s.rng = rng
		spans = append(spans, s)
		switch {
		case c.src == nil:
			bad("chunk %s: no relocate entry at %s", rng, a.From)
			continue
		case c.dst == nil:
			bad("chunk %s: relocated at %s but never received at %s", rng, a.From, a.To)
		case c.dst.Resource.Count != c.src.Resource.Count:
			bad("chunk %s: %d records relocated, %d received", rng, c.src.Resource.Count, c.dst.Resource.Count)
		}
		switch {
		case c.del == nil:
			bad("chunk %s: never deleted at %s", rng, a.From)
		case c.del.Resource.Count != c.src.Resource.Count || c.del.Resource.Digest != c.src.Resource.Digest:
			bad("chunk %s: deleted %d records (%s), relocated %d (%s)", rng, c.del.Resource.Count, c.del.Resource.Digest, c.src.Resource.Count, c.src.Resource.Digest)
		}
		if len(c.src.Keys) == 0 && c.src.Resource.Count > 0 {
			bad("chunk %s: the relocate entry names no data keys", rng)
		}
		a.Chunks++
		a.Records += c.src.Resource.Count
		if c.dst != nil {
			a.DestRecords += c.dst.Resource.Count
		}
		if c.del != nil {
			a.Deleted += c.del.Resource.Count
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].first < spans[j].first })
	for i := 1; i < len(spans); i++ {
		if spans[i].first <= spans[i-1].last {
			bad("chunks %s and %s overlap", spans[i-1].rng, spans[i].rng)
		}
	}
	if summaries[0] != nil && summaries[1] != nil {
		a.Complete = true
		for i, s := range summaries {
			n, _ := strconv.ParseInt(s.fields["records"], 10, 64)
			d, _ := strconv.ParseInt(s.fields["deleted"], 10, 64)
			if n != a.Records || d != a.Deleted {
				bad("summary in %s says %d records relocated and %d deleted; the chunks say %d and %d", []string{a.From, a.To}[i], n, d, a.Records, a.Deleted)
			}
			if i == 0 {
				a.Digest = s.fields["digest"]
			} else if s.fields["digest"] != a.Digest {
				bad("the summaries give different digests: %s and %s", a.Digest, s.fields["digest"])
			}
		}
	} else {
		bad("the relocation is not complete: no summary entry in %s", map[bool]string{true: a.To, false: a.From}[summaries[0] != nil])
	}
	if a.Records != a.DestRecords || a.Records != a.Deleted {
		bad("%d records relocated, %d received, %d deleted", a.Records, a.DestRecords, a.Deleted)
	}
	if len(problems) > 0 {
		return &a, errors.New(strings.Join(problems, "; "))
	}
	return &a, nil
}
