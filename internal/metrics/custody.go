package metrics

import "github.com/prometheus/client_golang/prometheus"

// Unwrap is how custody ended an unwrap request, a label value of
// vitrine_custody_unwraps_total.
type Unwrap int

const (
	// UnwrapGranted is an unwrap counted and answered with its keys.
	UnwrapGranted Unwrap = iota
	// UnwrapRefused is an unwrap the proof, the access record or a key
	// did not allow.
	UnwrapRefused
	// UnwrapMalformed is a request that is not well formed.
	UnwrapMalformed
	// UnwrapUnavailable is an unwrap whose count could not be made
	// durable: no key left custody.
	UnwrapUnavailable
	unwraps
)

var unwrapNames = [unwraps]string{"granted", "refused", "malformed", "unavailable"}

// UnknownRegion is the region label of requests for a region custody
// does not hold: the requester names it, so it is not a label value.
const UnknownRegion = "unknown"

// Custody is the metric set of one key custody: the supervisor's member,
// or the only one of the process.
type Custody struct {
	unwraps *prometheus.CounterVec
	keys    *prometheus.CounterVec
}

// Custody returns the set of the custody of member, the name of a
// supervisor's member vendor, or "" for a process with one custody (its
// metrics then have no member label). A process must not mix the two.
func (r *Registry) Custody(member string) *Custody {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.custody[member]; m != nil {
		return m
	}
	var constant prometheus.Labels
	if member != "" {
		constant = prometheus.Labels{"member": member}
	}
	m := &Custody{
		unwraps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "vitrine_custody_unwraps_total",
			Help:        "Unwrap requests custody answered, by outcome: granted, refused, malformed, unavailable (count not durable, no key released).",
			ConstLabels: constant,
		}, []string{"region", "outcome"}),
		keys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "vitrine_custody_unwrapped_keys_total",
			Help:        "Data keys custody released (in the clear or rewrapped) for granted unwraps.",
			ConstLabels: constant,
		}, []string{"region"}),
	}
	r.reg.MustRegister(m.unwraps, m.keys)
	r.custody[member] = m
	return m
}

// Region returns the set of custody's region name; UnknownRegion for a
// region it does not hold.
func (m *Custody) Region(name string) *CustodyRegion {
	if m == nil {
		return nil
	}
	c := &CustodyRegion{keys: m.keys.WithLabelValues(name)}
	for i, n := range unwrapNames {
		c.unwraps[i] = m.unwraps.WithLabelValues(name, n)
	}
	return c
}

// CustodyRegion is the metric set of custody's unwraps in one region.
type CustodyRegion struct {
	unwraps [unwraps]prometheus.Counter
	keys    prometheus.Counter
}

// Unwrapped counts an unwrap request that ended as u; keys is how many
// data keys a granted one released.
func (c *CustodyRegion) Unwrapped(u Unwrap, keys int) {
	if c == nil {
		return
	}
	c.unwraps[u].Inc()
	if u == UnwrapGranted {
		c.keys.Add(float64(keys))
	}
}
