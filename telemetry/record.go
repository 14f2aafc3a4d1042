// Package telemetry defines the threat telemetry that endpoints send to
// their home region, and the strict parser every region runs on it.
//
// A [Record] is what an endpoint saw: a file hash, a detection, a URL. Its
// fields split in two: the threat fields (time, kind, sha256, size,
// detection, product, rule database) are not personal and drive
// processing and verdicts; the personal fields (url, path — and the
// endpoint id, which comes from the endpoint's token, never from the
// record) identify a person and are stored apart, so that they can be
// encrypted and released only through the access gateway.
package telemetry

import "time"

// Kinds of record.
const (
	KindDetection = "detection"
	KindFile      = "file"
	KindURL       = "url"
)

// Limits on a batch.
const (
	// MaxBatchRecords is the most records one batch may hold.
	MaxBatchRecords = 10000
	// MaxBatchBytes is the largest batch body a region reads.
	MaxBatchBytes = 16 << 20
)

// Record is one telemetry record as an endpoint sends it (DESIGN.md):
//
//	{"time":"2026-11-22T10:00:00Z","kind":"detection","sha256":"…","size":68,
//	 "detection":"EICAR-Test-File","url":"","path":"C:/Users/…/eicar.com",
//	 "product":"vitrine-agent/1.0.0","ruledb":42}
type Record struct {
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"`
	SHA256    string    `json:"sha256"`
	Size      int64     `json:"size"`
	Detection string    `json:"detection"`
	URL       string    `json:"url"`
	Path      string    `json:"path"`
	Product   string    `json:"product"`
	RuleDB    uint64    `json:"ruledb"`
}

// Threat returns the record's non-personal part.
func (r *Record) Threat() Threat {
	return Threat{Time: r.Time, Kind: r.Kind, SHA256: r.SHA256, Size: r.Size, Detection: r.Detection, Product: r.Product, RuleDB: r.RuleDB}
}

// Personal returns the record's personal part.
func (r *Record) Personal() Personal { return Personal{URL: r.URL, Path: r.Path} }

// Threat is the non-personal part of a record.
type Threat struct {
	Time      time.Time
	Kind      string
	SHA256    string // 64 lowercase hex digits
	Size      int64
	Detection string
	Product   string
	RuleDB    uint64
}

// Personal is the part of a record that identifies a person.
type Personal struct {
	URL  string
	Path string
}

// Batch is what an endpoint posts to its home region's ingest route.
type Batch struct {
	BatchID string   `json:"batch_id"`
	Records []Record `json:"records"`
}
