package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// Check is one condition a process meets to be ready to serve.
type Check struct {
	// Name says what is checked ("log example.com/log", "state
	// database").
	Name string
	// Ready returns nil when the condition holds, or an error whose text
	// says what is missing. Anyone may read the text: it must name no
	// file, address or secret.
	Ready func(ctx context.Context) error
}

// Readiness is the body of GET /readyz in the processes other than
// `vitrine up` (whose answer also has each log's state).
type Readiness struct {
	Ready bool `json:"ready"`
	// NotReady says, one line each, what is not ready.
	NotReady []string `json:"not_ready,omitempty"`
}

// checkTimeout bounds one readiness check: a dependency that takes longer
// to answer is not ready.
const checkTimeout = 5 * time.Second

// WithHealth serves the liveness and readiness routes of a process in
// front of h, which gets every other request:
//
//	GET /healthz  200 {"status":"serving"} while the process serves
//	GET /readyz   200 {"ready":true} when every check holds, else 503
//	              with Retry-After and what is not ready (Readiness)
//
// The checks run in order on every GET /readyz.
func WithHealth(h http.Handler, checks ...Check) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", ServeHealthz)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		rd := Readiness{Ready: true}
		for _, c := range checks {
			ctx, cancel := context.WithTimeout(r.Context(), checkTimeout)
			err := c.Ready(ctx)
			cancel()
			if err != nil {
				rd.Ready = false
				rd.NotReady = append(rd.NotReady, c.Name+": "+err.Error())
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		if !rd.Ready {
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(rd)
			return
		}
		CompactJSON(w, rd)
	})
	mux.Handle("/", h)
	return mux
}

// ServeHealthz answers 200 while the process serves: liveness.
func ServeHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(`{"status":"serving"}` + "\n"))
}
