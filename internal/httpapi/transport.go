package httpapi

import (
	"bytes"
	"io"
	"net/http"
	"sync/atomic"
)

// HandlerTransport is an http.RoundTripper that serves requests for one
// Host with an in-process Handler, and the rest with Next. `vitrine up`
// runs the witness in the same process as the logs (and `vitrine
// supervisor` its witness beside the monitor's acknowledgement log): the
// logs still speak the tlog-witness protocol byte for byte, but the round
// trip does not depend on the public listener, so the logs can publish
// before it serves and while it shuts down.
type HandlerTransport struct {
	Host    string
	Handler http.Handler
	Next    http.RoundTripper
}

func (t *HandlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != t.Host {
		return t.Next.RoundTrip(r)
	}
	rec := &recorder{header: make(http.Header), status: http.StatusOK}
	t.Handler.ServeHTTP(rec, r)
	if r.Body != nil {
		_ = r.Body.Close()
	}
	return &http.Response{
		Status:        http.StatusText(rec.status),
		StatusCode:    rec.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        rec.header,
		Body:          io.NopCloser(bytes.NewReader(rec.body.Bytes())),
		ContentLength: int64(rec.body.Len()),
		Request:       r,
	}, nil
}

type recorder struct {
	header  http.Header
	body    bytes.Buffer
	status  int
	written bool
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if !r.written {
		r.status, r.written = status, true
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

// Lazy serves 503 (Retry-After: 1) until it is given the handler to
// serve, and again while it is given nil: a server that listens before
// what it serves is open, or while it opens it again.
type Lazy struct{ h atomic.Pointer[http.Handler] }

// Set makes l serve h (nil: 503).
func (l *Lazy) Set(h http.Handler) {
	if h == nil {
		l.h.Store(nil)
		return
	}
	l.h.Store(&h)
}

func (l *Lazy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := l.h.Load()
	if h == nil {
		w.Header().Set("Retry-After", "1")
		Error(w, http.StatusServiceUnavailable, "starting")
		return
	}
	(*h).ServeHTTP(w, r)
}
