package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// StatusError is an HTTP answer other than the one a request wanted. It
// keeps the server's own explanation: the "error" member of a JSON body
// (every Vitrine error answer has one), else the start of the body; and
// the wait its Retry-After asked for, which RetryAfter returns to a client
// that backs off.
type StatusError struct {
	URL     string
	Status  int
	Message string
	Wait    time.Duration
}

// RetryAfter returns the wait the answer's Retry-After asked for.
func (e *StatusError) RetryAfter() time.Duration { return e.Wait }

// NewStatusError describes resp, whose body the caller read into body.
func NewStatusError(resp *http.Response, body []byte) *StatusError {
	u := ""
	if resp.Request != nil {
		u = resp.Request.URL.String()
	}
	e := statusError(u, resp.StatusCode, body)
	e.Wait = ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return e
}

// MaxRetryAfter bounds the Retry-After a client honours, so that a peer
// cannot silence it for days.
const MaxRetryAfter = time.Hour

// ParseRetryAfter reads a Retry-After header value (RFC 9110: delay in
// seconds, or an HTTP date) as a wait from now, at most MaxRetryAfter.
// Anything else, or a date in the past, is 0.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return min(time.Duration(n)*time.Second, MaxRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), MaxRetryAfter)
	}
	return 0
}

func (e *StatusError) Error() string {
	if e.URL == "" {
		return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
	}
	if e.Message == "" {
		return fmt.Sprintf("%s: %d %s", e.URL, e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("%s: %d %s: %s", e.URL, e.Status, http.StatusText(e.Status), e.Message)
}

// ErrTooLarge is wrapped by the error of a read whose answer is larger
// than the limit the caller set.
var ErrTooLarge = errors.New("answer too large")

// Get reads u and returns its body, which must answer 200 and be at most
// limit bytes. hc nil means http.DefaultClient. A non-200 answer is a
// *StatusError.
func Get(ctx context.Context, hc *http.Client, u string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	return send(hc, req, limit, func(status int) bool { return status == http.StatusOK })
}

// Do sends req and decodes its answer, which must be a 2xx of at most
// limit bytes, into v as JSON (v nil: the body is read and dropped). hc
// nil means http.DefaultClient. Another status is a *StatusError.
func Do(hc *http.Client, req *http.Request, limit int64, v any) error {
	b, err := send(hc, req, limit, func(status int) bool { return status/100 == 2 })
	if err != nil || v == nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
	return nil
}

// Call sends a request to a platform route that takes a bearer token:
// method to u, with token (none if empty) and, if body is not nil, body as
// JSON. It decodes the 2xx JSON answer, of at most limit bytes, into out
// (nil: dropped). Another status is a *StatusError with the server's
// message.
func Call(ctx context.Context, hc *http.Client, method, u, token string, body []byte, limit int64, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return Do(hc, req, limit, out)
}

// Send sends req and returns its 2xx answer, of at most limit bytes.
// Another status is a *StatusError with the server's message.
func Send(hc *http.Client, req *http.Request, limit int64) ([]byte, error) {
	return send(hc, req, limit, func(s int) bool { return s/100 == 2 })
}

// send sends req and reads at most limit bytes of its answer, whose status
// must be one that ok accepts.
func send(hc *http.Client, req *http.Request, limit int64, ok func(int) bool) ([]byte, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	u := req.URL.String()
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	if !ok(resp.StatusCode) {
		return nil, NewStatusError(resp, b)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w: over %d bytes", u, ErrTooLarge, limit)
	}
	return b, nil
}

// GetJSON reads u with [Get] and decodes its JSON body into v.
func GetJSON(ctx context.Context, hc *http.Client, u string, limit int64, v any) error {
	b, err := Get(ctx, hc, u, limit)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", u, err)
	}
	return nil
}

// printable cuts a server's message to at most n bytes and replaces
// control characters (escape sequences, carriage returns) with spaces: a
// lying server's message must not rewrite what a terminal shows.
func printable(s string, n int) string {
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "") + "…"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
}

func statusError(u string, status int, body []byte) *StatusError {
	var e struct {
		Error string `json:"error"`
	}
	msg := ""
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	} else if len(body) > 0 {
		msg = string(body)
	}
	return &StatusError{URL: u, Status: status, Message: printable(msg, 300)}
}
