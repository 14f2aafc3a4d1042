package metrics

import "github.com/prometheus/client_golang/prometheus"

// Reject is why a region refused a request of an endpoint, a label value
// of vitrine_region_ingest_rejected_total.
type Reject int

const (
	// RejectUnauthenticated is a missing or invalid endpoint token.
	RejectUnauthenticated Reject = iota
	// RejectMisdirected is an endpoint whose home is another region
	// (421), or whose country no region serves.
	RejectMisdirected
	// RejectBody is a body that was not read: the body budget was full,
	// or it was too large or cut off.
	RejectBody
	// RejectMalformed is a body that did not parse as a batch.
	RejectMalformed
	// RejectUnavailable is a batch the region could not seal, give a
	// pseudonym or store: 503, nothing stored.
	RejectUnavailable
	rejects
)

var rejectNames = [rejects]string{"unauthenticated", "misdirected", "body", "malformed", "unavailable"}

// Verdict is how a request for verdicts ended, a label value of
// vitrine_region_verdict_requests_total.
type Verdict int

const (
	// VerdictAnswered is a request answered with its verdicts.
	VerdictAnswered Verdict = iota
	// VerdictRejected is a request refused (credential, region, body).
	VerdictRejected
	// VerdictUnavailable is a request the store could not answer.
	VerdictUnavailable
	verdictResults
)

var verdictNames = [verdictResults]string{"answered", "rejected", "unavailable"}

// Region is the metric set of one region's ingest and verdicts.
type Region struct {
	stored, duplicate prometheus.Counter
	records           prometheus.Counter
	rejected          [rejects]prometheus.Counter
	verdictRequests   [verdictResults]prometheus.Counter
	verdicts          prometheus.Counter
}

// Region returns the set of the region name.
func (r *Registry) Region(name string) *Region {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.regions[name]; m != nil {
		return m
	}
	f := &r.region
	m := &Region{
		stored:    f.batches.WithLabelValues(name, "stored"),
		duplicate: f.batches.WithLabelValues(name, "duplicate"),
		records:   f.records.WithLabelValues(name),
		verdicts:  f.verdicts.WithLabelValues(name),
	}
	for i, n := range rejectNames {
		m.rejected[i] = f.rejected.WithLabelValues(name, n)
	}
	for i, n := range verdictNames {
		m.verdictRequests[i] = f.verdictRequests.WithLabelValues(name, n)
	}
	r.regions[name] = m
	return m
}

// Ingested counts a batch of n records accepted: stored, or a duplicate
// of one stored before (whose records are not counted again).
func (m *Region) Ingested(n int, duplicate bool) {
	if m == nil {
		return
	}
	if duplicate {
		m.duplicate.Inc()
		return
	}
	m.stored.Inc()
	m.records.Add(float64(n))
}

// Rejected counts a batch refused, nothing stored.
func (m *Region) Rejected(why Reject) {
	if m == nil {
		return
	}
	m.rejected[why].Inc()
}

// Verdicts counts a request for verdicts that ended as v, with the number
// of hashes answered.
func (m *Region) Verdicts(v Verdict, answered int) {
	if m == nil {
		return
	}
	m.verdictRequests[v].Inc()
	m.verdicts.Add(float64(answered))
}

type regionFamilies struct {
	batches, records, rejected, verdictRequests, verdicts *prometheus.CounterVec
}

func newRegionFamilies(reg *prometheus.Registry) regionFamilies {
	f := regionFamilies{
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitrine_region_ingest_batches_total",
			Help: "Telemetry batches the region accepted: stored, or a duplicate of a batch stored before.",
		}, []string{"region", "result"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitrine_region_ingest_records_total",
			Help: "Records in the batches the region stored (duplicates not counted).",
		}, []string{"region"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitrine_region_ingest_rejected_total",
			Help: "Telemetry batches the region refused, nothing stored, by reason: unauthenticated, misdirected, body, malformed, unavailable.",
		}, []string{"region", "reason"}),
		verdictRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitrine_region_verdict_requests_total",
			Help: "Requests for verdicts (one hash or a batch), by result: answered, rejected, unavailable.",
		}, []string{"region", "result"}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitrine_region_verdicts_total",
			Help: "Verdicts the region answered (hashes looked up).",
		}, []string{"region"}),
	}
	reg.MustRegister(f.batches, f.records, f.rejected, f.verdictRequests, f.verdicts)
	return f
}
