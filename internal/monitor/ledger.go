package monitor

import (
	"encoding/json"
	"fmt"
)

// The ledger checks each region's dataset commitments against the deletes
// its access log shows: records arrive only by ingest, which adds, so a
// commitment may count fewer records than the one before it only by as
// many as the granted deletes logged between them (a relocation logs its
// deletions at the source as deletes too). A drop beyond that is records
// that vanished from the store without a logged access: dataset-shrank.
//
// Deletes are logged before the records go, and a commitment after it
// counted them, so a delete logged before a commitment may not yet be
// done when that commitment counts: the check can only be lenient there,
// never raise a false alarm.

// ledger is, per platform, log and dataset, the last commitment read and
// the records deleted since.
type ledger map[string]*datasetLedger

type datasetLedger struct {
	// Index is the last commitment's entry, Count what it counted.
	Index uint64 `json:"index"`
	Count int64  `json:"count"`
	// Deleted are the records that granted deletes logged after it
	// removed.
	Deleted int64 `json:"deleted"`
}

// note reads one parsed access-log entry into the ledger and returns the
// alert text of a dataset that shrank, or "".
func (l ledger) note(base, log string, index uint64, pe parsedEntry) string {
	switch {
	case pe.record != nil:
		r := pe.record
		if r.Action != "delete" || r.Outcome != "granted" {
			return ""
		}
		if d := l[base+" "+log+" "+r.Resource.Dataset]; d != nil {
			d.Deleted += r.Resource.Count
		}
	case pe.commitment != nil:
		c := pe.commitment
		key := base + " " + log + " " + c.Dataset
		prev := l[key]
		l[key] = &datasetLedger{Index: index, Count: c.Count}
		if prev == nil {
			return ""
		}
		if floor := prev.Count - prev.Deleted; c.Count < floor {
			return fmt.Sprintf("dataset %s of region %s counts %d records; the commitment before it (entry %d) counted %d and the log shows %d deleted since, so at least %d should remain: %d records vanished without a logged access",
				c.Dataset, c.Region, c.Count, prev.Index, prev.Count, prev.Deleted, floor, floor-c.Count)
		}
	}
	return ""
}

func (l ledger) save() ([]byte, error) { return json.Marshal(l) }

// loadLedger reads what save wrote; nil is an empty ledger.
func loadLedger(b []byte) (ledger, error) {
	l := ledger{}
	if b == nil {
		return l, nil
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return ledger{}, fmt.Errorf("the saved dataset ledger: %w", err)
	}
	return l, nil
}
