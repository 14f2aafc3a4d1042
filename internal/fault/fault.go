// Package fault groups the conditions that callers act on, whichever part
// of Vitrine they come from, as Tessera groups its pushback in
// tessera.ErrPushback: a log that cannot take an entry, a store that cannot
// be read and custody that cannot count an unwrap are all [ErrUnavailable], and
// a caller (or httpapi.Fail, the one place that maps them to HTTP) tells
// them apart from a bad request or a bug with errors.Is. Each package keeps
// its own sentinel, made with [New], so that its callers can still ask for
// it by name.
package fault

import (
	"errors"
	"io/fs"
	"syscall"
)

// The kinds of condition. Errors of a kind wrap it.
var (
	// ErrUnavailable: a dependency (a log, a store, custody, a witness)
	// cannot do it now; nothing was done, and the same request may work
	// later (HTTP 503 with Retry-After).
	ErrUnavailable = errors.New("unavailable")
	// ErrBusy: too much is under way; back off and retry (HTTP 503).
	ErrBusy = errors.New("busy")
	// ErrConflict: the request clashes with the state (another relocation
	// runs, a name is taken) (HTTP 409).
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the request is wrong and will stay wrong (HTTP 400).
	ErrInvalid = errors.New("invalid")
	// ErrNotFound: what the request names does not exist (HTTP 404).
	ErrNotFound = errors.New("not found")
	// ErrForbidden: the caller may not do it (HTTP 403).
	ErrForbidden = errors.New("forbidden")
)

// kinds are every kind, for Kind.
var kinds = []error{ErrUnavailable, ErrBusy, ErrConflict, ErrInvalid, ErrNotFound, ErrForbidden}

// New returns an error of kind whose text is msg alone.
func New(kind error, msg string) error { return &kindError{msg: msg, kind: kind} }

// Mark returns err as an error of kind as well, its text unchanged: for a
// failure that arises where its kind is known but its own error has none
// (a database driver's, a file system's). errors.Is finds both kind and
// err's chain. Mark(kind, nil) is nil; an error that already has a kind
// keeps it.
func Mark(kind, err error) error {
	if err == nil || Kind(err) != nil {
		return err
	}
	return &markedError{err: err, kind: kind}
}

type markedError struct{ err, kind error }

func (e *markedError) Error() string   { return e.err.Error() }
func (e *markedError) Unwrap() []error { return []error{e.err, e.kind} }

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

// File groups the error of reading a file that a request named: a file
// that is not there, or that the request's path cannot name (a segment
// that is a file, a name too long), is ErrNotFound with notFound as its
// whole text (not the path); anything else (permissions, I/O) is the
// storage failing, ErrUnavailable, its text kept for the log.
func File(err error, notFound string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ENAMETOOLONG) || errors.Is(err, syscall.EINVAL) {
		return New(ErrNotFound, notFound)
	}
	return Mark(ErrUnavailable, err)
}
