package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/vitrine-dev/vitrine/internal/fault"
)

// Fail answers a request that failed with err, with the status err's kind
// (package fault) calls for. msg is what the answer tells a person: what
// failed and what was (not) done.
//
//   - fault.ErrUnavailable: 503 with a Retry-After of the wait err asks for
//     (an error with a RetryAfter() time.Duration method in its chain), at
//     least a second; msg alone, since what broke inside is not the
//     caller's business. err goes to the log at Debug level only: what
//     broke logs it where it breaks (a store, a log's health), once, and
//     a handler that wants a line per request writes it.
//   - fault.ErrBusy: 503 with a Retry-After of a second; msg alone, err at
//     Debug level.
//   - fault.ErrInvalid, NotFound, Conflict, Forbidden: 400, 404, 409, 403,
//     with msg and err's text, which for these kinds is written for the
//     caller ("bad query: …").
//   - context.Canceled of no kind: as ErrUnavailable (the caller went
//     away, or the server is stopping).
//   - any other error is unexpected: 500, msg and an incident id, and
//     err is logged under that id at Error level. Its text never reaches
//     the answer: it may hold paths, SQL or keys' names.
func Fail(w http.ResponseWriter, logger *slog.Logger, err error, msg string) {
	withErr := func() string {
		if msg == "" {
			return err.Error()
		}
		return msg + ": " + err.Error()
	}
	if logger == nil {
		logger = slog.Default()
	}
	kind := fault.Kind(err)
	if kind == nil && errors.Is(err, context.Canceled) {
		// Canceled under way: the caller went away (nobody reads the
		// answer), or the server is stopping (retry elsewhere or later).
		kind = fault.ErrUnavailable
	}
	switch kind {
	case fault.ErrUnavailable:
		logger.Debug(msg, "err", err, "status", http.StatusServiceUnavailable)
		wait := time.Second
		var ra interface{ RetryAfter() time.Duration }
		if errors.As(err, &ra) {
			wait = max(wait, ra.RetryAfter())
		}
		Unavailable(w, wait, msg)
	case fault.ErrBusy:
		logger.Debug(msg, "err", err, "status", http.StatusServiceUnavailable)
		Unavailable(w, time.Second, msg)
	case fault.ErrInvalid:
		Error(w, http.StatusBadRequest, withErr())
	case fault.ErrNotFound:
		Error(w, http.StatusNotFound, withErr())
	case fault.ErrConflict:
		Error(w, http.StatusConflict, withErr())
	case fault.ErrForbidden:
		Error(w, http.StatusForbidden, withErr())
	default:
		if msg == "" {
			msg = "internal error"
		}
		Error(w, http.StatusInternalServerError, msg+" ("+Incident(logger, err, msg)+")")
	}
}

// Incident logs an unexpected err under a fresh incident id, at Error
// level, and returns what an answer says in its place: "internal error
// <id>; the server's log has the details". Fail uses it; a route with a
// format of its own (the witness's plain text) does too, so that every
// unexpected failure is answered alike.
func Incident(logger *slog.Logger, err error, msg string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	if logger == nil {
		logger = slog.Default()
	}
	logger.Error(msg, "err", err, "incident", id)
	return "internal error " + id + "; the server's log has the details"
}
