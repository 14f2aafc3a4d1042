package metrics

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// witnessCodes are the statuses of C2SP tlog-witness's add-checkpoint
// (and the witness's own 413, 429, 500): each its own label value, any
// other "other".
var witnessCodes = []int{200, 400, 403, 404, 409, 413, 422, 429, 500}

// Witness is the metric set of a witness: the answers it gave to
// add-checkpoint.
type Witness struct {
	answers map[int]prometheus.Counter
	other   prometheus.Counter
}

// Witness returns the set of the process's witness.
func (r *Registry) Witness() *Witness {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.witness != nil {
		return r.witness
	}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vitrine_witness_add_checkpoint_total",
		Help: "add-checkpoint requests the witness answered, by status: 200 cosigned, 409 a size or root that conflicts with what it cosigned, 4xx refused.",
	}, []string{"code"})
	r.reg.MustRegister(vec)
	w := &Witness{answers: map[int]prometheus.Counter{}, other: vec.WithLabelValues("other")}
	for _, c := range witnessCodes {
		w.answers[c] = vec.WithLabelValues(strconv.Itoa(c))
	}
	r.witness = w
	return w
}

// Handler counts the answers h, a witness's handler, gives to
// add-checkpoint; it passes every request on unchanged.
func (w *Witness) Handler(h http.Handler) http.Handler {
	if w == nil {
		return h
	}
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "add-checkpoint") {
			h.ServeHTTP(rw, r)
			return
		}
		sw := &statusWriter{ResponseWriter: rw}
		h.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		if c, ok := w.answers[sw.status]; ok {
			c.Inc()
		} else {
			w.other.Inc()
		}
	})
}

// statusWriter keeps the status of an answer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
