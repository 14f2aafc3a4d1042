package logserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vitrine-dev/vitrine/internal/fault"
	"github.com/vitrine-dev/vitrine/internal/tilestore"
)

// Health reports the state of the log's storage: healthy, or broken since
// when and why, recovering in process (see package tilestore). It is safe
// for concurrent use and cheap.
func (l *Log) Health() tilestore.Health { return l.driver.Health() }

// Ready returns nil if the log takes appends now. Otherwise it returns an
// *UnavailableError, which wraps ErrUnavailable, says why and when to try
// again. Whoever must log the work it does checks Ready first, so that a
// log that cannot take the record costs nothing but the answer 503.
func (l *Log) Ready() error {
	l.closeMu.RLock()
	closed := l.closed
	l.closeMu.RUnlock()
	if closed {
		return &UnavailableError{Log: l.origin, Health: tilestore.Health{State: tilestore.Closed}}
	}
	if l.driver.OK() {
		return nil
	}
	if h := l.Health(); !h.OK() {
		return &UnavailableError{Log: l.origin, Health: h}
	}
	return nil
}

// Serving returns nil when the log takes appends and serves a published
// checkpoint: the readiness of a log in a process of its own (`vitrine
// log serve`). Otherwise its error says what is missing without naming a
// file, so that anyone may be shown it.
func (l *Log) Serving(ctx context.Context) error {
	if err := l.Ready(); err != nil {
		if ue := (*UnavailableError)(nil); errors.As(err, &ue) {
			return errors.New(ue.Health.Summary())
		}
		return errors.New("storage unavailable")
	}
	if cp, err := l.reader.ReadCheckpoint(ctx); err != nil || len(cp) == 0 {
		return errors.New("no checkpoint published yet")
	}
	return nil
}

// ReadyOf returns what log's Ready returns, if it has one (a *Log has),
// and nil otherwise: whoever must log the work it does asks this first,
// whatever log it was given. The error is of kind fault.ErrUnavailable
// whatever log gave it: a log not ready cannot take an entry now.
func ReadyOf(log any) error {
	if l, ok := log.(interface{ Ready() error }); ok {
		return fault.Mark(fault.ErrUnavailable, l.Ready())
	}
	return nil
}

// UnavailableError is the error of a log whose storage refuses appends.
type UnavailableError struct {
	Log    string
	Health tilestore.Health
}

func (e *UnavailableError) Error() string {
	if e.Health.State == tilestore.Closed {
		return fmt.Sprintf("%s: %v: log closed", e.Log, ErrUnavailable)
	}
	return fmt.Sprintf("%s: %v: storage %s since %s (%s); it recovers by itself", e.Log, ErrUnavailable,
		e.Health.State, e.Health.Since.UTC().Format(time.RFC3339), e.Health.Reason)
}

// Unwrap returns ErrUnavailable.
func (e *UnavailableError) Unwrap() error { return ErrUnavailable }

// RetryAfter is how long to wait before trying again: until the store's
// next recovery attempt, at least a second.
func (e *UnavailableError) RetryAfter() time.Duration {
	if e.Health.State == tilestore.Closed {
		return 5 * time.Second
	}
	return e.Health.RetryAfter(time.Now())
}
