// Package backoff spaces the retries of Vitrine's periodic clients: the
// regions pulling each other's aggregates, relocations calling custody and
// the stores. A client that fails waits longer after each failure, with
// jitter so that many clients do not retry in step, up to a cap, and
// never less than the server asked for with Retry-After; a success resets
// the wait.
//
// # Use
//
//	p := backoff.Policy{Min: time.Second, Max: 30 * time.Second}
//	var s backoff.State
//	for {
//		err := call()
//		wait := s.Next(p, err, rand.Float64()) // zero after a success
//		...
//	}
package backoff

import (
	"errors"
	"time"

	"github.com/vitrine-dev/vitrine/client"
)

// MaxRetryAfter bounds the Retry-After a client honours, so that a peer
// cannot silence it for days with one header.
const MaxRetryAfter = client.MaxRetryAfter

// Policy is how a client backs off. The zero Policy waits 1s after the
// first failure, doubling up to 30s.
type Policy struct {
	// Min is the wait after the first failure (default 1s).
	Min time.Duration
	// Max caps the wait that failures alone cause (default 30s). A longer
	// Retry-After is still honoured, up to MaxRetryAfter.
	Max time.Duration
}

func (p Policy) bounds() (lo, hi time.Duration) {
	lo, hi = p.Min, p.Max
	if lo <= 0 {
		lo = time.Second
	}
	if hi <= 0 {
		hi = 30 * time.Second
	}
	return lo, max(lo, hi)
}

// Delay returns the wait before the next attempt after failures
// consecutive failures (0: none, no wait), given the Retry-After the last
// answer carried (0 if none) and jitter, a number in [0, 1). The wait
// without Retry-After is Min doubled per failure after the first, capped
// at Max, of which jitter takes up to half away ("equal jitter"); the
// result is never shorter than retryAfter (capped at MaxRetryAfter). It
// is a pure function.
func (p Policy) Delay(failures int, retryAfter time.Duration, jitter float64) time.Duration {
	if failures <= 0 {
		return 0
	}
	lo, hi := p.bounds()
	d := lo
	for i := 1; i < failures && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	jitter = min(max(jitter, 0), 1)
	d -= time.Duration(float64(d/2) * jitter)
	return max(d, min(retryAfter, MaxRetryAfter))
}

// State is one client's consecutive failures. The zero State has none.
type State struct {
	Failures int
}

// Next records the outcome of an attempt (err nil: success) and returns
// the wait before the next one: zero after a success, otherwise p.Delay
// with the Retry-After err carries (see RetryAfterOf).
func (s *State) Next(p Policy, err error, jitter float64) time.Duration {
	if err == nil {
		s.Failures = 0
		return 0
	}
	s.Failures++
	return p.Delay(s.Failures, RetryAfterOf(err), jitter)
}

// RetryAfterOf returns the wait asked for by the first error in err's
// chain that has a RetryAfter() time.Duration method, or 0.
func RetryAfterOf(err error) time.Duration {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		return max(0, ra.RetryAfter())
	}
	return 0
}

// WithRetryAfter returns err carrying the wait a server asked for (see
// RetryAfterOf); err is unchanged if wait is not positive.
func WithRetryAfter(err error, wait time.Duration) error {
	if err == nil || wait <= 0 {
		return err
	}
	return &retryAfterError{err, wait}
}

type retryAfterError struct {
	err  error
	wait time.Duration
}

func (e *retryAfterError) Error() string             { return e.err.Error() }
func (e *retryAfterError) Unwrap() error             { return e.err }
func (e *retryAfterError) RetryAfter() time.Duration { return e.wait }
