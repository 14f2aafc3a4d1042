// Package fault groups the conditions that callers act on, whichever part
// of Vitrine they come from, as Tessera groups its pushback in
// tessera.ErrPushback: a log that cannot take an entry, a store that cannot
// be read and custody that cannot count an unwrap are all [Unavailable], and
// a caller (or httpapi.Fail, the one place that maps them to HTTP) tells
// them apart from a bad request or a bug with errors.Is. Each package keeps
// its own sentinel, made with [New], so that its callers can still ask for
// it by name.
package fault

import "errors"

// The kinds of condition. Errors of a kind wrap it.
var (
	// Unavailable: a dependency (a log, a store, custody, a witness)
	// cannot do it now; nothing was done, and the same request may work
	// later (HTTP 503 with Retry-After).
	Unavailable = errors.New("unavailable")
	// Busy: too much is under way; back off and retry (HTTP 503).
	Busy = errors.New("busy")
	// Conflict: the request clashes with the state (another relocation
	// runs, a name is taken) (HTTP 409).
	Conflict = errors.New("conflict")
	// Invalid: the request is wrong and will stay wrong (HTTP 400).
	Invalid = errors.New("invalid")
	// NotFound: what the request names does not exist (HTTP 404).
	NotFound = errors.New("not found")
	// Forbidden: the caller may not do it (HTTP 403).
	Forbidden = errors.New("forbidden")
)

// kinds are every kind, for Kind.
var kinds = []error{Unavailable, Busy, Conflict, Invalid, NotFound, Forbidden}

// New returns an error of kind whose text is msg alone.
func New(kind error, msg string) error { return &kindError{msg: msg, kind: kind} }

type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

// Kind returns the kind of err, or nil for an error of no kind (an
// unexpected one: a bug, or a failure nobody grouped).
func Kind(err error) error {
	for _, k := range kinds {
		if errors.Is(err, k) {
			return k
		}
	}
	return nil
}
