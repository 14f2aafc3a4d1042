package metrics

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// AppendFailure is why an append failed, a label value of
// vitrine_log_append_failures_total.
type AppendFailure int

const (
	// AppendInvalid is an empty entry or one too large.
	AppendInvalid AppendFailure = iota
	// AppendBusy is the log pushing back under load.
	AppendBusy
	// AppendUnavailable is storage that could not take the entry.
	AppendUnavailable
	appendFailures
)

var appendFailureNames = [appendFailures]string{"invalid", "busy", "unavailable"}

// LogState is what a log reports when it is scraped.
type LogState struct {
	// Healthy is whether its storage takes appends.
	Healthy bool
	// Published is whether it serves a checkpoint: of Size entries,
	// made at Made (its newest cosignature, or, with no witness, when
	// the log first saw it).
	Published bool
	Size      uint64
	Made      time.Time
}

// Log is the metric set of one log, labelled with its origin.
type Log struct {
	appends  prometheus.Counter
	failures [appendFailures]prometheus.Counter
	duration prometheus.Observer
	batches  prometheus.Observer
	origin   string
	fam      *logFamilies
	state    atomic.Pointer[func() LogState]
}

// Log returns the set of the log with origin.
func (r *Registry) Log(origin string) *Log {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if l := r.logs[origin]; l != nil {
		return l
	}
	f := &r.log
	l := &Log{
		appends:  f.appends.WithLabelValues(origin),
		duration: f.duration.WithLabelValues(origin),
		batches:  f.batches.WithLabelValues(origin),
		origin:   origin,
		fam:      f,
	}
	for i, name := range appendFailureNames {
		l.failures[i] = f.failures.WithLabelValues(origin, name)
	}
	r.logs[origin] = l
	return l
}

// Appended counts an entry appended (durably sequenced) after d.
func (l *Log) Appended(d time.Duration) {
	if l == nil {
		return
	}
	l.appends.Inc()
	l.duration.Observe(d.Seconds())
}

// AppendFailed counts an append that failed.
func (l *Log) AppendFailed(why AppendFailure) {
	if l == nil {
		return
	}
	l.failures[why].Inc()
}

// Batch counts a batch of n entries made durable together. A storage
// driver calls it once per batch.
func (l *Log) Batch(n int) {
	if l == nil {
		return
	}
	l.batches.Observe(float64(n))
}

// Report has state called at every scrape for the log's checkpoint and
// storage gauges, until the returned stop is called (the log closed). A
// log opened again under the same origin reports in its place.
func (l *Log) Report(state func() LogState) (stop func()) {
	if l == nil {
		return func() {}
	}
	p := &state
	l.state.Store(p)
	return func() { l.state.CompareAndSwap(p, nil) }
}

// Witness returns the set of the calls the log makes to the witness
// named name in its policy.
func (l *Log) Witness(name string) *WitnessCalls {
	if l == nil {
		return nil
	}
	w := &WitnessCalls{duration: l.fam.witnessDuration.WithLabelValues(l.origin, name)}
	for i, o := range witnessOutcomeNames {
		w.outcomes[i] = l.fam.witnessCalls.WithLabelValues(l.origin, name, o)
	}
	return w
}

// WitnessCalls is the metric set of a log's calls to one witness.
type WitnessCalls struct {
	duration prometheus.Observer
	outcomes [3]prometheus.Counter
}

var witnessOutcomeNames = [3]string{"cosigned", "conflict", "failed"}

// Done counts a call to the witness answered with status after d; a call
// that got no answer has status 0.
func (w *WitnessCalls) Done(d time.Duration, status int) {
	if w == nil {
		return
	}
	w.duration.Observe(d.Seconds())
	switch status {
	case http.StatusOK:
		w.outcomes[0].Inc()
	case http.StatusConflict:
		w.outcomes[1].Inc()
	default:
		w.outcomes[2].Inc()
	}
}

// logFamilies are the families of every log of a process.
type logFamilies struct {
	appends         *prometheus.CounterVec
	failures        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	batches         *prometheus.HistogramVec
	witnessDuration *prometheus.HistogramVec
	witnessCalls    *prometheus.CounterVec
}

func newLogFamilies(r *Registry) logFamilies {
	f := logFamilies{
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitrine_log_appends_total",
			Help: "Entries appended to the log: durably sequenced and acknowledged.",
		}, []string{"log"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitrine_log_append_failures_total",
			Help: "Appends the log refused: invalid (empty or too large), busy (pushback) or unavailable (storage).",
		}, []string{"log", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vitrine_log_append_duration_seconds",
			Help:    "Time from an append's call to its entry being durably sequenced.",
			Buckets: exponential(0.0005, 2, 14),
		}, []string{"log"}),
		batches: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vitrine_log_batch_entries",
			Help:    "Entries per batch the log's storage made durable with one sync (journaled tiles only).",
			Buckets: exponential(1, 2, 13),
		}, []string{"log"}),
		witnessDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vitrine_log_witness_duration_seconds",
			Help:    "Time a witness of the policy took to answer the log's add-checkpoint (journaled tiles only).",
			Buckets: exponential(0.001, 2, 14),
		}, []string{"log", "witness"}),
		witnessCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitrine_log_witness_requests_total",
			Help: "The log's add-checkpoint requests to each witness: cosigned (200), conflict (409, the log retries with the witness's size) or failed.",
		}, []string{"log", "witness", "outcome"}),
	}
	r.reg.MustRegister(f.appends, f.failures, f.duration, f.batches, f.witnessDuration, f.witnessCalls, &logStates{r})
	return f
}

// logStates reports every log's checkpoint and storage when scraped.
type logStates struct{ r *Registry }

var (
	checkpointAge = prometheus.NewDesc("vitrine_log_checkpoint_age_seconds",
		"Age of the checkpoint the log serves: since its newest cosignature (or, without witnesses, since the process first saw it).", []string{"log"}, nil)
	checkpointSize = prometheus.NewDesc("vitrine_log_checkpoint_size",
		"Entries in the checkpoint the log serves.", []string{"log"}, nil)
	storageUp = prometheus.NewDesc("vitrine_log_storage_healthy",
		"1 while the log's storage takes appends, 0 while it is broken, recovering or closed.", []string{"log"}, nil)
)

func (s *logStates) Describe(ch chan<- *prometheus.Desc) {
	ch <- checkpointAge
	ch <- checkpointSize
	ch <- storageUp
}

func (s *logStates) Collect(ch chan<- prometheus.Metric) {
	s.r.mu.Lock()
	logs := make([]*Log, 0, len(s.r.logs))
	for _, l := range s.r.logs {
		logs = append(logs, l)
	}
	s.r.mu.Unlock()
	now := time.Now()
	for _, l := range logs {
		f := l.state.Load()
		if f == nil {
			continue
		}
		st := (*f)()
		up := 0.0
		if st.Healthy {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(storageUp, prometheus.GaugeValue, up, l.origin)
		if !st.Published {
			continue
		}
		ch <- prometheus.MustNewConstMetric(checkpointSize, prometheus.GaugeValue, float64(st.Size), l.origin)
		ch <- prometheus.MustNewConstMetric(checkpointAge, prometheus.GaugeValue, max(0, now.Sub(st.Made).Seconds()), l.origin)
	}
}
