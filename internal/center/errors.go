package center

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
)

// ErrorPage is a failure as a reader's browser is shown it.
type ErrorPage struct {
	Status int
	Title  string
	// Message is what failed, as the handler said it.
	Message string
	// Unverified is set when what failed is a check of the platform's
	// answer (a 502): the page marks it data-verified="false".
	Unverified bool
}

// htmlErrors shows a browser (a request that asks for text/html) an
// error answer of h as a page of the Center, with the same status,
// instead of the JSON other clients get.
func (c *Center) htmlErrors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept"), "text/html") {
			h.ServeHTTP(w, r)
			return
		}
		ew := &errorWriter{ResponseWriter: w}
		h.ServeHTTP(ew, r)
		if ew.status == 0 {
			return // not an error: already written through
		}
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(ew.body.Bytes(), &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(ew.body.String())
		}
		page := &ErrorPage{Status: ew.status, Title: http.StatusText(ew.status), Message: e.Error, Unverified: ew.status == http.StatusBadGateway}
		var b bytes.Buffer
		if err := c.tmpl.ExecuteTemplate(&b, "error.html", page); err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(ew.status)
			_, _ = w.Write(ew.body.Bytes())
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", csp)
		w.Header().Del("Content-Length")
		w.WriteHeader(ew.status)
		_, _ = w.Write(b.Bytes())
	})
}

// errorWriter holds back an answer of status 400 or more with a JSON
// body (an httpapi error), and writes any other through.
type errorWriter struct {
	http.ResponseWriter
	status int // of an answer held back
	body   bytes.Buffer
	passed bool
}

func (w *errorWriter) WriteHeader(code int) {
	if w.passed || w.status != 0 {
		return
	}
	if code >= 400 && strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		w.status = code
		return
	}
	w.passed = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *errorWriter) Write(b []byte) (int, error) {
	if !w.passed && w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.status != 0 {
		if w.body.Len() < 64<<10 {
			w.body.Write(b[:min(len(b), 64<<10-w.body.Len())])
		}
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets a streamed answer through.
func (w *errorWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok && w.status == 0 {
		f.Flush()
	}
}
