package platform

import (
	"bytes"
	"io"
	"net/http"
)

// handlerTransport is an http.RoundTripper that serves requests for one
// host with an in-process handler. `vitrine up` runs the witness in the
// same process as the logs: the logs still speak the tlog-witness protocol
// byte for byte, but the round trip does not depend on the public listener,
// so the logs can publish their last checkpoint while the listener shuts
// down.
type handlerTransport struct {
	host string
	h    http.Handler
	next http.RoundTripper
}

func (t *handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != t.host {
		return t.next.RoundTrip(r)
	}
	rec := &recorder{header: make(http.Header), status: http.StatusOK}
	t.h.ServeHTTP(rec, r)
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
