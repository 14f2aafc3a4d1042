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
//
// # Parsing
//
// [ParseBatch] reads the body of POST /regions/<region>/v1/telemetry. It
// takes a batch whole or not at all, and its [*FieldError] names the first
// problem by record index and field, in words an endpoint's developer can
// act on. The rules are those documented on [Batch] and [Record];
// testdata/vectors holds bodies and the answers they get, for other
// implementations to test against.
//
// ParseBatch is a scanner written for this one schema rather than
// encoding/json, because the region ingests more than 100,000 records a
// second: it is several times faster, and it allocates per record only to
// check a URL or unescape a string (BenchmarkParseBatch500 against
// BenchmarkStdlibJSON500). Its tests check that whatever it accepts,
// encoding/json reads identically.
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

// Record is one telemetry record as an endpoint sends it (docs/architecture.md,
// "Telemetry"):
//
//	{"time":"2026-11-22T10:00:00Z","kind":"detection","sha256":"…","size":68,
//	 "detection":"EICAR-Test-File","url":"","path":"C:/Users/…/eicar.com",
//	 "product":"vitrine-agent/1.0.0","ruledb":42}
//
// Time, kind and sha256 are required; every other field may be left out,
// which is the same as sending its zero value. Lengths count characters
// (Unicode code points); "printable" is [unicode.IsPrint].
type Record struct {
	// Time is when the endpoint saw the file: an RFC 3339 time with an
	// uppercase T, Z or a ±hh:mm offset and at most nine fractional
	// digits, from [Earliest] to [MaxFuture] after the region's clock.
	// ParseBatch returns it in UTC.
	Time time.Time `json:"time"`
	// Kind is KindDetection, KindFile or KindURL.
	Kind string `json:"kind"`
	// SHA256 is the file's SHA-256 in 64 lowercase hex digits.
	SHA256 string `json:"sha256"`
	// Size is the file's size in bytes, from 0 to [MaxSize].
	Size int64 `json:"size"`
	// Detection is the name of what the endpoint's engine detected: 1 to
	// [MaxDetectionLen] printable characters when Kind is detection,
	// empty otherwise.
	Detection string `json:"detection"`
	// URL is where the file came from, an absolute http or https URL of
	// at most [MaxURLLen] printable characters and no spaces. It is
	// required when Kind is url and may be given with the other kinds.
	// Personal.
	URL string `json:"url"`
	// Path is where the file lies on the endpoint: at most [MaxPathLen]
	// characters, no NUL. Personal.
	Path string `json:"path"`
	// Product is the reporting product and version: at most
	// [MaxProductLen] printable characters.
	Product string `json:"product"`
	// RuleDB is the version of the rule database the engine ran.
	RuleDB uint64 `json:"ruledb"`
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

// Batch is what an endpoint posts to its home region's ingest route: a
// batch id of 1 to 128 characters from A-Z, a-z, 0-9 and . _ : - (the
// endpoint's idempotency key, so that a retried batch is stored once), and
// 1 to [MaxBatchRecords] records, in a body of at most [MaxBatchBytes].
type Batch struct {
	BatchID string   `json:"batch_id"`
	Records []Record `json:"records"`
}
