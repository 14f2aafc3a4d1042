package metrics

import "github.com/prometheus/client_golang/prometheus"

// Action is an access through a region's gateway.
type Action int

const (
	ActionRead Action = iota
	ActionExport
	ActionDelete
	actions
)

var actionNames = [actions]string{"read", "export", "delete"}

// Decision is how the gateway ended a request, a label value of
// vitrine_gateway_decisions_total.
type Decision int

const (
	// Granted is an access logged and answered: records released or
	// deleted.
	Granted Decision = iota
	// Denied is an attempt refused and logged as a denied access record.
	Denied
	// Counted is an attempt without a valid credential refused and
	// counted in the next denied summary instead.
	Counted
	// Failed is an access that the log, the witness, custody or the store
	// could not complete: no data released.
	Failed
	decisions
)

var decisionNames = [decisions]string{"granted", "denied", "counted", "failed"}

// Gateway is the metric set of one region's access gateway.
type Gateway struct {
	decisions [actions][decisions]prometheus.Counter
	released  [actions]prometheus.Counter
}

// Gateway returns the set of the gateway of region.
func (r *Registry) Gateway(region string) *Gateway {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.gateways[region]; m != nil {
		return m
	}
	m := new(Gateway)
	for a, an := range actionNames {
		for d, dn := range decisionNames {
			m.decisions[a][d] = r.gateway.decisions.WithLabelValues(region, an, dn)
		}
		m.released[a] = r.gateway.records.WithLabelValues(region, an)
	}
	r.gateways[region] = m
	return m
}

// Decided counts a request for action that ended as d; records is how
// many records a granted access released or deleted.
func (m *Gateway) Decided(a Action, d Decision, records int) {
	if m == nil {
		return
	}
	m.decisions[a][d].Inc()
	if d == Granted {
		m.released[a].Add(float64(records))
	}
}

type gatewayFamilies struct {
	decisions, records *prometheus.CounterVec
}

func newGatewayFamilies(reg *prometheus.Registry) gatewayFamilies {
	f := gatewayFamilies{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitrine_gateway_decisions_total",
			Help: "Requests to the access gateway by action (read, export, delete) and decision: granted, denied (a denied access record), counted (in a denied summary), failed (no data released).",
		}, []string{"region", "action", "decision"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vitrine_gateway_records_total",
			Help: "Records that granted accesses released (read, export) or deleted.",
		}, []string{"region", "action"}),
	}
	reg.MustRegister(f.decisions, f.records)
	return f
}
