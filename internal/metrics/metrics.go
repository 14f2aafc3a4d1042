// Package metrics is what Vitrine's processes report to Prometheus: a
// [Registry] per process, the metric sets of the parts that run in it,
// and the handler that serves them in the Prometheus text format.
//
// # Sets
//
// Each part takes its set from the process's registry and holds it:
// [Registry.Log] for a log, [Registry.Region], [Registry.Gateway],
// [Registry.Custody], [Registry.Witness]. A set's children are resolved
// once, when it is made, so that counting on a hot path (an append, a
// stored batch) is an atomic add: no label lookup, no allocation. Every
// method of a set works on a nil set and does nothing, so a part built
// without metrics (tests, tools) needs no checks.
//
// Asking a registry twice for the same set (a log opened again, the
// supervisor's members read again) returns the same set: counters go on.
//
// # Labels
//
// Labels name parts of the deployment (a log's origin, a region, an
// action, a witness of the policy, a supervisor's member) or one of a
// fixed set of outcomes, never a person: no endpoint id, no principal, no
// address. A value an outsider chooses (the region of an unwrap request)
// is reported as "unknown" unless the process knows it. docs/operations.md
// lists every metric with its labels.
package metrics

import (
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry holds one process's metrics. It is not the global default
// registry of package prometheus: each process, and each test, has its
// own. Its methods are safe for concurrent use; a nil *Registry hands out
// nil sets.
type Registry struct {
	reg *prometheus.Registry

	mu       sync.Mutex
	logs     map[string]*Log
	regions  map[string]*Region
	gateways map[string]*Gateway
	custody  map[string]*Custody
	witness  *Witness

	log     logFamilies
	region  regionFamilies
	gateway gatewayFamilies
}

// New returns a registry with the Go runtime's and the process's
// metrics (go_*, process_*) and Vitrine's families, which appear once a
// part reports in them.
func New() *Registry {
	r := &Registry{
		reg:      prometheus.NewRegistry(),
		logs:     map[string]*Log{},
		regions:  map[string]*Region{},
		gateways: map[string]*Gateway{},
		custody:  map[string]*Custody{},
	}
	r.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r.log = newLogFamilies(r)
	r.region = newRegionFamilies(r.reg)
	r.gateway = newGatewayFamilies(r.reg)
	return r
}

// Handler serves the registry's metrics in the Prometheus text format
// (or OpenMetrics, if the scraper asks for it). A collector that fails
// leaves its metrics out; the others are served.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, EnableOpenMetrics: true})
}

// Gatherer returns the registry's metrics for tests and tools that read
// them without HTTP.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// exponential returns n bucket bounds from start, each factor times the
// one before.
func exponential(start, factor float64, n int) []float64 {
	return prometheus.ExponentialBuckets(start, factor, n)
}
